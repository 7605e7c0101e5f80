//! JSON: `{"version": 1, "findings": [...], "summary": {...}}`.

use crate::Outcome;
use serde_json::json;
use std::io::Write;

pub fn write(out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
    let doc = json!({
        "version": 1,
        "tool": {"name": "keyward", "version": env!("CARGO_PKG_VERSION")},
        "findings": o.findings,
        "summary": {
            "findings": o.findings.len(),
            "files_scanned": o.files,
            "bytes_scanned": o.bytes,
            "skipped_binary": o.skipped_binary,
            "skipped_large": o.skipped_large,
            "suppressed": o.suppressed,
            "warnings": o.warnings,
            "elapsed_ms": o.elapsed.as_millis() as u64,
        }
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
