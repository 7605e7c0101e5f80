//! Runs every positive and negative example of every built-in rule.

use keyward_detect::{builtin_specs, Detector};
use std::collections::HashSet;

fn rule_ids_found(d: &Detector, text: &str) -> Vec<String> {
    d.find(text.as_bytes())
        .iter()
        .map(|f| d.rule(f).id().to_string())
        .collect()
}

#[test]
fn every_rule_has_positive_and_negative_examples() {
    let mut missing = Vec::new();
    for s in builtin_specs() {
        if s.examples.is_empty() || s.negative_examples.is_empty() {
            missing.push(s.id);
        }
    }
    assert!(
        missing.is_empty(),
        "rules without both kinds of examples: {missing:?}"
    );
}

#[test]
fn every_positive_example_is_found_by_its_rule() {
    let d = Detector::builtin();
    let mut failures = Vec::new();
    for s in builtin_specs() {
        for ex in &s.examples {
            let found = rule_ids_found(d, ex);
            if !found.contains(&s.id) {
                failures.push(format!(
                    "{}: not found in {:?} (found {:?})",
                    s.id, ex, found
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} positive examples missed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_negative_example_is_found_by_its_rule() {
    let d = Detector::builtin();
    let mut failures = Vec::new();
    for s in builtin_specs() {
        for ex in &s.negative_examples {
            let found = rule_ids_found(d, ex);
            if found.contains(&s.id) {
                failures.push(format!("{}: wrongly found in {:?}", s.id, ex));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} negative examples matched:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rule_ids_are_unique_and_coverage_is_broad() {
    let specs = builtin_specs();
    let ids: HashSet<_> = specs.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids.len(), specs.len(), "duplicate rule ids");
    assert!(
        specs.len() >= 90,
        "only {} rules; at least 90 credential types are required",
        specs.len()
    );
}

#[test]
fn every_builtin_pattern_compiles_and_is_bounded() {
    let mut unbounded = Vec::new();
    for spec in builtin_specs() {
        let rule = keyward_detect::Rule::compile(spec).unwrap();
        rule.compile_now().unwrap();
        // Bounded rules search a window around each keyword; unbounded ones scan
        // whole files whenever a keyword appears.
        if rule.max_match_len().is_none() {
            unbounded.push(rule.id().to_string());
        }
    }
    assert!(
        unbounded.is_empty(),
        "rules with unbounded patterns: {unbounded:?}"
    );
}
