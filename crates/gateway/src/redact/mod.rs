//! Secrets in traffic: what to do with them (policy), finding them in JSON bodies
//! and in server-sent event streams, and counting what was done.

mod counters;
mod json;
mod policy;
mod sse;

pub use counters::{Counters, Direction};
pub use json::redact_json;
pub use policy::{Action, Policy, PolicyConfig};
pub use sse::{event_end as sse_event_end, SseRedactor};

/// `rule id → count`, in first-seen order, for audit entries and alerts.
pub fn tally(hits: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for h in hits {
        let n = m.get(*h).and_then(|v| v.as_u64()).unwrap_or(0);
        m.insert((*h).to_string(), (n + 1).into());
    }
    m
}

/// The rules named in `hits`, each once, comma-separated (for error messages).
pub fn rule_list(hits: &[&str]) -> String {
    tally(hits).keys().cloned().collect::<Vec<_>>().join(", ")
}
