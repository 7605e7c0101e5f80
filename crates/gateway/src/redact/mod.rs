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

/// How many secrets of each rule were found, by rule id. A body can carry
/// hundreds of thousands of secrets of a handful of rules: they are counted once,
/// where they are found, and everything downstream (counters, metrics, audit,
/// alerts, messages) costs per rule, not per secret.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally(std::collections::BTreeMap<&'static str, u64>);

impl Tally {
    /// The tally of a list of hits (one rule id per secret found).
    pub fn of(hits: &[&'static str]) -> Tally {
        let mut t = Tally::default();
        t.add_all(hits.iter().copied());
        t
    }

    /// Counts more hits.
    pub fn add_all(&mut self, hits: impl IntoIterator<Item = &'static str>) {
        for h in hits {
            *self.0.entry(h).or_default() += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(rule id, count)`, by rule id.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(r, n)| (*r, *n))
    }

    /// `rule id → count`, for audit entries and alerts.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.iter()
            .map(|(r, n)| (r.to_string(), n.into()))
            .collect()
    }

    /// The rules, each once, comma-separated (for error messages).
    pub fn rule_list(&self) -> String {
        self.0.keys().copied().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn a_tally_counts_each_rule_once_whatever_the_number_of_hits() {
        let hits: Vec<&'static str> = ["b", "a", "b"].repeat(100_000);
        let t = Tally::of(&hits);
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [("a", 100_000), ("b", 200_000)]
        );
        assert_eq!(t.rule_list(), "a, b");
        assert_eq!(t.to_json()["b"], 200_000);
        assert!(Tally::default().is_empty());
    }
}
