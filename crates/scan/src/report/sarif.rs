//! SARIF 2.1.0, as accepted by GitHub code scanning: one run, the rules that fired,
//! one result per finding with a `partialFingerprints` entry so alerts track across
//! commits, columns counted in Unicode code points.

use crate::{Finding, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;

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
                        "artifactLocation": {"uri": path_to_uri(&f.path)},
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
    fn uris_escape_spaces_and_keep_separators() {
        assert_eq!(path_to_uri("a dir/b%c.txt"), "a%20dir/b%25c.txt");
        assert_eq!(path_to_uri("x.zip!in/y"), "x.zip!in/y");
    }
}
