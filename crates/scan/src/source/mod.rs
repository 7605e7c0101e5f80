//! Where bytes come from: the file system (with archives), git, stdin.

pub mod archive;
pub mod fs;
pub mod git;

use crate::finding::Finding;
use std::sync::Mutex;

/// Collects findings and non-fatal problems from many threads.
#[derive(Debug, Default)]
pub struct Sink {
    findings: Mutex<Vec<Finding>>,
    warnings: Mutex<Vec<String>>,
}

impl Sink {
    pub fn push(&self, mut v: Vec<Finding>) {
        if !v.is_empty() {
            self.findings.lock().unwrap().append(&mut v);
        }
    }
    /// A problem that did not stop the scan (an unreadable file, a broken archive).
    pub fn warn(&self, msg: String) {
        self.warnings.lock().unwrap().push(msg);
    }
    pub fn into_parts(self) -> (Vec<Finding>, Vec<String>) {
        (
            self.findings.into_inner().unwrap(),
            self.warnings.into_inner().unwrap(),
        )
    }
}
