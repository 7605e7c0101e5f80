//! The `keyward` binary: argument parsing and wiring only.

mod argv_errors;
mod commands;
mod home;
mod hook;
mod log_redact;
mod log_writer;
mod scan_cmd;

use commands::{admin, alerts, audit, config, keys, serve, token, usage, vault};

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc: the gateway allocates and frees many small buffers per request
/// (headers, JSON, log lines), where glibc's allocator showed up as a tenth of
/// the CPU time in profiles; the scanner's many small findings gain the same way.
/// Built without transparent huge pages (Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keyward protects API tokens: it finds leaked keys before they ship, and brokers
/// AI calls so that real provider keys never leave the server.
#[derive(Parser)]
#[command(name = "keyward", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find leaked secrets in files, directories, git history, the git index or stdin.
    ///
    /// Exit status: 0 when nothing is found, 1 when secrets are found, 2 on a usage
    /// or I/O error.
    Scan(scan_cmd::ScanArgs),
    /// List the detection rules.
    Rules {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the gateway: clients call provider APIs with Keyward keys; real
    /// provider keys stay on the server.
    /// Creates the store and master key when they do not exist.
    Serve(serve::ServeArgs),
    /// Create the store and master key for a config (or the embedded default)
    /// without serving. Only `init` and `serve` create a store; every other
    /// command needs one.
    Init {
        #[command(flatten)]
        config: home::ConfigArg,
    },
    /// Check a config without serving.
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCmd,
    },
    /// Provider credentials, encrypted at rest.
    Vault {
        #[command(subcommand)]
        cmd: vault::VaultCmd,
    },
    /// Client keys: create, rotate, revoke, suspend, list.
    Keys {
        #[command(subcommand)]
        cmd: keys::KeysCmd,
    },
    /// Keys for the admin HTTP API.
    Admin {
        #[command(subcommand)]
        cmd: admin::AdminCmd,
    },
    /// Requests, tokens and spend, summed by key, owner, environment, provider, model, day or user.
    Usage(usage::UsageArgs),
    /// The price table used for spend (shipped, plus the config's [[prices]]).
    Prices(usage::PricesArgs),
    /// Alerts raised (anomalies, canaries, leaks) and whether they were delivered.
    Alerts {
        #[command(subcommand)]
        cmd: alerts::AlertsCmd,
    },
    /// Short-lived keys for CI: exchange a pipeline's OIDC token for a key.
    Token {
        #[command(subcommand)]
        cmd: token::TokenCmd,
    },
    /// Read and verify the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// Manage the git pre-commit hook.
    Hook {
        #[command(subcommand)]
        action: hook::HookAction,
    },
}

fn main() -> ExitCode {
    // Die quietly when a reader such as `head` closes the pipe, like other Unix tools.
    #[cfg(unix)]
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap exits 0 for --help/--version and 2 for usage errors, as we do.
            return argv_errors::report(e);
        }
    };
    let result = match cli.command {
        Command::Scan(args) => scan_cmd::run(args),
        Command::Rules { json } => list_rules(json),
        Command::Hook { action } => hook::run(action),
        Command::Serve(a) => serve::run(a),
        Command::Init { config } => config::init(&config),
        Command::Config { cmd } => config::run(cmd),
        Command::Vault { cmd } => vault::run(cmd),
        Command::Keys { cmd } => keys::run(cmd),
        Command::Admin { cmd } => admin::run(cmd),
        Command::Audit { cmd } => audit::run(cmd),
        Command::Alerts { cmd } => alerts::run(cmd),
        Command::Token { cmd } => token::run(cmd),
        Command::Usage(a) => usage::usage(a),
        Command::Prices(a) => usage::prices(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            anstream::eprintln!(
                "{}error:{} {e:#}",
                anstyle::Style::new()
                    .fg_color(Some(anstyle::AnsiColor::Red.into()))
                    .bold(),
                anstyle::Reset
            );
            ExitCode::from(2)
        }
    }
}

fn list_rules(json: bool) -> anyhow::Result<ExitCode> {
    let d = keyward_detect::Detector::builtin();
    if json {
        let rules: Vec<_> = d
            .rules()
            .iter()
            .map(|r| serde_json::json!({"id": r.spec.id, "name": r.spec.name, "provider": r.spec.provider, "severity": r.spec.severity.as_str(), "keywords": r.spec.keywords}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rules)?);
    } else {
        for r in d.rules() {
            println!(
                "{:<40} {:<10} {:<16} {}",
                r.spec.id,
                r.spec.severity.as_str(),
                r.spec.provider,
                r.spec.name
            );
        }
        println!("{} rules", d.rules().len());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        // Catches clashing flags (e.g. a `--version` option) before a user does.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
