//! Command-line errors that never repeat what was typed.
//!
//! A value where none was expected is often a secret pasted on the command line
//! (`keyward vault put openai-prod sk-…`): clap's messages quote it, and terminals,
//! CI logs and shell history keep it. These errors name the command and the flag
//! involved, never the value, and say that secrets go on standard input.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use std::process::ExitCode;

/// Prints `e` (help and version as clap renders them; usage errors without the
/// offending value) and returns the exit status: 0 for help and version, 2 for a
/// usage error.
pub fn report(e: clap::Error) -> ExitCode {
    let code = ExitCode::from(e.exit_code() as u8);
    match message(&e) {
        Some(text) => eprintln!("error: {text}"),
        None => {
            let _ = e.print();
        }
    }
    code
}

/// The message for errors that would quote a typed value; `None` for the rest.
fn message(e: &clap::Error) -> Option<String> {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let usage = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(s)) => format!("\n\n{}", s.to_string().trim_end()),
        _ => String::new(),
    };
    let hint = "secrets are never taken from the command line: give them on standard input \
                (`keyward vault put NAME < key.txt`, or type them at the prompt)";
    let text = match e.kind() {
        ErrorKind::UnknownArgument | ErrorKind::TooManyValues | ErrorKind::InvalidSubcommand => {
            let similar = match e.get(ContextKind::SuggestedArg) {
                Some(ContextValue::String(s)) => format!("; did you mean `{s}`?"),
                _ => match e.get(ContextKind::SuggestedSubcommand) {
                    Some(ContextValue::Strings(v)) if !v.is_empty() => {
                        format!("; did you mean `{}`?", v[0])
                    }
                    _ => String::new(),
                },
            };
            format!("unexpected argument (not shown: it may be a secret){similar}\n{hint}")
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context(ContextKind::InvalidArg).unwrap_or_else(|| "an argument".into());
            let reason = match e.kind() {
                ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
                    Some(ContextValue::Strings(v)) if !v.is_empty() => {
                        format!(": use one of {}", v.join(", "))
                    }
                    _ => String::new(),
                },
                // The parser's own reason, with the value cut out of it.
                _ => {
                    let value = context(ContextKind::InvalidValue).filter(|v| !v.is_empty());
                    let reason = e.source().map(|s| s.to_string()).unwrap_or_default();
                    match (&value, reason.is_empty()) {
                        (_, true) => String::new(),
                        (Some(v), false) => format!(": {}", reason.replace(v.as_str(), "…")),
                        (None, false) => format!(": {reason}"),
                    }
                }
            };
            format!("invalid value for {arg} (not shown: it may be a secret){reason}")
        }
        _ => return None,
    };
    Some(format!("{text}{usage}"))
}

use std::error::Error as _;

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    fn error_text(args: &[&str]) -> String {
        let e = crate::Cli::try_parse_from(args)
            .err()
            .expect("a usage error");
        super::message(&e).unwrap_or_else(|| e.to_string())
    }

    #[test]
    fn an_unexpected_value_is_never_repeated() {
        let secret = "sk-proj-NotARealKeyButLooksLikeOne0123456789";
        for args in [
            vec!["keyward", "vault", "put", "openai-prod", secret],
            vec!["keyward", secret],
            vec![
                "keyward",
                "keys",
                "create",
                "--name",
                "a",
                "--env",
                "prod",
                "--models",
                "*",
                "--redact-inbound",
                secret,
            ],
            vec!["keyward", "serve", "--listen", secret],
        ] {
            let text = error_text(&args);
            assert!(!text.contains(secret), "{args:?} echoed the value: {text}");
            assert!(!text.contains("NotARealKey"), "{text}");
        }
        let text = error_text(&["keyward", "vault", "put", "openai-prod", secret]);
        assert!(text.contains("standard input"), "{text}");
        assert!(text.contains("Usage:"), "{text}");
    }

    #[test]
    fn flag_values_are_named_but_not_shown() {
        let text = error_text(&["keyward", "serve", "--listen", "nonsense"]);
        assert!(text.contains("--listen"), "{text}");
        assert!(!text.contains("nonsense"), "{text}");
        let _ = crate::Cli::command();
    }
}
