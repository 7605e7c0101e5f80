//! End-user and workload identity: tokens from trusted OIDC / JWT issuers
//! (`[[identity.issuers]]`), verified against the issuer's keys, and the rule
//! their claims select.
//!
//! A token is checked in this order, and refused at the first defect with a
//! [`TokenError`] that names it: size; shape; header (`alg: none`, and any
//! algorithm the issuer does not list, are refused before a key is looked at;
//! HS256 only with the issuer's vault secret, never with a public key); the
//! issuer (by its unverified `iss`, only to pick the keys); the signature, with
//! the key of the token's `kid` (the set is fetched again for an unknown one,
//! rate-limited; when no set can be had, every token is refused); then `iss`,
//! and `exp`, `nbf` and `iat` with the issuer's clock skew; the audience (`aud`,
//! or the issuer's `audience_claim`); the subject; and the first rule whose
//! claims match. Tokens themselves are never logged or
//! audited: only the issuer's name and the subject.

pub mod cache;
pub mod claims;
pub mod jwks;

use crate::api::ErrorKind;
use crate::config::identity::{IdentitySection, IssuerConfig, RuleConfig, TokenUse};
use crate::keys::KeyEntry;
use crate::limits::Limits;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwks::{KeySet, KeySource, Lookup};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest token accepted, in bytes (real ID tokens are 1–4 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest subject accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 255;

/// Why a token was refused. [`TokenError::code`] goes to the audit log,
/// [`TokenError::message`] to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    /// `alg` is `none`, unknown, or not one the issuer accepts.
    AlgorithmNotAllowed(String),
    UnknownIssuer,
    /// A token of an `exchange` issuer on an API call, or the reverse; with
    /// what the issuer's tokens are for.
    WrongUse(TokenUse),
    UnknownKey,
    /// No key set could be fetched and none is cached (fail closed).
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    MissingClaim(String),
    BadSubject,
    /// Verified, but no rule grants this identity anything.
    NoRule,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed => "token_malformed",
            TokenError::AlgorithmNotAllowed(_) => "token_algorithm_not_allowed",
            TokenError::UnknownIssuer => "token_unknown_issuer",
            TokenError::WrongUse(_) => "token_wrong_use",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::KeysUnavailable => "issuer_keys_unavailable",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::MissingClaim(_) => "token_missing_claim",
            TokenError::BadSubject => "token_bad_subject",
            TokenError::NoRule => "token_no_rule",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            TokenError::KeysUnavailable => ErrorKind::Unavailable,
            TokenError::NoRule | TokenError::WrongUse(_) => ErrorKind::Permission,
            _ => ErrorKind::Authentication,
        }
    }

    /// What the client is told: the defect, never the token.
    pub fn message(&self) -> String {
        match self {
            TokenError::TooLarge => format!("Identity token over {MAX_TOKEN_BYTES} bytes"),
            TokenError::Malformed => "Identity token is not a well-formed JWT".into(),
            TokenError::AlgorithmNotAllowed(a) => format!(
                "Identity token signed with `{}`, which this issuer's tokens may not use",
                a.chars().take(16).filter(|c| c.is_ascii_graphic()).collect::<String>()
            ),
            TokenError::UnknownIssuer => "Identity token from an issuer this gateway does not trust".into(),
            TokenError::WrongUse(TokenUse::Exchange) => "Tokens of this issuer are exchanged for a Keyward key at POST /v1/token, not sent on API calls".into(),
            TokenError::WrongUse(TokenUse::Requests) => "Tokens of this issuer are sent on API calls; they cannot be exchanged".into(),
            TokenError::UnknownKey => "Identity token signed with a key its issuer does not publish".into(),
            TokenError::KeysUnavailable => "The issuer's signing keys cannot be fetched; refusing unverified tokens (retry shortly)".into(),
            TokenError::BadSignature => "Identity token signature is invalid".into(),
            TokenError::Expired => "Identity token has expired; sign in again".into(),
            TokenError::NotYetValid => "Identity token is not valid yet (nbf)".into(),
            TokenError::IssuedInFuture => "Identity token is issued in the future (iat); check the clocks".into(),
            TokenError::WrongAudience => "Identity token is for another audience".into(),
            TokenError::MissingClaim(c) => format!("Identity token lacks the `{c}` claim"),
            TokenError::BadSubject => format!("Identity token subject must be 1-{MAX_SUBJECT_BYTES} bytes of printable text"),
            TokenError::NoRule => "No rule of this gateway grants access to this identity".into(),
        }
    }
}

/// A rule, ready for requests.
pub struct Rule {
    pub config: RuleConfig,
    /// What requests under the rule are checked against (scope, environment,
    /// owner); its id (`idp_<issuer>_<n>`) is the key id of their usage.
    pub entry: Arc<KeyEntry>,
    /// Each user's own limits and budgets (use = "requests"), or each
    /// exchanged key's (use = "exchange").
    pub limits: Limits,
}

/// A trusted issuer.
pub struct Issuer {
    pub config: IssuerConfig,
    algorithms: Vec<Algorithm>,
    keys: KeySource,
    pub rules: Vec<Rule>,
}

/// A verified token.
pub struct Verified<'a> {
    pub issuer: &'a Issuer,
    pub rule: &'a Rule,
    pub subject: String,
    pub claims: Map<String, Value>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

impl Verified<'_> {
    /// `issuer:subject`: the user in usage records, limits and audit entries.
    pub fn user(&self) -> String {
        user_id(self.issuer, &self.subject)
    }
}

/// A user's token on an API call, verified now or earlier (see [`cache`]).
pub struct UserToken<'a> {
    pub issuer: &'a Issuer,
    pub rule: &'a Rule,
    pub subject: String,
    /// A keyed hash of the token (never the token): what it is remembered
    /// by, and how echoes of it are scrubbed, hashed once per request.
    pub token_hash: String,
}

impl UserToken<'_> {
    /// `issuer:subject`: the user in usage records, limits and audit entries.
    pub fn user(&self) -> String {
        user_id(self.issuer, &self.subject)
    }
}

fn user_id(issuer: &Issuer, subject: &str) -> String {
    format!("{}:{}", issuer.config.name, subject)
}

/// Every trusted issuer.
#[derive(Default)]
pub struct Identities {
    pub issuers: Vec<Issuer>,
    verified: cache::VerifiedCache,
}

/// The header fields read before verification.
#[derive(serde::Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

/// The claim read before verification, to pick the issuer.
#[derive(serde::Deserialize)]
struct RawIssuer {
    iss: Option<Value>,
}

impl Identities {
    /// The issuers of `[identity]`, with their rules checked against the key
    /// rules (environments, endpoints, owners) and static key sets read.
    pub fn new(section: &IdentitySection, client: &reqwest::Client) -> Result<Identities, String> {
        let mut issuers = Vec::new();
        for c in &section.issuers {
            let at = format!("[[identity.issuers]] `{}`", c.name);
            let algorithms = c
                .algorithms
                .iter()
                .map(|a| {
                    a.parse::<Algorithm>()
                        .map_err(|_| format!("{at}: algorithm `{a}`"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let keys = match (&c.jwks_url, &c.jwks_file) {
                (Some(url), _) => KeySource::Remote(jwks::Remote::new(url.clone(), client.clone())),
                (None, Some(path)) => {
                    let text = std::fs::read(path).map_err(|e| {
                        format!("{at}: cannot read jwks_file {}: {e}", path.display())
                    })?;
                    let set = KeySet::parse(&text)
                        .map_err(|e| format!("{at}: jwks_file {}: {e}", path.display()))?;
                    KeySource::Static(Arc::new(set))
                }
                (None, None) => KeySource::Static(Arc::new(KeySet::default())),
            };
            let mut rules = Vec::new();
            for (n, r) in c.rules.iter().enumerate() {
                rules.push(rule(c, n, r).map_err(|m| format!("{at}, rule {}: {m}", n + 1))?);
            }
            issuers.push(Issuer {
                config: c.clone(),
                algorithms,
                keys,
                rules,
            });
        }
        Ok(Identities {
            issuers,
            verified: Default::default(),
        })
    }

    /// Verifies a user's token on an API call, at most once per token while
    /// its issuer's key set stays the same: later calls check only its
    /// validity window against `now`. HS256 tokens are always verified (their
    /// secret can change in the vault; HMAC is cheap).
    pub async fn user(
        &self,
        token: &str,
        now: i64,
        hmac_secret: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync),
    ) -> Result<UserToken<'_>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let id = self.verified.id(token);
        if let Some(e) = self.verified.get(&id) {
            let issuer = &self.issuers[e.issuer];
            if e.keys_generation == issuer.keys.generation() {
                let (now, skew) = (now as f64, issuer.config.clock_skew().as_secs() as f64);
                if now > e.expires_at + skew {
                    self.verified.forget(&id);
                    return Err(TokenError::Expired);
                }
                if e.not_before.is_some_and(|nbf| nbf > now + skew) {
                    return Err(TokenError::NotYetValid);
                }
                return Ok(UserToken {
                    issuer,
                    rule: &issuer.rules[e.rule],
                    subject: e.subject,
                    token_hash: id,
                });
            }
            self.verified.forget(&id);
        }
        let v = self
            .verify(token, TokenUse::Requests, now, hmac_secret)
            .await?;
        let hmac = v.issuer.config.hs256_secret.is_some();
        let issuer_index = self.issuers.iter().position(|i| std::ptr::eq(i, v.issuer));
        let rule_index = v.issuer.rules.iter().position(|r| std::ptr::eq(r, v.rule));
        if let (false, Some(issuer), Some(rule)) = (hmac, issuer_index, rule_index) {
            self.verified.put(
                id.clone(),
                cache::Entry {
                    issuer,
                    rule,
                    subject: v.subject.clone(),
                    expires_at: v.expires_at as f64,
                    not_before: v.claims.get("nbf").and_then(Value::as_f64),
                    keys_generation: v.issuer.keys.generation(),
                },
                now as f64,
            );
        }
        Ok(UserToken {
            issuer: v.issuer,
            rule: v.rule,
            subject: v.subject,
            token_hash: id,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The owner of the rule whose entry has this id (`idp_<issuer>_<n>`).
    pub fn rule_owner(&self, entry_id: &str) -> Option<String> {
        self.issuers
            .iter()
            .flat_map(|i| &i.rules)
            .find(|r| r.entry.record.id == entry_id)
            .and_then(|r| r.entry.record.owner.clone())
    }

    /// Fetches every remote key set now, then again on each issuer's schedule;
    /// never returns. A failed fetch keeps the cached set and is logged.
    pub async fn refresh_forever(self: Arc<Self>) {
        let mut next: Vec<tokio::time::Instant> =
            vec![tokio::time::Instant::now(); self.issuers.len()];
        loop {
            for (i, issuer) in self.issuers.iter().enumerate() {
                let KeySource::Remote(remote) = &issuer.keys else {
                    next[i] = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
                    continue;
                };
                if tokio::time::Instant::now() < next[i] {
                    continue;
                }
                let retry = match remote.fetch().await {
                    Ok(set) => {
                        tracing::info!(issuer = %issuer.config.name, keys = set.keys.len(), "identity: fetched the signing keys from {}", remote.url());
                        issuer.config.jwks_refresh()
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %issuer.config.name, "identity: {e}; tokens are verified with the cached keys (none yet: refused)");
                        jwks::MIN_REFETCH * 3
                    }
                };
                next[i] = tokio::time::Instant::now() + retry;
            }
            let wake = next.iter().min().copied().unwrap_or_else(|| {
                tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
            });
            tokio::time::sleep_until(wake).await;
        }
    }

    /// The issuer named in a token, without verifying anything (to pick the
    /// keys and to name the issuer in the audit log). `None`: not a JWT this
    /// gateway could trust.
    pub fn claimed_issuer(&self, token: &str) -> Option<&Issuer> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let raw: RawIssuer = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        let iss = raw.iss?;
        let iss = iss.as_str()?;
        self.issuers.iter().find(|i| i.config.issuer == iss)
    }

    /// Who a refused token is audited as: `issuer:<name>` when it names a
    /// trusted issuer, else `anonymous` (its subject is not verified, so it
    /// is never named).
    pub fn refused_actor(&self, token: &str) -> String {
        match self.claimed_issuer(token) {
            Some(i) => format!("issuer:{}", i.config.name),
            None => "anonymous".to_string(),
        }
    }

    /// Verifies `token` for `purpose` at `now` (Unix seconds). `hmac_secret`
    /// gives an HS256 issuer's vault secret.
    pub async fn verify(
        &self,
        token: &str,
        purpose: TokenUse,
        now: i64,
        hmac_secret: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync),
    ) -> Result<Verified<'_>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = raw_header(token)?;
        let alg_name = header.alg.clone().unwrap_or_default();
        if alg_name.eq_ignore_ascii_case("none") || alg_name.is_empty() {
            return Err(TokenError::AlgorithmNotAllowed(if alg_name.is_empty() {
                "(none given)".into()
            } else {
                alg_name
            }));
        }
        let issuer = self
            .claimed_issuer(token)
            .ok_or(TokenError::UnknownIssuer)?;
        if issuer.config.token_use != purpose {
            return Err(TokenError::WrongUse(issuer.config.token_use));
        }
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| issuer.algorithms.contains(a))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(alg_name.clone()))?;
        let validation = issuer.validation(alg);
        let data = if alg == Algorithm::HS256 {
            // Only ever the configured vault secret: never a published key.
            let name = issuer
                .config
                .hs256_secret
                .as_deref()
                .ok_or_else(|| TokenError::AlgorithmNotAllowed(alg_name.clone()))?;
            let secret = hmac_secret(name).ok_or(TokenError::KeysUnavailable)?;
            let key = DecodingKey::from_secret(&secret).map_err(|_| TokenError::KeysUnavailable)?;
            decode(token, &key, &validation)?
        } else {
            issuer
                .decode_asymmetric(token, header.kid.as_deref(), alg, &validation)
                .await?
        };
        issuer.accept(data, now)
    }
}

/// The token's header, decoded by hand so that `alg: none` and unknown
/// algorithms get their own answer.
fn raw_header(token: &str) -> Result<RawHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, TokenError> {
    use jsonwebtoken::errors::ErrorKind as K;
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            K::InvalidSignature => TokenError::BadSignature,
            K::ExpiredSignature => TokenError::Expired,
            K::ImmatureSignature => TokenError::NotYetValid,
            K::InvalidAudience => TokenError::WrongAudience,
            K::InvalidIssuer => TokenError::UnknownIssuer,
            K::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
                TokenError::AlgorithmNotAllowed(format!("{:?}", validation.algorithms))
            }
            _ => TokenError::Malformed,
        })
}

impl Issuer {
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        // `exp` and `nbf` are checked in `accept`, against the caller's clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_issuer(&[&self.config.issuer]);
        // The audience is checked in `accept`, in the configured claim.
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss"]);
        v
    }

    async fn decode_asymmetric(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
        validation: &Validation,
    ) -> Result<Map<String, Value>, TokenError> {
        let try_set = |set: &KeySet| -> Option<Result<Map<String, Value>, TokenError>> {
            let mut last = None;
            for k in set.candidates(kid, alg) {
                match decode(token, &k.key, validation) {
                    Err(TokenError::BadSignature) => last = Some(Err(TokenError::BadSignature)),
                    done => return Some(done),
                }
            }
            last
        };
        match &self.keys {
            KeySource::Static(set) => try_set(set).unwrap_or(Err(TokenError::UnknownKey)),
            KeySource::Remote(remote) => {
                if let Some(set) = remote.cached() {
                    if let Some(done) = try_set(&set) {
                        return done;
                    }
                }
                match remote.refetch_for_unknown_kid().await {
                    Lookup::Set(set) => try_set(&set).unwrap_or(Err(TokenError::UnknownKey)),
                    Lookup::Unavailable => Err(TokenError::KeysUnavailable),
                }
            }
        }
    }

    /// The checks after the signature: `exp`, `nbf` and `iat` with the clock
    /// skew, the subject, and the rule.
    fn accept(&self, claims: Map<String, Value>, now: i64) -> Result<Verified<'_>, TokenError> {
        let skew = self.config.clock_skew().as_secs() as f64;
        let now_f = now as f64;
        // A time that is present must be a number (a string is a forgery).
        let time = |name: &str| -> Result<Option<f64>, TokenError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or(TokenError::Malformed),
            }
        };
        let exp = time("exp")?.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if now_f > exp + skew {
            return Err(TokenError::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now_f + skew) {
            return Err(TokenError::NotYetValid);
        }
        if time("iat")?.is_some_and(|iat| iat > now_f + skew) {
            return Err(TokenError::IssuedInFuture);
        }
        let aud_claim = &self.config.audience_claim;
        let aud = claims::lookup(&claims, aud_claim)
            .ok_or_else(|| TokenError::MissingClaim(aud_claim.clone()))?;
        let ours = |v: &Value| {
            v.as_str()
                .is_some_and(|a| self.config.audience.iter().any(|x| x == a))
        };
        let audience_ok = match aud {
            Value::Array(items) => items.iter().any(ours),
            v => ours(v),
        };
        if !audience_ok {
            return Err(TokenError::WrongAudience);
        }
        let expires_at = exp as i64;
        let subject = claims::lookup(&claims, &self.config.subject_claim)
            .ok_or_else(|| TokenError::MissingClaim(self.config.subject_claim.clone()))?;
        let subject = claims::scalar(subject).ok_or(TokenError::BadSubject)?;
        if subject.is_empty()
            || subject.len() > MAX_SUBJECT_BYTES
            || subject.chars().any(crate::keys::is_unsafe_char)
        {
            return Err(TokenError::BadSubject);
        }
        let rule = self
            .rules
            .iter()
            .find(|r| {
                r.config
                    .claims
                    .iter()
                    .all(|(path, p)| claims::matches(&claims, path, p))
            })
            .ok_or(TokenError::NoRule)?;
        Ok(Verified {
            issuer: self,
            rule,
            subject,
            claims,
            expires_at,
        })
    }
}

/// A rule's policy as a key entry, checked like a key's.
fn rule(issuer: &IssuerConfig, n: usize, r: &RuleConfig) -> Result<Rule, String> {
    if !crate::keys::valid_environment(&r.environment)
        || r.environment == crate::keys::ADMIN_ENVIRONMENT
    {
        return Err(format!(
            "environment `{}` must be 1-16 lower-case letters or digits (dev, test, prod)",
            r.environment
        ));
    }
    if let Some(e) = r
        .endpoints
        .iter()
        .find(|e| !crate::keys::ENDPOINT_NAMES.contains(&e.as_str()))
    {
        return Err(format!(
            "unknown endpoint `{e}`; use some of {}",
            crate::keys::ENDPOINT_NAMES.join(", ")
        ));
    }
    if let Some(o) = &r.owner {
        if o.is_empty() || o.len() > 128 || o.chars().any(crate::keys::is_unsafe_char) {
            return Err("owner must be 1-128 printable characters".into());
        }
    }
    let record = keyward_store::KeyRecord {
        id: format!("idp_{}_{}", issuer.name, n + 1),
        name: format!("users of issuer {} (rule {})", issuer.name, n + 1),
        environment: r.environment.clone(),
        models: r.models.clone(),
        providers: r.providers.clone(),
        endpoints: r.endpoints.clone(),
        owner: r.owner.clone(),
        ..Default::default()
    };
    Ok(Rule {
        config: r.clone(),
        entry: Arc::new(KeyEntry::new(record)),
        limits: r.limits(),
    })
}

/// True for a credential shaped like a JWT (three base64url parts, a JSON
/// header): it is verified as an identity token, not looked up as a key.
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|&b| b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a-test-hmac-secret-of-32-bytes!!";

    fn identities() -> Identities {
        let section: IdentitySection = toml::from_str(
            r#"
[[issuers]]
name = "svc"
issuer = "https://svc.example"
audience = ["keyward"]
hs256_secret = "svc-hmac"
algorithms = ["HS256"]
clock_skew = "30s"
[[issuers.rules]]
claims = { tier = "gold" }
environment = "prod"
models = ["gpt-4o*"]
rpm = 5
owner = "gold-users"
"#,
        )
        .unwrap();
        section.validate().unwrap();
        Identities::new(&section, &reqwest::Client::new()).unwrap()
    }

    fn token(over: Value) -> String {
        let mut claims = json!({"iss": "https://svc.example", "aud": "keyward", "sub": "u1",
            "tier": "gold", "iat": 1_000, "exp": 2_000});
        for (k, v) in over.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    async fn check(t: &str, now: i64) -> Result<(String, String), TokenError> {
        let ids = identities();
        let secret = |name: &str| (name == "svc-hmac").then(|| SECRET.to_vec());
        ids.verify(t, TokenUse::Requests, now, &secret)
            .await
            .map(|v| (v.user(), v.rule.entry.record.id.clone()))
    }

    #[tokio::test]
    async fn claims_are_checked_with_the_issuers_clock_skew() {
        let ok = Ok(("svc:u1".to_string(), "idp_svc_1".to_string()));
        assert_eq!(check(&token(json!({})), 1_500).await, ok);
        // exp and nbf within the 30 s skew pass; beyond it they do not.
        assert_eq!(check(&token(json!({})), 2_029).await, ok);
        assert_eq!(
            check(&token(json!({})), 2_031).await,
            Err(TokenError::Expired)
        );
        assert_eq!(check(&token(json!({"nbf": 1_520})), 1_500).await, ok);
        assert_eq!(
            check(&token(json!({"nbf": 1_600})), 1_500).await,
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check(&token(json!({"iat": 1_600})), 1_500).await,
            Err(TokenError::IssuedInFuture)
        );
        assert_eq!(
            check(&token(json!({"aud": "other"})), 1_500).await,
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            check(&token(json!({"aud": ["other", "keyward"]})), 1_500).await,
            ok
        );
        assert_eq!(
            check(&token(json!({"aud": null})), 1_500).await,
            Err(TokenError::MissingClaim("aud".into()))
        );
        assert_eq!(
            check(&token(json!({"aud": 7})), 1_500).await,
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            check(&token(json!({"iss": "https://evil.example"})), 1_500).await,
            Err(TokenError::UnknownIssuer)
        );
        assert_eq!(
            check(&token(json!({"exp": null})), 1_500).await,
            Err(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            check(&token(json!({"sub": null})), 1_500).await,
            Err(TokenError::MissingClaim("sub".into()))
        );
        assert_eq!(
            check(&token(json!({"sub": "x".repeat(256)})), 1_500).await,
            Err(TokenError::BadSubject)
        );
        assert_eq!(
            check(&token(json!({"sub": "a\u{202e}b"})), 1_500).await,
            Err(TokenError::BadSubject)
        );
        assert_eq!(
            check(&token(json!({"tier": "silver"})), 1_500).await,
            Err(TokenError::NoRule)
        );
        assert_eq!(
            check(&token(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)})), 1_500).await,
            Err(TokenError::TooLarge)
        );
    }

    #[tokio::test]
    async fn forged_and_unsigned_tokens_are_refused() {
        let good = token(json!({}));
        let (head, rest) = good.split_once('.').unwrap();
        let payload = rest.split_once('.').unwrap().0;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(
            matches!(check(&none, 1_500).await, Err(TokenError::AlgorithmNotAllowed(a)) if a == "none")
        );
        let rs = format!("{}.{payload}.c2ln", b64(r#"{"alg":"RS256"}"#));
        assert!(
            matches!(check(&rs, 1_500).await, Err(TokenError::AlgorithmNotAllowed(a)) if a == "RS256")
        );
        let other_payload = b64(
            r#"{"iss":"https://svc.example","aud":"keyward","sub":"admin","tier":"gold","exp":2000}"#,
        );
        let sig = good.rsplit('.').next().unwrap();
        assert_eq!(
            check(&format!("{head}.{other_payload}.{sig}"), 1_500).await,
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            check("eyJ.not-a-jwt", 1_500).await,
            Err(TokenError::Malformed)
        );
        assert_eq!(
            check(&format!("{head}.{payload}.{sig}.extra"), 1_500).await,
            Err(TokenError::Malformed)
        );
        // Without the vault secret, nothing verifies (fail closed).
        let ids = identities();
        let got = ids
            .verify(&good, TokenUse::Requests, 1_500, &|_| None)
            .await
            .err();
        assert_eq!(got, Some(TokenError::KeysUnavailable));
        // An exchange-only issuer's tokens are not for API calls, and back.
        let got = ids
            .verify(&good, TokenUse::Exchange, 1_500, &|_| Some(SECRET.to_vec()))
            .await
            .err();
        assert_eq!(got, Some(TokenError::WrongUse(TokenUse::Requests)));
    }

    /// RFC 8037's Ed25519 example key (appendix A.1), as PKCS#8 and as a JWK.
    fn rfc8037_key() -> (EncodingKey, String) {
        let seed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let jwk = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "rfc8037",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        (EncodingKey::from_ed_der(&der), jwk.to_string())
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_but_still_expires() {
        let (key, jwks) = rfc8037_key();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
        let section: IdentitySection = toml::from_str(&format!(
            r#"
[[issuers]]
name = "app"
issuer = "https://login.example.com/"
audience = ["keyward"]
jwks_file = "{}"
[[issuers.rules]]
environment = "prod"
models = ["*"]
"#,
            dir.path().join("jwks.json").display()
        ))
        .unwrap();
        let ids = Identities::new(&section, &reqwest::Client::new()).unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("rfc8037".into());
        let claims = json!({"iss": "https://login.example.com/", "aud": "keyward", "sub": "u1",
            "iat": 1_000, "exp": 2_000});
        let token = encode(&header, &claims, &key).unwrap();
        let none = |_: &str| None;
        assert_eq!(
            ids.user(&token, 1_500, &none).await.map(|u| u.user()),
            Ok("app:u1".into())
        );
        assert_eq!(ids.verified.len(), 1);
        // From the cache: the same answer, and the same expiry (60 s skew).
        assert_eq!(
            ids.user(&token, 2_059, &none).await.map(|u| u.user()),
            Ok("app:u1".into())
        );
        assert_eq!(
            ids.user(&token, 2_061, &none).await.err(),
            Some(TokenError::Expired)
        );
        assert!(ids.verified.is_empty(), "an expired token is forgotten");
        // A forged signature is never remembered as good.
        let (h, rest) = token.split_once('.').unwrap();
        let forged = format!(
            "{h}.{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                r#"{"iss":"https://login.example.com/","aud":"keyward","sub":"admin","exp":2000}"#
            ),
            rest.rsplit('.').next().unwrap()
        );
        assert_eq!(
            ids.user(&forged, 1_500, &none).await.err(),
            Some(TokenError::BadSignature)
        );
        assert_eq!(
            ids.user(&forged, 1_500, &none).await.err(),
            Some(TokenError::BadSignature)
        );
    }

    #[tokio::test]
    async fn the_audience_can_come_from_another_claim() {
        // Cognito access tokens name their app client in `client_id`, not `aud`.
        let mut section: IdentitySection = toml::from_str(
            r#"
[[issuers]]
name = "svc"
issuer = "https://svc.example"
audience = ["app-client-1"]
audience_claim = "client_id"
hs256_secret = "svc-hmac"
algorithms = ["HS256"]
[[issuers.rules]]
environment = "prod"
models = ["*"]
"#,
        )
        .unwrap();
        section.validate().unwrap();
        let ids = Identities::new(&section, &reqwest::Client::new()).unwrap();
        let secret = |_: &str| Some(SECRET.to_vec());
        let t = token(json!({"aud": null, "client_id": "app-client-1"}));
        assert!(ids
            .verify(&t, TokenUse::Requests, 1_500, &secret)
            .await
            .is_ok());
        let t = token(json!({"aud": null, "client_id": "someone-else"}));
        let got = ids
            .verify(&t, TokenUse::Requests, 1_500, &secret)
            .await
            .err();
        assert_eq!(got, Some(TokenError::WrongAudience));
        section.issuers[0].audience_claim.clear();
        assert!(section.validate().is_err());
    }

    #[test]
    fn rules_become_entries_with_per_user_limits() {
        let ids = identities();
        let rule = &ids.issuers[0].rules[0];
        assert_eq!(rule.limits.rpm, Some(5));
        assert!(
            rule.entry.limits.is_empty(),
            "the rule's limits are per user, not shared"
        );
        assert_eq!(rule.entry.record.owner.as_deref(), Some("gold-users"));
        assert!(rule.entry.allows_model("gpt-4o-mini") && !rule.entry.allows_model("o1"));
        assert!(looks_like_jwt(&token(json!({}))));
        assert!(!looks_like_jwt("kw_prod_abc") && !looks_like_jwt("eyJhbGciOi"));
    }
}
