//! SARIF 2.1.0, as accepted by GitHub code scanning: one run, the rules that fired,
//! one result per finding with a `partialFingerprints` entry so alerts track across
//! commits, columns counted in Unicode code points.

use crate::{Finding, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(severity: &str) -> &'static str {
    match severity {
        "critical" | "high" => "error",
        "medium" => "warning",
        _ => "note",
    }
}

/// A result's level: the rule's severity, one step down for low-confidence findings.
fn result_level(f: &Finding) -> &'static str {
    match (level(f.severity), f.confidence) {
        ("error", "low") => "warning",
        (_, "low") => "note",
        (l, _) => l,
    }
}

/// SARIF `rank` (0–100): how likely the result is a real secret.
fn rank(confidence: &str) -> f64 {
    match confidence {
        "high" => 90.0,
        "medium" => 60.0,
        _ => 30.0,
    }
}

/// GitHub sorts alerts by this CVSS-like score.
fn security_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "9.5",
        "high" => "8.0",
        "medium" => "5.5",
        _ => "3.0",
    }
}

/// Percent-encodes a relative path into a URI reference (RFC 3986 path characters kept).
fn path_to_uri(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The base id relative artifact URIs are resolved against; the run maps it to
/// the scan's base directory.
const SRCROOT: &str = "SRCROOT";

/// A directory as a `file:` URI ending in `/`.
fn dir_uri(dir: &Path) -> String {
    let mut s = format!("file://{}", path_to_uri(&dir.to_string_lossy()));
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// Where a finding is: a path relative to `base` under [`SRCROOT`], or, for a
/// path outside `base`, an absolute `file:` URI. Never a URI starting with `/`.
fn artifact_location(path: &str, base: &Path) -> Value {
    let p = Path::new(path);
    let relative = if p.is_absolute() {
        p.strip_prefix(base).ok().map(Path::to_path_buf)
    } else if path.starts_with("../") || path == ".." {
        None
    } else {
        Some(p.to_path_buf())
    };
    match relative {
        Some(r) => {
            let r = r.to_string_lossy();
            let r = r.trim_start_matches("./");
            json!({"uri": path_to_uri(r), "uriBaseId": SRCROOT})
        }
        None => {
            let mut abs = PathBuf::new();
            for c in base.join(p).components() {
                match c {
                    Component::CurDir => {}
                    Component::ParentDir => {
                        abs.pop();
                    }
                    c => abs.push(c),
                }
            }
            json!({"uri": format!("file://{}", path_to_uri(&abs.to_string_lossy()))})
        }
    }
}

fn rule_descriptor(f: &Finding) -> Value {
    json!({
        "id": f.rule_id,
        "name": f.rule_id.split('-').map(|w| {
            let mut c = w.chars();
            c.next().map(|h| h.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        }).collect::<String>(),
        "shortDescription": {"text": format!("{} detected", f.rule_name)},
        "fullDescription": {"text": format!("A {} issued by {} appears in the scanned content. Anyone who can read it can use it.", f.rule_name, f.provider)},
        "help": {
            "text": "Revoke or rotate the credential at its provider first, then remove it from the code and from history. If it is not a secret, add `keyward:allow` on its line or record it in a baseline (`keyward scan --write-baseline`).",
        },
        "defaultConfiguration": {"level": level(f.severity)},
        "properties": {
            "tags": ["security", "secret", f.provider.to_lowercase()],
            "security-severity": security_severity(f.severity),
            "precision": "high",
        }
    })
}

pub fn write(out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
    let mut rules: BTreeMap<&str, (usize, Value)> = BTreeMap::new();
    for f in &o.findings {
        let n = rules.len();
        rules
            .entry(f.rule_id.as_str())
            .or_insert_with(|| (n, rule_descriptor(f)));
    }
    let mut ordered: Vec<&(usize, Value)> = rules.values().collect();
    ordered.sort_by_key(|(i, _)| *i);
    let results: Vec<Value> = o
        .findings
        .iter()
        .map(|f| {
            let mut message = format!("{} ({}) found: {}", f.rule_name, f.rule_id, f.secret);
            if let Some(c) = &f.commit {
                message.push_str(&format!(" in commit {} by {} on {}", c.commit, c.author, c.date));
            }
            let mut result = json!({
                "ruleId": f.rule_id,
                "ruleIndex": rules[f.rule_id.as_str()].0,
                "level": result_level(f),
                "rank": rank(f.confidence),
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": artifact_location(&f.path, &o.base),
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endLine": f.end_line,
                            "endColumn": f.end_column.max(if f.end_line == f.line { f.column + 1 } else { 1 }),
                        }
                    }
                }],
                "partialFingerprints": {"keyward/v1": f.fingerprint},
            });
            let mut props = json!({"confidence": f.confidence, "confidenceReason": f.confidence_reason});
            if let Some(ctx) = f.context {
                props["context"] = json!(ctx);
            }
            if let Some(note) = &f.note {
                props["note"] = json!(note);
            }
            if let Some(c) = &f.commit {
                props["commit"] = json!(c.commit);
                props["author"] = json!(c.author);
                props["email"] = json!(c.email);
                props["date"] = json!(c.date);
            }
            result["properties"] = props;
            result
        })
        .collect();
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keyward",
                "informationUri": "https://github.com/keyward/keyward",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": ordered.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            }},
            "originalUriBaseIds": {SRCROOT: {"uri": dir_uri(&o.base)}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_relative_to_the_base_or_absolute_file_uris() {
        let base = Path::new("/work/repo");
        assert_eq!(
            artifact_location("src/a b.py", base),
            json!({"uri": "src/a%20b.py", "uriBaseId": "SRCROOT"})
        );
        assert_eq!(
            artifact_location("/work/repo/src/a.py", base),
            json!({"uri": "src/a.py", "uriBaseId": "SRCROOT"})
        );
        assert_eq!(
            artifact_location("/etc/app.conf", base),
            json!({"uri": "file:///etc/app.conf"})
        );
        assert_eq!(
            artifact_location("../other/x.env", base),
            json!({"uri": "file:///work/other/x.env"})
        );
        assert_eq!(dir_uri(base), "file:///work/repo/");
    }

    #[test]
    fn uris_escape_spaces_and_keep_separators() {
        assert_eq!(path_to_uri("a dir/b%c.txt"), "a%20dir/b%25c.txt");
        assert_eq!(path_to_uri("x.zip!in/y"), "x.zip!in/y");
    }
}
