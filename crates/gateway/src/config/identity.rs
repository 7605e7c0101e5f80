//! `[identity]`: the OIDC / JWT issuers whose tokens the gateway trusts, and the
//! rules that turn a token's claims into a Keyward policy.
//!
//! ```toml
//! [[identity.issuers]]
//! name = "app"                                   # in usage and audit: `app:<sub>`
//! issuer = "https://login.example.com/"          # the exact `iss`
//! audience = ["keyward"]                         # accepted `aud` values
//! jwks_url = "https://login.example.com/.well-known/jwks.json"   # or jwks_file
//! use = "requests"                               # tokens on API calls; "exchange": POST /v1/token only
//! allowed_origins = ["https://app.example.com"]  # CORS, for browser apps
//!
//! [[identity.issuers.rules]]                     # first match wins
//! claims = { plan = "pro" }                      # every listed claim must match (globs)
//! environment = "prod"
//! models = ["gpt-4o-mini"]
//! rpm = 20                                       # per user (or per exchanged key)
//! daily_budget = 1.00
//! ```

use super::budget_pico;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[identity]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// What an issuer's tokens are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented on API calls in place of a Keyward key (browser and mobile
    /// apps with their users' login tokens).
    #[default]
    Requests,
    /// Exchanged at `POST /v1/token` for a short-lived Keyward key (CI
    /// pipelines, workloads); refused on API calls.
    Exchange,
}

/// One trusted issuer (`[[identity.issuers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// A short name: lower-case letters, digits and `-`, 1–32 characters.
    pub name: String,
    /// The `iss` its tokens carry, compared exactly.
    pub issuer: String,
    /// The audiences accepted: the token's `audience_claim` (a string or an
    /// array) must hold one of them.
    pub audience: Vec<String>,
    /// The claim holding the audience; `aud` when absent (Cognito access
    /// tokens carry `client_id` instead).
    #[serde(default = "default_audience_claim")]
    pub audience_claim: String,
    /// Where its signing keys are published (fetched, cached, refreshed).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A static key set in JWKS form, instead of `jwks_url`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A vault secret: HS256 tokens are accepted, verified with it. Without it
    /// HS256 is refused (a public key must never serve as an HMAC secret).
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// Signature algorithms accepted; RS256, ES256 and EdDSA when absent.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Tolerance for `exp`, `nbf` and `iat` against this server's clock.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: String,
    /// The claim that names the user; `sub` when absent.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default, rename = "use")]
    pub token_use: TokenUse,
    /// Origins whose pages may call the gateway with this issuer's tokens
    /// (`https://app.example.com`; no `*`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How often the key set is fetched again; `1h` when absent.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: String,
    pub rules: Vec<RuleConfig>,
}

/// A claim's accepted values: one glob or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ClaimPattern {
    One(String),
    Any(Vec<String>),
}

impl ClaimPattern {
    pub fn patterns(&self) -> &[String] {
        match self {
            ClaimPattern::One(p) => std::slice::from_ref(p),
            ClaimPattern::Any(v) => v,
        }
    }
}

/// Which identities get which scope (`[[identity.issuers.rules]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Claim path (nested levels joined by `/`, e.g. `kubernetes.io/namespace`)
    /// to the globs its value must match; an array claim matches when one of
    /// its items does. Empty: every verified token.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimPattern>,
    pub environment: String,
    pub models: Vec<String>,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The owner the requests count under (its `[[limits]]` apply to all the
    /// rule's users together).
    #[serde(default)]
    pub owner: Option<String>,
    /// Per user (use = "requests") or per exchanged key (use = "exchange").
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<u64>,
    #[serde(default)]
    pub daily_budget: Option<f64>,
    #[serde(default)]
    pub monthly_budget: Option<f64>,
    /// Lifetime of an exchanged key; `15m` when absent, at most `12h`.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// Longest lifetime of an exchanged key.
pub const MAX_EXCHANGE_TTL: Duration = Duration::from_secs(12 * 3600);
/// Lifetime of an exchanged key when its rule names none.
pub const DEFAULT_EXCHANGE_TTL: Duration = Duration::from_secs(15 * 60);

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}
fn default_clock_skew() -> String {
    "60s".into()
}
fn default_audience_claim() -> String {
    "aud".into()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_jwks_refresh() -> String {
    "1h".into()
}

/// The algorithms an issuer may name.
pub const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
];

fn duration(what: &str, s: &str, max: Duration) -> Result<Duration, String> {
    match crate::time::parse_lifetime(s) {
        Some(Some(d)) if d <= max => Ok(d),
        _ if s == "0s" => Ok(Duration::ZERO),
        _ => Err(format!(
            "{what} = \"{s}\": use a duration such as 30s, 15m or 1h (at most {}s)",
            max.as_secs()
        )),
    }
}

impl IssuerConfig {
    pub fn clock_skew(&self) -> Duration {
        duration("", &self.clock_skew, Duration::from_secs(600)).unwrap_or_default()
    }

    pub fn jwks_refresh(&self) -> Duration {
        duration("", &self.jwks_refresh, Duration::from_secs(7 * 86_400))
            .unwrap_or(Duration::from_secs(3600))
    }
}

impl RuleConfig {
    /// The rule's limits (budgets in pico-dollars).
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            concurrency: self.concurrency,
            daily_budget: self.daily_budget.and_then(budget_pico),
            monthly_budget: self.monthly_budget.and_then(budget_pico),
        }
    }

    /// The lifetime of a key exchanged under this rule.
    pub fn ttl(&self) -> Duration {
        self.ttl
            .as_deref()
            .and_then(|t| duration("", t, MAX_EXCHANGE_TTL).ok())
            .unwrap_or(DEFAULT_EXCHANGE_TTL)
    }
}

impl IdentitySection {
    /// Checks every issuer: names, URLs, key sources, algorithms, durations,
    /// origins and rules, with a message that says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for i in &self.issuers {
            let at = format!("[[identity.issuers]] `{}`", i.name);
            if !(1..=32).contains(&i.name.len())
                || !i
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "{at}: `name` must be 1-32 lower-case letters, digits or `-`"
                ));
            }
            if !names.insert(i.name.as_str()) {
                return Err(format!("{at}: two issuers share this name"));
            }
            if i.issuer.is_empty() {
                return Err(format!(
                    "{at}: `issuer` is the exact `iss` its tokens carry"
                ));
            }
            if i.audience.is_empty() || i.audience.iter().any(String::is_empty) {
                return Err(format!(
                    "{at}: list the accepted `aud` values in `audience` (a token for another audience is refused)"
                ));
            }
            match (&i.jwks_url, &i.jwks_file, &i.hs256_secret) {
                (Some(_), Some(_), _) => {
                    return Err(format!("{at}: set jwks_url or jwks_file, not both"))
                }
                (None, None, None) => {
                    return Err(format!(
                        "{at}: name its signing keys with jwks_url (or jwks_file, or hs256_secret)"
                    ))
                }
                _ => {}
            }
            if let Some(u) = &i.jwks_url {
                let url = reqwest::Url::parse(u)
                    .map_err(|e| format!("{at}: jwks_url `{u}` is not a URL ({e})"))?;
                let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                    return Err(format!(
                        "{at}: jwks_url must be https (plain http only on loopback)"
                    ));
                }
            }
            if i.algorithms.is_empty() {
                return Err(format!("{at}: `algorithms` is empty: list at least one"));
            }
            for a in &i.algorithms {
                if !ALGORITHMS.contains(&a.as_str()) {
                    return Err(format!(
                        "{at}: algorithm `{a}` is not supported; use some of {}",
                        ALGORITHMS.join(", ")
                    ));
                }
            }
            let hs = i.algorithms.iter().any(|a| a == "HS256");
            if hs != i.hs256_secret.is_some() {
                return Err(format!(
                    "{at}: HS256 needs `hs256_secret` (a vault secret name), and `hs256_secret` needs HS256 in `algorithms`"
                ));
            }
            duration(
                &format!("{at}: clock_skew"),
                &i.clock_skew,
                Duration::from_secs(600),
            )?;
            duration(
                &format!("{at}: jwks_refresh"),
                &i.jwks_refresh,
                Duration::from_secs(7 * 86_400),
            )?;
            if i.subject_claim.is_empty() || i.audience_claim.is_empty() {
                return Err(format!("{at}: `subject_claim` and `audience_claim` name claims; leave them out for `sub` and `aud`"));
            }
            for o in &i.allowed_origins {
                check_origin(o).map_err(|m| format!("{at}: allowed_origins: {m}"))?;
            }
            if i.rules.is_empty() {
                return Err(format!(
                    "{at}: add at least one [[identity.issuers.rules]] (which claims get which models and limits)"
                ));
            }
            for (n, r) in i.rules.iter().enumerate() {
                let at = format!("{at}, rule {}", n + 1);
                // The environment, endpoints and owner are checked against the
                // key rules by `identity::Identities::new`, at start.
                if r.models.is_empty() {
                    return Err(format!(
                        "{at}: list the models it grants (globs allowed; `*` for all)"
                    ));
                }
                for (v, what) in [
                    (r.daily_budget, "daily_budget"),
                    (r.monthly_budget, "monthly_budget"),
                ] {
                    if v.is_some_and(|d| budget_pico(d).is_none()) {
                        return Err(format!("{at}: {what} must be a positive number of dollars"));
                    }
                }
                if [r.rpm, r.tpm, r.concurrency].contains(&Some(0)) {
                    return Err(format!(
                        "{at}: a limit of 0 refuses everything; leave it out for no limit"
                    ));
                }
                if let Some(t) = &r.ttl {
                    if i.token_use != TokenUse::Exchange {
                        return Err(format!(
                            "{at}: `ttl` is the lifetime of exchanged keys: only for use = \"exchange\""
                        ));
                    }
                    duration(&format!("{at}: ttl"), t, MAX_EXCHANGE_TTL)?;
                }
                for (claim, p) in &r.claims {
                    if claim.is_empty() || p.patterns().is_empty() {
                        return Err(format!(
                            "{at}: claims.{claim}: name a claim and at least one value"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks one allowed origin: `scheme://host[:port]`, no path, no wildcard.
fn check_origin(o: &str) -> Result<(), String> {
    if o.contains('*') {
        return Err(format!(
            "`{o}`: list exact origins such as https://app.example.com (no `*`: any page could use your users' tokens)"
        ));
    }
    let url = reqwest::Url::parse(o).map_err(|_| format!("`{o}` is not an origin"))?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || !bare || o.ends_with('/') {
        return Err(format!(
            "`{o}` must be an exact origin such as https://app.example.com (no `*`, no path)"
        ));
    }
    if url.username() != "" || url.password().is_some() {
        return Err(format!("`{o}` must not carry credentials"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(issuer_extra: &str, rule_extra: &str) -> Result<IdentitySection, String> {
        let text = format!(
            r#"
[[issuers]]
name = "app"
issuer = "https://login.example.com/"
audience = ["keyward"]
{issuer_extra}
[[issuers.rules]]
environment = "prod"
models = ["*"]
{rule_extra}
"#
        );
        let s: IdentitySection = toml::from_str(&text).map_err(|e| e.to_string())?;
        s.validate().map(|_| s)
    }

    #[test]
    fn issuers_are_checked_with_messages_that_say_what_to_change() {
        let jwks = r#"jwks_url = "https://login.example.com/jwks.json""#;
        let s = section(jwks, "").unwrap();
        assert_eq!(s.issuers[0].algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(s.issuers[0].clock_skew(), Duration::from_secs(60));
        for (issuer, rule, says) in [
            ("", "", "signing keys"),
            (
                r#"jwks_url = "http://login.example.com/jwks.json""#,
                "",
                "https",
            ),
            (
                &format!("{jwks}\nalgorithms = [\"HS256\"]"),
                "",
                "hs256_secret",
            ),
            (
                &format!("{jwks}\nalgorithms = [\"none\"]"),
                "",
                "not supported",
            ),
            (&format!("{jwks}\nallowed_origins = [\"*\"]"), "", "no `*`"),
            (
                &format!("{jwks}\nallowed_origins = [\"https://a.example/path\"]"),
                "",
                "no path",
            ),
            (&format!("{jwks}\nclock_skew = \"1y\""), "", "clock_skew"),
            (jwks, "ttl = \"5m\"", "only for use = \"exchange\""),
            (
                &format!("{jwks}\nuse = \"exchange\""),
                "ttl = \"2d\"",
                "ttl",
            ),
            (jwks, "rpm = 0", "refuses everything"),
            (jwks, "daily_budget = -1.0", "positive number of dollars"),
        ] {
            let err = section(issuer, rule).err().unwrap_or_default();
            assert!(err.contains(says), "{issuer} / {rule}: {err}");
        }
        // Plain http is fine on loopback (a local issuer).
        assert!(section(r#"jwks_url = "http://127.0.0.1:8080/jwks.json""#, "").is_ok());
        let hs = section("hs256_secret = \"app-hmac\"\nalgorithms = [\"HS256\"]", "");
        assert!(hs.is_ok(), "{hs:?}");
    }
}
