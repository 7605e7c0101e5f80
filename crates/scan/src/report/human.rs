//! Human output: one block per finding, then a summary. Colour comes from
//! `anstream`, which drops it when the output is not a terminal or NO_COLOR is set.

use crate::Outcome;
use anstyle::{AnsiColor, Style};
use keyward_detect::Severity;
use std::io::Write;

fn severity_style(s: Severity) -> Style {
    let c = match s {
        Severity::Critical => AnsiColor::BrightRed,
        Severity::High => AnsiColor::Red,
        Severity::Medium => AnsiColor::Yellow,
        Severity::Low => AnsiColor::Cyan,
    };
    Style::new().fg_color(Some(c.into())).bold()
}

pub fn write(out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
    let bold = Style::new().bold();
    let dim = Style::new().dimmed();
    for f in &o.findings {
        let sev = severity_style(f.severity());
        writeln!(
            out,
            "{sev}{:<8}{sev:#} {bold}{}{bold:#} ({})",
            f.severity, f.rule_name, f.rule_id
        )?;
        writeln!(out, "  {}:{}:{}  {}", f.path, f.line, f.column, f.secret)?;
        let context = if f.context.is_some() {
            ", in test code"
        } else {
            ""
        };
        writeln!(
            out,
            "  {dim}confidence {}{context}: {}{dim:#}",
            f.confidence, f.confidence_reason
        )?;
        if let Some(note) = &f.note {
            writeln!(out, "  {dim}{note}{dim:#}")?;
        }
        if let Some(enc) = f.encoding {
            writeln!(out, "  {dim}found inside {enc}-encoded text{dim:#}")?;
        }
        if let Some(env) = &f.environment {
            if f.revoked {
                writeln!(out, "  {dim}Keyward key for environment `{env}`: revoked by the gateway (--report-to); remove it from the code{dim:#}")?;
            } else {
                writeln!(out, "  {dim}Keyward key for environment `{env}`: revoke it with `keyward keys revoke`{dim:#}")?;
            }
        }
        if let Some(c) = &f.commit {
            writeln!(
                out,
                "  {dim}commit {} by {} <{}> on {}{dim:#}",
                &c.commit[..c.commit.len().min(12)],
                c.author,
                c.email,
                c.date
            )?;
        }
        if !f.paths.is_empty() {
            writeln!(out, "  {dim}also at {}{dim:#}", f.paths.join(", "))?;
        }
        writeln!(out, "  {dim}fingerprint {}{dim:#}", f.fingerprint)?;
    }
    for w in &o.warnings {
        writeln!(
            out,
            "{}warning:{:#} {w}",
            Style::new().fg_color(Some(AnsiColor::Yellow.into())),
            Style::new()
        )?;
    }
    let mb = o.bytes as f64 / 1e6;
    let secs = o.elapsed.as_secs_f64();
    let verdict = if o.findings.is_empty() {
        format!(
            "{}no secrets found{:#}",
            Style::new().fg_color(Some(AnsiColor::Green.into())).bold(),
            Style::new()
        )
    } else {
        let mut paths: Vec<&str> = o.findings.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        format!(
            "{}{} secret{} found in {} file{}{:#}",
            Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
            o.findings.len(),
            plural(o.findings.len()),
            paths.len(),
            plural(paths.len()),
            Style::new()
        )
    };
    let scanned = if o.history {
        format!("scanned {} file versions", o.files)
    } else {
        format!("scanned {} files", o.files)
    };
    writeln!(
        out,
        "{verdict}; {scanned}, {mb:.1} MB in {secs:.2}s ({:.0} MB/s); {} binary and {} oversized skipped, {} suppressed",
        if secs > 0.0 { mb / secs } else { 0.0 },
        o.skipped_binary,
        o.skipped_large,
        o.suppressed
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
