//! A finding as reported to users: where, what, and a fingerprint to suppress it by.

use keyward_detect::{Confidence, Severity};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The commit that introduced a secret, for findings from git history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommitInfo {
    pub commit: String,
    pub author: String,
    pub email: String,
    /// Author date, ISO 8601.
    pub date: String,
}

/// One reported secret. The secret itself is private: reporters obtain it only
/// through [`Finding::display_secret`], which redacts unless asked not to.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub rule_name: String,
    pub provider: String,
    pub severity: &'static str,
    /// How sure the finding is (`high`, `medium`, `low`), and why.
    pub confidence: &'static str,
    pub confidence_reason: &'static str,
    /// `test` when the path is test or fixture code (confidence one level lower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'static str>,
    /// Facts read from the secret (a JWT's issuer and expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Path as given or found (relative to the scan root), `-` for stdin;
    /// `archive.zip!inner/file` inside archives.
    pub path: String,
    /// 1-based line of the start of the secret.
    pub line: usize,
    /// 1-based column (in characters) of the start of the secret.
    pub column: usize,
    pub end_line: usize,
    /// 1-based column just past the last character of the secret.
    pub end_column: usize,
    /// Stable id of this secret at this path under this rule; survives line moves.
    pub fingerprint: String,
    /// The encoding the secret was hidden in (`base64`, `percent`, `json-escape`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// For Keyward client keys: the environment the key belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// For Keyward client keys reported with `--report-to`: the gateway revoked it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    /// History scans: every other path the same secret appeared at (`path` is the
    /// first, in the commit that introduced it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Redacted unless the user asked for `--show-secrets`.
    pub secret: String,
    #[serde(skip)]
    pub(crate) raw_secret: String,
    #[serde(skip)]
    pub(crate) severity_rank: Severity,
    #[serde(skip)]
    pub(crate) confidence_rank: Confidence,
}

impl Finding {
    /// The severity as an ordered value.
    pub fn severity(&self) -> Severity {
        self.severity_rank
    }

    /// The confidence as an ordered value.
    pub fn confidence(&self) -> Confidence {
        self.confidence_rank
    }

    /// The secret itself, for handing to a revocation endpoint (`--report-to`).
    /// Never print it.
    pub fn raw_secret(&self) -> &str {
        &self.raw_secret
    }

    /// Sets the `secret` field to the plain secret (`show == true`) or a redacted form.
    pub fn set_secret_visibility(&mut self, show: bool) {
        self.secret = if show {
            self.raw_secret.clone()
        } else {
            redact_secret(&self.raw_secret)
        };
    }
}

/// Keeps at most a few leading characters — enough to tell keys apart, never
/// enough to use — followed by asterisks and the length.
pub fn redact_secret(secret: &str) -> String {
    let n = secret.chars().count();
    let keep = (n / 8).min(6);
    let head: String = secret.chars().take(keep).collect();
    format!("{head}*****({n} chars)")
}

/// Hex SHA-256 (first 128 bits) of rule id, path and secret.
pub fn fingerprint(rule_id: &str, path: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(secret);
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_all_but_a_short_head() {
        let r = redact_secret("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789");
        assert!(r.starts_with("sk-pr"));
        assert!(!r.contains("abcdefghij"));
        assert_eq!(redact_secret("hunter2"), "*****(7 chars)");
    }

    #[test]
    fn fingerprint_depends_on_rule_path_and_secret_only() {
        let a = fingerprint("r", "p", b"s");
        assert_eq!(a, fingerprint("r", "p", b"s"));
        assert_ne!(a, fingerprint("r", "q", b"s"));
        assert_eq!(a.len(), 32);
    }
}
