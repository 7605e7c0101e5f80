//! Prints the compile time and maximum match length of every built-in rule, most
//! expensive first: `cargo run --release --example rule_cost -p keyward-detect`.

use keyward_detect::{builtin_specs, Rule};
use std::time::Instant;

fn main() {
    let mut rows = Vec::new();
    for spec in builtin_specs() {
        let id = spec.id.clone();
        let t = Instant::now();
        let rule = Rule::compile(spec).expect("built-in rules compile");
        rows.push((t.elapsed(), id, rule.max_match_len()));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let total: std::time::Duration = rows.iter().map(|r| r.0).sum();
    println!("{} rules compiled in {total:?}", rows.len());
    for (t, id, max) in rows.iter().take(25) {
        println!("{t:>12?}  {id:<45} max_len={max:?}");
    }
    let t = Instant::now();
    let d = keyward_detect::Detector::builtin();
    println!(
        "detector built in {:?}; keyword automaton {} bytes",
        t.elapsed(),
        d.prefilter_memory()
    );
}
