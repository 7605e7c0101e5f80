//! Keyward's secret detection engine.
//!
//! Rules are data (`rules/*.toml`, embedded at build time). A [`Detector`] runs one
//! case-insensitive Aho-Corasick pass over every rule's keywords, then only the
//! triggered rules' regexes; candidates pass checksum, entropy and look-alike filters;
//! base64, percent-encoded and JSON-escaped regions are decoded and scanned too, with
//! findings pointing at the original text. [`Detector::redact`] replaces every secret
//! with `[REDACTED:<rule-id>]` for in-process use (gateway, log layer).
//!
//! This crate does no I/O and spawns no threads; a `Detector` is `Sync`.

mod assign;
pub mod checksum;
mod decode;
mod engine;
mod lexicon;
pub mod rule;
mod stream;
mod structural;
pub mod validate;

pub use decode::Encoding;
pub use engine::{
    builtin_specs, parse_rules, BuildError, Detector, DetectorBuilder, Finding, Work,
};
pub use rule::{Check, Confidence, Rule, RuleSpec, Severity};
pub use stream::{StreamRedactor, MAX_HOLD};
pub use validate::Verdict;
