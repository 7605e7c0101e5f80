//! Everything that silences a finding: inline allow comments, ignored paths,
//! allowed secret patterns and baseline fingerprints.

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use regex::Regex;
use std::collections::HashSet;
use std::path::Path;

/// Name of the path ignore file, gitignore syntax, read from the scan root.
pub const IGNORE_FILE: &str = ".keywardignore";

/// Markers that, on the same line as a secret, mark it as intended.
const INLINE_ALLOW_MARKERS: &[&[u8]] = &[b"keyward:allow", b"pragma: allowlist secret"];

/// True when the line holding `offset` carries an inline allow marker.
pub fn line_allows(data: &[u8], start: usize, end: usize) -> bool {
    let ls = memchr::memrchr(b'\n', &data[..start]).map_or(0, |i| i + 1);
    let le = memchr::memchr(b'\n', &data[end.min(data.len())..]).map_or(data.len(), |i| end + i);
    let line = &data[ls..le];
    INLINE_ALLOW_MARKERS
        .iter()
        .any(|m| memchr::memmem::find(line, m).is_some())
}

/// Paths and secrets the user has told us to leave alone.
#[derive(Debug)]
pub struct Suppressions {
    paths: Gitignore,
    secrets: Vec<Regex>,
    baseline: HashSet<String>,
}

impl Default for Suppressions {
    fn default() -> Self {
        Suppressions {
            paths: Gitignore::empty(),
            secrets: Vec::new(),
            baseline: HashSet::new(),
        }
    }
}

impl Suppressions {
    /// Builds from the ignore file under `root` (if present), extra globs and secret
    /// regexes from the config, and baseline fingerprints.
    pub fn new(
        root: &Path,
        allow_paths: &[String],
        allow_secrets: &[String],
        baseline: HashSet<String>,
    ) -> Result<Suppressions, crate::Error> {
        let mut b = GitignoreBuilder::new(root);
        let ignore_file = root.join(IGNORE_FILE);
        if ignore_file.is_file() {
            if let Some(e) = b.add(&ignore_file) {
                return Err(crate::Error::Config(format!(
                    "{}: {e}",
                    ignore_file.display()
                )));
            }
        }
        for glob in allow_paths {
            b.add_line(None, glob)
                .map_err(|e| crate::Error::Config(format!("allow_paths entry {glob:?}: {e}")))?;
        }
        let paths = b.build().map_err(|e| crate::Error::Config(e.to_string()))?;
        let secrets = allow_secrets
            .iter()
            .map(|r| {
                Regex::new(r)
                    .map_err(|e| crate::Error::Config(format!("allow_secrets entry {r:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Suppressions {
            paths,
            secrets,
            baseline,
        })
    }

    /// True when a path (relative to the root, `/`-separated) is ignored. Absolute
    /// paths outside the root are never ignored: the rules do not speak of them.
    pub fn path_ignored(&self, rel_path: &str, is_dir: bool) -> bool {
        let path = Path::new(rel_path);
        let rel = if path.is_absolute() {
            match path.strip_prefix(self.paths.path()) {
                Ok(r) => r,
                Err(_) => return false,
            }
        } else {
            path
        };
        !rel.as_os_str().is_empty()
            && self
                .paths
                .matched_path_or_any_parents(rel, is_dir)
                .is_ignore()
    }

    pub fn secret_allowed(&self, secret: &str) -> bool {
        self.secrets.iter().any(|r| r.is_match(secret))
    }

    pub fn in_baseline(&self, fingerprint: &str) -> bool {
        self.baseline.contains(fingerprint)
    }
}
