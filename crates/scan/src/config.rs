//! The scan configuration file (`.keyward.toml` at the scan root, or `--config`).
//!
//! ```toml
//! [scan]
//! disable_rules = ["generic-password-assignment"]   # rule ids to turn off
//! allow_paths = ["tests/fixtures/**"]               # gitignore-style globs
//! allow_secrets = ['^sk-test-']                     # regexes matched on the secret
//!
//! [[rule]]                                           # extra rules, same schema as built-ins
//! id = "acme-internal-token"
//! ...
//! ```

use keyward_detect::RuleSpec;
use serde::Deserialize;
use std::path::Path;

/// File name looked for in the scan root when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = ".keyward.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    #[serde(default)]
    pub scan: ScanSection,
    /// Extra rules.
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSection {
    #[serde(default)]
    pub disable_rules: Vec<String>,
    #[serde(default)]
    pub allow_paths: Vec<String>,
    #[serde(default)]
    pub allow_secrets: Vec<String>,
}

impl ScanConfig {
    /// Reads and parses a config file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<ScanConfig, crate::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| crate::Error::Config(format!("{}: {e}", path.display())))
    }
}
