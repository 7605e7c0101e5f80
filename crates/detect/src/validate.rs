//! Checks that separate real secrets from things that merely look like them.

use crate::rule::{Check, Checksum, Confidence, Rule};
use crate::{assign, checksum, structural};

/// Shannon entropy of `s` in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Words that mark a value as a placeholder, template or documented example rather
/// than a credential (compared case-insensitively).
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "xxxx",
    "your_",
    "your-",
    "yourkey",
    "placeholder",
    "changeme",
    "change_me",
    "dummy",
    "sample",
    "redacted",
    "insert",
    "replace",
    "<",
    ">",
    "${",
    "{{",
    "}}",
    "****",
    "....",
    "todo",
    "fixme",
    "notreal",
    "not_real",
    "not-real",
    "fake",
    "mytoken",
    "my_token",
    "my-token",
    "mysecret",
    "my_secret",
    "mypassword",
    "password123",
    "secret123",
    "abcdefgh",
    "12345678",
    "01234567",
    "0000000000",
    "1111111111",
];

/// Secrets longer than this (private key bodies, long tokens) are random enough
/// that a placeholder word inside them is chance, not intent.
const PLACEHOLDER_WORD_MAX_LEN: usize = 128;

/// True when the secret is a placeholder, a template variable or a documented example.
pub fn is_placeholder(secret: &[u8]) -> bool {
    if secret.len() <= PLACEHOLDER_WORD_MAX_LEN {
        // Lowered on the stack: this runs for every candidate value.
        let mut buf = [0u8; PLACEHOLDER_WORD_MAX_LEN];
        let lower = &mut buf[..secret.len()];
        lower.copy_from_slice(secret);
        lower.make_ascii_lowercase();
        if PLACEHOLDER_WORDS
            .iter()
            .any(|w| memchr::memmem::find(lower, w.as_bytes()).is_some())
        {
            return true;
        }
    }
    // A value made of very few distinct characters ("aaaaaaaa", "abababab").
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in secret {
        if !seen[b as usize] {
            seen[b as usize] = true;
            distinct += 1;
        }
    }
    secret.len() >= 8 && distinct * 5 < secret.len().min(40)
}

/// True for values that are hashes, identifiers or other public data when found in a
/// generic (context-only) rule: hex digests, UUIDs, lockfile integrity strings,
/// paths, URLs, code identifiers and words.
pub fn is_generic_lookalike(secret: &[u8]) -> bool {
    let len = secret.len();
    let all_hex = secret.iter().all(u8::is_ascii_hexdigit);
    // Hex digests: md5, sha1, sha224, sha256, sha384, sha512.
    // Rules for providers whose keys are hex are not generic: they name the provider.
    if all_hex && matches!(len, 32 | 40 | 56 | 64 | 96 | 128) {
        return true;
    }
    if is_uuid(secret) {
        return true;
    }
    let s = secret;
    if s.starts_with(b"sha1-")
        || s.starts_with(b"sha256-")
        || s.starts_with(b"sha384-")
        || s.starts_with(b"sha512-")
    {
        return true;
    }
    if s.contains(&b'/') && s.iter().filter(|&&b| b == b'/').count() >= 2 && !s.ends_with(b"=") {
        // Paths and URLs.
        return true;
    }
    // Code: function calls, member access, template syntax.
    if s.contains(&b'(') || s.contains(&b')') || s.starts_with(b"$") || s.starts_with(b"%") {
        return true;
    }
    // A dotted identifier such as `self.config.password` or `os.environ`.
    if s.contains(&b'.')
        && s.split(|&b| b == b'.')
            .all(|p| !p.is_empty() && p.iter().all(|&b| b.is_ascii_alphabetic() || b == b'_'))
    {
        return true;
    }
    // Identifiers in snake, kebab or camel case made only of letters: `get_password`,
    // `API_TOKEN`, `passwordField`. Real random secrets almost always carry digits
    // or mixed classes.
    let letters_only = s
        .iter()
        .all(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'-');
    if letters_only {
        return true;
    }
    false
}

/// `8-4-4-4-12` hex with dashes.
fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Why a candidate was accepted, and how sure that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub confidence: Confidence,
    /// A short phrase: what made it a finding.
    pub reason: &'static str,
    /// Facts read from the secret itself (a JWT's issuer and expiry).
    pub note: Option<String>,
    /// Where the secret really is, when the check read it further than the
    /// pattern's secret group (assignment values are measured in code).
    pub span: Option<(usize, usize)>,
}

impl Verdict {
    fn new(confidence: Confidence, reason: &'static str) -> Verdict {
        Verdict {
            confidence,
            reason,
            note: None,
            span: None,
        }
    }
}

/// Runs every check a rule asks for on a candidate: `caps` is the rule's match in
/// `hay`, and its secret group the candidate secret. `None` rejects it.
pub fn accept(rule: &Rule, hay: &[u8], caps: &crate::rule::Groups<'_>) -> Option<Verdict> {
    let m = caps.get(rule.secret_group)?;
    let secret = m.as_bytes();
    if let Some(kind) = rule.spec.checksum {
        let ok = match kind {
            Checksum::GithubCrc32 => checksum::github_style_valid(secret),
            Checksum::Keyward => checksum::keyward_key_env(secret).is_some(),
            Checksum::NatsNkey => checksum::nats_seed_valid(secret),
            Checksum::CloudflareCrc32 => checksum::cloudflare_valid(secret),
        };
        // A valid checksum is proof enough: skip heuristics that could only lose it.
        return ok.then(|| Verdict::new(Confidence::High, "checksum verified"));
    }
    if let Some(check) = rule.spec.check {
        return run_check(check, rule, hay, caps, m.start(), m.end());
    }
    if is_placeholder(secret) {
        return None;
    }
    if let Some(min) = rule.spec.min_entropy {
        if shannon_entropy(secret) < min {
            return None;
        }
    }
    if rule.spec.generic {
        if is_generic_lookalike(secret) {
            return None;
        }
        return Some(Verdict::new(Confidence::Medium, "keyword context"));
    }
    Some(Verdict::new(Confidence::High, "provider token format"))
}

fn run_check(
    check: Check,
    rule: &Rule,
    hay: &[u8],
    caps: &crate::rule::Groups<'_>,
    start: usize,
    end: usize,
) -> Option<Verdict> {
    let secret = &hay[start..end];
    match check {
        Check::PasswordAssignment | Check::SecretAssignment => {
            let span = |name: &str| caps.name(name).map(|m| (m.start(), m.end()));
            let candidate = assign::Candidate {
                name: span("name")?,
                sep: span("sep").or_else(|| span("blank"))?,
                quote: caps
                    .name("q")
                    .or_else(|| caps.name("bq"))
                    .and_then(|m| m.as_bytes().last().copied()),
                value: (start, end),
            };
            judge_assignment(check, hay, &candidate, &mut assign::ValueRuns::default())
        }
        // The pattern finds the start; the token is measured here.
        Check::Jwt => judge_jwt(hay, start),
        Check::BasicAuth => structural::basic_auth(secret).map(from_structure),
        Check::UrlCredentials => {
            let group = |name: &str| caps.name(name).map_or(&b""[..], |m| m.as_bytes());
            // The pattern finds the host's first byte; the host is read here (a
            // counted repetition of hundreds in the pattern made every match cost
            // microseconds to capture).
            let host = caps
                .name("host")
                .map_or(&b""[..], |m| structural::host_at(hay, m.start()));
            structural::url_credentials(group("user"), secret, host).map(from_structure)
        }
        Check::Bearer => {
            if rule
                .spec
                .min_entropy
                .is_some_and(|min| shannon_entropy(secret) < min)
            {
                return None;
            }
            structural::bearer(secret).map(from_structure)
        }
    }
}

/// Judges the token starting at `start` (found by the `jwt` pattern or read in
/// code at its keyword): measured, then decoded and checked.
pub(crate) fn judge_jwt(hay: &[u8], start: usize) -> Option<Verdict> {
    let end = structural::jwt_end(hay, start)?;
    let v = structural::jwt(&hay[start..end], now_unix()).map(from_structure)?;
    Some(Verdict {
        span: Some((start, end)),
        ..v
    })
}

/// Judges the HTTP Basic credential at `span`, read in code after its keyword
/// ([`structural::basic_at`]).
pub(crate) fn judge_basic(hay: &[u8], span: (usize, usize)) -> Option<Verdict> {
    let v = structural::basic_auth(&hay[span.0..span.1]).map(from_structure)?;
    Some(Verdict {
        span: Some(span),
        ..v
    })
}

/// The verdict for what a structural check read (its span is the match's).
fn from_structure(s: structural::Structure) -> Verdict {
    Verdict {
        confidence: s.confidence,
        reason: s.reason,
        note: s.note,
        span: None,
    }
}

/// Judges a URL read in code at a `://` ([`structural::url_at`]).
pub(crate) fn judge_url(hay: &[u8], url: &structural::UrlParts) -> Option<Verdict> {
    let bytes = |(s, e): (usize, usize)| &hay[s..e];
    let host = structural::host_at(hay, url.host_start);
    let s = structural::url_credentials(bytes(url.user), bytes(url.password), host)?;
    Some(Verdict {
        confidence: s.confidence,
        reason: s.reason,
        note: s.note,
        span: Some(url.password),
    })
}

/// Judges an assignment candidate (from the pattern's groups or read in code at a
/// keyword) for a rule whose check is `check`.
pub(crate) fn judge_assignment(
    check: Check,
    hay: &[u8],
    candidate: &assign::Candidate,
    runs: &mut assign::ValueRuns,
) -> Option<Verdict> {
    let class = match check {
        Check::PasswordAssignment => assign::KeyClass::Password,
        Check::SecretAssignment => assign::KeyClass::Secret,
        _ => return None,
    };
    let j = assign::judge(hay, candidate, class, runs)?;
    Some(Verdict {
        span: Some(j.value),
        ..Verdict::new(j.confidence, j.reason)
    })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_constant() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(is_placeholder(b"sk-your_key_here"));
        assert!(is_placeholder(b"AKIAIOSFODNN7EXAMPLE"));
        assert!(is_placeholder(b"xxxxxxxxxxxxxxxxxxxx"));
        assert!(is_placeholder(b"${OPENAI_API_KEY}"));
        assert!(!is_placeholder(b"Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc"));
    }

    #[test]
    fn generic_lookalikes() {
        assert!(is_generic_lookalike(
            b"123e4567-e89b-12d3-a456-426614174000"
        ));
        assert!(is_generic_lookalike(b"sha512-abcDEF123+/=="));
        assert!(is_generic_lookalike(b"self.config.password"));
        assert!(is_generic_lookalike(b"get_password"));
        assert!(is_generic_lookalike(b"os.getenv(KEY)"));
        assert!(!is_generic_lookalike(b"hQ7vP2nX9kL4mR8t"));
    }
}
