//! Turns bytes from any source into reported findings: detection, positions,
//! fingerprints and suppression.

use crate::context::is_test_path;
use crate::finding::{fingerprint, CommitInfo, Finding};
use crate::suppress::{line_allows, Suppressions};
use keyward_detect::{checksum, Confidence, Detector};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by all scanning threads.
#[derive(Debug, Default)]
pub struct Stats {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped_binary: AtomicU64,
    pub skipped_large: AtomicU64,
    pub suppressed: AtomicU64,
}

/// Bytes sniffed for a NUL to call content binary (as git and ripgrep do).
const BINARY_SNIFF: usize = 8192;

/// True when the content looks binary.
pub fn looks_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(BINARY_SNIFF)]).is_some()
}

/// A detector plus what to suppress; shared by every source.
pub struct Scanner<'a> {
    pub detector: &'a Detector,
    pub suppress: &'a Suppressions,
    pub stats: &'a Stats,
    pub max_size: u64,
    pub include_binary: bool,
    /// Findings below this confidence are not reported.
    pub min_confidence: Confidence,
}

impl<'a> Scanner<'a> {
    /// Whether content of this size is scanned (counts it as skipped if not).
    pub fn accept_size(&self, len: u64) -> bool {
        if len > self.max_size {
            self.stats.skipped_large.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            true
        }
    }

    /// Scans one blob. `path` is what reports show. Binary content is skipped
    /// unless `include_binary`.
    pub fn scan_blob(&self, path: &str, data: &[u8], commit: Option<&CommitInfo>) -> Vec<Finding> {
        if !self.include_binary && looks_binary(data) {
            self.stats.skipped_binary.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let raw = self.detector.find(data);
        if raw.is_empty() {
            return Vec::new();
        }
        let mut lines = LineIndex::new(data);
        let mut out = Vec::with_capacity(raw.len());
        let test_code = is_test_path(path);
        for f in raw {
            let confidence = if test_code {
                f.confidence.lower()
            } else {
                f.confidence
            };
            if confidence < self.min_confidence {
                continue;
            }
            let rule = &self.detector.rule(&f).spec;
            let secret = String::from_utf8_lossy(&f.secret).into_owned();
            let fp = fingerprint(&rule.id, path, &f.secret);
            if line_allows(data, f.start, f.end)
                || self.suppress.secret_allowed(&secret)
                || self.suppress.in_baseline(&fp)
            {
                self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (line, column) = lines.position(f.start);
            let (end_line, end_column) = lines.position(f.end);
            let mut finding = Finding {
                rule_id: rule.id.clone(),
                rule_name: rule.name.clone(),
                provider: rule.provider.clone(),
                severity: rule.severity.as_str(),
                confidence: confidence.as_str(),
                confidence_reason: f.reason,
                context: test_code.then_some("test"),
                note: f.note.clone(),
                path: path.to_string(),
                line,
                column,
                end_line,
                end_column,
                fingerprint: fp,
                encoding: f.encoding.map(|e| e.as_str()),
                environment: checksum::keyward_key_env(&f.secret).map(str::to_string),
                revoked: false,
                commit: commit.cloned(),
                paths: Vec::new(),
                secret: String::new(),
                raw_secret: secret,
                severity_rank: rule.severity,
                confidence_rank: confidence,
            };
            finding.set_secret_visibility(false);
            out.push(finding);
        }
        out
    }
}

/// Converts byte offsets to 1-based (line, column in characters), for offsets
/// queried in any order, remembering the last line found.
struct LineIndex<'d> {
    data: &'d [u8],
    line_starts: Vec<usize>,
}

impl<'d> LineIndex<'d> {
    fn new(data: &'d [u8]) -> Self {
        LineIndex {
            data,
            line_starts: Vec::new(),
        }
    }

    fn position(&mut self, offset: usize) -> (usize, usize) {
        if self.line_starts.is_empty() {
            self.line_starts.push(0);
            self.line_starts
                .extend(memchr::memchr_iter(b'\n', self.data).map(|i| i + 1));
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let col = String::from_utf8_lossy(&self.data[start..offset.min(self.data.len())])
            .chars()
            .count()
            + 1;
        (line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a\nbé c\n";
        let mut li = LineIndex::new(text.as_bytes());
        assert_eq!(li.position(0), (1, 1));
        assert_eq!(li.position(2), (2, 1));
        let c = text.find('c').unwrap();
        assert_eq!(li.position(c), (2, 4));
    }
}
