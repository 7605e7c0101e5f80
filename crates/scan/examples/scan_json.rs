//! Scans paths and prints the JSON report, without building the CLI and gateway:
//! a quick loop for measuring detection on a labelled corpus.
//!
//! `cargo run --release -p keyward-scan --example scan_json -- [--show-secrets] PATH…`

use keyward_scan::{report, run, scanner::Stats, ScanOptions, Source};
use std::path::PathBuf;

fn main() {
    let mut show = false;
    let mut paths = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--show-secrets" {
            show = true;
        } else {
            paths.push(PathBuf::from(a));
        }
    }
    let opts = ScanOptions {
        source: Source::Paths(paths),
        ..ScanOptions::default()
    };
    let mut outcome = run(&opts, &Stats::default()).unwrap_or_else(|e| {
        eprintln!("scan_json: {e}");
        std::process::exit(2)
    });
    for f in &mut outcome.findings {
        f.set_secret_visibility(show);
    }
    report::json::write(&mut std::io::stdout().lock(), &outcome).expect("stdout");
}
