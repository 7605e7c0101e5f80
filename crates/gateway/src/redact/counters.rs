//! In-memory counts of secrets found in traffic, per key, rule, direction and action.

use super::Action;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Which way the secret was travelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// In a request, towards the provider.
    Inbound,
    /// In a response, towards the client.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

type CounterKey = (String, &'static str, Direction, Action);

/// Counts since the server started. Cheap to update: one short lock per request
/// that carried a secret, none otherwise.
#[derive(Debug, Default)]
pub struct Counters {
    counts: Mutex<BTreeMap<CounterKey, u64>>,
}

impl Counters {
    /// Adds one request's tally: one map entry touched per rule, not per secret.
    pub fn add(&self, key_id: &str, found: &super::Tally, dir: Direction, action: Action) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (r, n) in found.iter() {
            *m.entry((key_id.to_string(), r, dir, action)).or_default() += n;
        }
    }

    /// Every count, as JSON objects sorted by key id, rule, direction and action.
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|((key, rule, dir, action), n)| {
                serde_json::json!({
                    "key_id": key, "rule": rule, "direction": dir.as_str(),
                    "action": action.as_str(), "count": n,
                })
            })
            .collect()
    }
}
