//! Keyward client keys: format, generation, and the checks every request passes.
//!
//! A key is `kw_<env>_<32 base62 random><6 base62 CRC32>`: 190 random bits, the
//! environment in clear so people and scanners can tell them apart, and a checksum
//! over everything before it so any scanner recognises a real key offline. Only an
//! HMAC of the key (under a key sealed in the store) is stored.

use crate::config::glob_match;
use ipnet::IpNet;
use keyward_detect::checksum;
use keyward_store::KeyRecord;
use std::net::IpAddr;

/// Length of the random part (base62): 32 × 5.95 ≈ 190 bits.
pub const RANDOM_LEN: usize = checksum::KEYWARD_RANDOM_LEN;

/// The environment segment of admin API keys (`kw_admin_…`); never a client key's.
pub const ADMIN_ENVIRONMENT: &str = "admin";

/// The endpoint names a key can be limited to (`--endpoints`).
pub const ENDPOINT_NAMES: &[&str] = &[
    "chat.completions",
    "completions",
    "embeddings",
    "responses",
    "models",
    "messages",
    "messages.count_tokens",
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
];

/// Checks an environment name: lower-case letters and digits, 1–16 characters,
/// starting with a letter (it is part of every key, and of its checksum).
pub fn valid_environment(env: &str) -> bool {
    (1..=16).contains(&env.len())
        && env.as_bytes()[0].is_ascii_lowercase()
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Longest key or admin key name, in characters.
pub const MAX_NAME_LEN: usize = 128;

/// True for characters that move a terminal's cursor, change its state or reorder
/// or hide text: control characters (C0, DEL, C1) and Unicode format characters
/// (bidirectional overrides and isolates such as U+202E, zero-width characters,
/// the BOM, interlinear annotation and tag characters).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Checks a key or admin key name: 1 to [`MAX_NAME_LEN`] characters, none of them
/// [unsafe](is_unsafe_char) (a newline or U+202E in a name forged rows in listings).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "a key name must be 1 to {MAX_NAME_LEN} characters and not only spaces"
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_unsafe_char(c)) {
        return Err(format!(
            "a key name may not contain control or invisible formatting characters (found U+{:04X}): use letters, digits, spaces and punctuation",
            c as u32
        ));
    }
    Ok(())
}

/// `s` with every [unsafe](is_unsafe_char) character written as an escape (`\n`,
/// `\u{202e}`), for listings on a terminal: names stored before they were checked,
/// audit fields, anything a client chose.
pub fn escape_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if is_unsafe_char(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A new key for `env`: the plaintext (shown once) and a display hint.
pub fn generate(env: &str) -> (String, String) {
    let key = checksum::keyward_key_seal(&format!(
        "kw_{env}_{}",
        keyward_vault::random_base62(RANDOM_LEN)
    ));
    let hint = format!("{}…", &key[..key.len().min(env.len() + 8)]);
    (key, hint)
}

/// A new stable key id.
pub fn new_id() -> String {
    format!("key_{}", keyward_vault::random_base62(20))
}

/// Why a request was refused, before anything went upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    MissingKey,
    /// Not a Keyward key (bad shape or checksum) or unknown: same answer, so a
    /// caller cannot probe which keys exist.
    InvalidKey,
    Revoked,
    Suspended,
    Expired,
    /// The key's previous secret, presented after its rotation grace window.
    RotatedOut,
    /// A canary key: answered like an unknown key, so its user learns nothing.
    Canary,
    SourceNotAllowed,
    ModelNotAllowed(String),
    ProviderNotAllowed(String),
    EndpointNotAllowed(&'static str),
    NoCredentialForEnvironment(String),
    /// A user's token sent by a page whose origin its issuer does not allow.
    OriginNotAllowed,
}

impl Denial {
    pub fn kind(&self) -> crate::api::ErrorKind {
        use crate::api::ErrorKind;
        match self {
            Denial::MissingKey
            | Denial::InvalidKey
            | Denial::Revoked
            | Denial::Suspended
            | Denial::Expired
            | Denial::RotatedOut
            | Denial::Canary => ErrorKind::Authentication,
            Denial::SourceNotAllowed
            | Denial::ModelNotAllowed(_)
            | Denial::ProviderNotAllowed(_)
            | Denial::EndpointNotAllowed(_)
            | Denial::NoCredentialForEnvironment(_)
            | Denial::OriginNotAllowed => ErrorKind::Permission,
        }
    }

    /// A short stable code for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingKey => "missing_key",
            Denial::InvalidKey => "invalid_key",
            Denial::Revoked => "revoked",
            Denial::Suspended => "suspended",
            Denial::Expired => "expired",
            Denial::RotatedOut => "rotated_out",
            Denial::Canary => "canary",
            Denial::SourceNotAllowed => "source_not_allowed",
            Denial::ModelNotAllowed(_) => "model_not_allowed",
            Denial::ProviderNotAllowed(_) => "provider_not_allowed",
            Denial::EndpointNotAllowed(_) => "endpoint_not_allowed",
            Denial::NoCredentialForEnvironment(_) => "no_credential_for_environment",
            Denial::OriginNotAllowed => "origin_not_allowed",
        }
    }

    /// The message clients see: names what was refused, never a secret.
    pub fn message(&self) -> String {
        match self {
            Denial::MissingKey => "No Keyward key: send it as `Authorization: Bearer kw_…`, `x-api-key`, `x-goog-api-key` or `?key=`".into(),
            Denial::InvalidKey | Denial::Canary => "Invalid Keyward key".into(),
            Denial::Revoked => "This Keyward key has been revoked".into(),
            Denial::Suspended => {
                "This Keyward key is suspended; ask its administrator to resume it".into()
            }
            Denial::Expired => "This Keyward key has expired".into(),
            Denial::RotatedOut => "This Keyward key was rotated and its grace period is over; use the new key".into(),
            Denial::SourceNotAllowed => "This Keyward key may not be used from this address".into(),
            Denial::ModelNotAllowed(m) => format!("This Keyward key may not use model `{m}`"),
            Denial::ProviderNotAllowed(p) => format!("This Keyward key may not use provider `{p}`"),
            Denial::EndpointNotAllowed(e) => format!("This Keyward key may not call `{e}`"),
            Denial::OriginNotAllowed => "Tokens of this issuer may not be used from this web origin (allowed_origins)".into(),
            Denial::NoCredentialForEnvironment(env) => {
                format!("No provider credential is configured for environment `{env}` on this route")
            }
        }
    }
}

/// A key record ready for request-time checks.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub record: KeyRecord,
    pub cidrs: Vec<IpNet>,
    /// The key's own redaction settings, parsed.
    pub redaction: crate::redact::PolicyConfig,
    /// The key's own limits.
    pub limits: crate::limits::Limits,
    /// The key's own `on_anomaly` policy; `None`: the server's.
    pub on_anomaly: Option<crate::config::OnAnomaly>,
}

impl KeyEntry {
    pub fn new(record: KeyRecord) -> KeyEntry {
        // CIDRs were validated at creation; an unparsable one (edited by hand)
        // allows nothing rather than everything.
        let cidrs = record
            .source_cidrs
            .iter()
            .map(|c| {
                c.parse::<IpNet>()
                    .unwrap_or_else(|_| "255.255.255.255/32".parse().expect("valid"))
            })
            .collect();
        // Values were validated at creation; one edited by hand into nonsense
        // means redact, the default.
        let action = |v: &Option<String>| {
            v.as_deref().map(|s| {
                s.parse::<crate::redact::Action>()
                    .unwrap_or(crate::redact::Action::Redact)
            })
        };
        let redaction = crate::redact::PolicyConfig {
            inbound: action(&record.redact_inbound),
            outbound: action(&record.redact_outbound),
        };
        // A limit edited by hand to zero or below refuses everything.
        let limit = |v: Option<i64>| v.map(|v| v.max(0) as u64);
        let limits = crate::limits::Limits {
            rpm: limit(record.rpm),
            tpm: limit(record.tpm),
            concurrency: limit(record.max_concurrent),
            daily_budget: record.daily_budget_pico.map(|v| v.max(0)),
            monthly_budget: record.monthly_budget_pico.map(|v| v.max(0)),
        };
        // A policy edited by hand into nonsense means the server's.
        let on_anomaly = record.on_anomaly.as_deref().and_then(|p| p.parse().ok());
        KeyEntry {
            record,
            cidrs,
            redaction,
            limits,
            on_anomaly,
        }
    }

    /// Checks that do not depend on what is being called.
    pub fn check_usable(&self, now: i64, source: IpAddr) -> Result<(), Denial> {
        if self.record.revoked_at.is_some() {
            return Err(Denial::Revoked);
        }
        if self.record.suspended_at.is_some() {
            return Err(Denial::Suspended);
        }
        if self.record.expires_at.is_some_and(|e| now >= e) {
            return Err(Denial::Expired);
        }
        if !self.cidrs.is_empty() {
            let src = match source {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(source),
                v4 => v4,
            };
            if !self.cidrs.iter().any(|c| c.contains(&src)) {
                return Err(Denial::SourceNotAllowed);
            }
        }
        Ok(())
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.record.models.iter().any(|g| glob_match(g, model))
    }

    pub fn allows_provider(&self, provider: &str) -> bool {
        self.record.providers.is_empty() || self.record.providers.iter().any(|p| p == provider)
    }

    pub fn allows_endpoint(&self, endpoint: &str) -> bool {
        self.record.endpoints.is_empty() || self.record.endpoints.iter().any(|e| e == endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_forge_listing_rows_are_refused_and_escaped() {
        assert!(check_name("payments backend (prod)").is_ok());
        assert!(check_name("équipe données").is_ok());
        for bad in [
            "a\nkey_fake   active",
            "\x1b[2Jcleared",
            "evil\u{202E}txt.exe",
            "zero\u{200B}width",
            "",
            "   ",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(129)).is_err());
        assert_eq!(escape_for_terminal("a\nb\u{202E}c"), "a\\nb\\u{202e}c");
        assert_eq!(escape_for_terminal("plain"), "plain");
    }

    fn entry() -> KeyEntry {
        KeyEntry::new(KeyRecord {
            id: "key_x".into(),
            key_hash: "h".into(),
            hint: "kw_dev_…".into(),
            name: "t".into(),
            environment: "dev".into(),
            models: vec!["gpt-4o*".into()],
            providers: vec![],
            endpoints: vec!["chat.completions".into()],
            source_cidrs: vec!["10.0.0.0/8".into()],
            created_at: 0,
            expires_at: Some(100),
            ..Default::default()
        })
    }

    #[test]
    fn generated_keys_carry_environment_and_a_valid_checksum() {
        let (k, hint) = generate("prod");
        assert!(k.starts_with("kw_prod_"));
        assert_eq!(checksum::keyward_key_env(k.as_bytes()), Some("prod"));
        assert!(k.starts_with(hint.trim_end_matches('…')));
        assert!(hint.len() < 20);
        assert_ne!(generate("prod").0, k);
        assert!(
            keyward_detect::Detector::builtin().find(k.as_bytes()).len() == 1,
            "our scanner finds our keys"
        );
    }

    #[test]
    fn usability_and_scope_checks() {
        let e = entry();
        assert_eq!(e.check_usable(50, "10.1.2.3".parse().unwrap()), Ok(()));
        assert_eq!(
            e.check_usable(50, "::ffff:10.1.2.3".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            e.check_usable(50, "127.0.0.1".parse().unwrap()),
            Err(Denial::SourceNotAllowed)
        );
        assert_eq!(
            e.check_usable(100, "10.1.2.3".parse().unwrap()),
            Err(Denial::Expired)
        );
        assert!(e.allows_model("gpt-4o-mini") && !e.allows_model("o1"));
        assert!(e.allows_endpoint("chat.completions") && !e.allows_endpoint("embeddings"));
        assert!(e.allows_provider("anything"));
        assert!(
            valid_environment("prod")
                && !valid_environment("Prod")
                && !valid_environment("1x")
                && !valid_environment("")
        );
    }
}
