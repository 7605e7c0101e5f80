//! Baseline files: findings accepted once, suppressed afterwards by fingerprint.

use crate::finding::Finding;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Serialize, Deserialize)]
struct BaselineFile {
    version: u32,
    findings: Vec<BaselineEntry>,
}

/// What a baseline keeps of a finding: never the secret.
#[derive(Debug, Serialize, Deserialize)]
struct BaselineEntry {
    fingerprint: String,
    rule_id: String,
    path: String,
}

/// Reads the fingerprints of a baseline written by [`write`].
pub fn read(path: &Path) -> Result<HashSet<String>, crate::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    let f: BaselineFile = serde_json::from_str(&text).map_err(|e| {
        crate::Error::Config(format!(
            "{} is not a Keyward baseline ({e}); create one with --write-baseline",
            path.display()
        ))
    })?;
    Ok(f.findings.into_iter().map(|e| e.fingerprint).collect())
}

/// Writes every finding's fingerprint (sorted, deduplicated) to `path`.
pub fn write(path: &Path, findings: &[Finding]) -> Result<(), crate::Error> {
    let mut entries: Vec<BaselineEntry> = findings
        .iter()
        .map(|f| BaselineEntry {
            fingerprint: f.fingerprint.clone(),
            rule_id: f.rule_id.clone(),
            path: f.path.clone(),
        })
        .collect();
    entries.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    entries.dedup_by(|a, b| a.fingerprint == b.fingerprint);
    let text = serde_json::to_string_pretty(&BaselineFile {
        version: 1,
        findings: entries,
    })
    .expect("serialisable");
    std::fs::write(path, text + "\n").map_err(|e| crate::Error::io(path, e))
}
