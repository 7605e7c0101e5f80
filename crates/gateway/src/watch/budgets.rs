//! Budget thresholds: an alert when a key, owner or environment has spent 50%,
//! 80% and 100% of a daily or monthly budget, once per threshold and period; and
//! when a budget first refuses a request in a period (`budget_exhausted`).

use super::AlertSink;
use crate::budget::Budget;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// The thresholds, in percent of a budget.
pub const THRESHOLDS: [u32; 3] = [50, 80, 100];

/// Scopes remembered before the state starts over (bounded memory).
const MAX_SCOPES: usize = 100_000;

/// Which thresholds each scope and period already alerted.
#[derive(Default)]
pub struct BudgetWatch {
    /// (scope id, `daily`/`monthly`, period number) → highest threshold alerted
    /// (101 once the budget refused a request).
    alerted: Mutex<HashMap<(String, &'static str, i64), u32>>,
}

/// One scope's spend, for [`BudgetWatch::check`].
pub struct ScopeSpend<'a> {
    /// `key:…`, `owner:…`, `env:…`.
    pub scope_id: &'a str,
    /// `key`, ``owner `x` ``, ``environment `y` ``.
    pub label: &'a str,
    /// The key of the request that brought the scope over a threshold.
    pub key_id: &'a str,
    pub budget: Budget,
    /// `(day, day_spent, month, month_spent)` as the ledger reports it.
    pub spent: (i64, i64, i64, i64),
}

impl BudgetWatch {
    /// Raises an alert for each threshold `s` crossed since the last check.
    pub fn check(&self, sink: &dyn AlertSink, s: &ScopeSpend<'_>) {
        let (day, day_spent, month, month_spent) = s.spent;
        for (period, number, limit, spent) in [
            ("daily", day, s.budget.daily, day_spent),
            ("monthly", month, s.budget.monthly, month_spent),
        ] {
            let Some(limit) = limit.filter(|l| *l > 0) else {
                continue;
            };
            let percent = (spent.max(0) as i128 * 100 / limit as i128).min(100) as u32;
            let Some(&reached) = THRESHOLDS.iter().rev().find(|t| percent >= **t) else {
                continue;
            };
            if self.mark(s.scope_id, period, number, reached) {
                sink.raise(alert(s, period, reached, spent, limit));
            }
        }
    }

    /// A budget of `s` refused a request (`period`: `daily` or `monthly`): one
    /// alert per scope and period.
    pub fn refused(&self, sink: &dyn AlertSink, s: &ScopeSpend<'_>, period: &'static str) {
        let (day, day_spent, month, month_spent) = s.spent;
        let (number, spent, limit) = match period {
            "daily" => (day, day_spent, s.budget.daily),
            _ => (month, month_spent, s.budget.monthly),
        };
        if self.mark(s.scope_id, period, number, 101) {
            let mut a = alert(s, period, 100, spent, limit.unwrap_or(0));
            a["kind"] = "budget_exhausted".into();
            a["summary"] = format!(
                "the {period} budget of this {} refuses requests: what is left cannot cover their worst case",
                s.label
            )
            .into();
            sink.raise(a);
        }
    }

    /// Records `level` for the scope and period; true if it is higher than what
    /// was alerted before.
    fn mark(&self, scope: &str, period: &'static str, number: i64, level: u32) -> bool {
        let mut alerted = self.alerted.lock().unwrap_or_else(|e| e.into_inner());
        if alerted.len() >= MAX_SCOPES {
            alerted.clear();
        }
        let slot = alerted
            .entry((scope.to_string(), period, number))
            .or_insert(0);
        if level > *slot {
            *slot = level;
            true
        } else {
            false
        }
    }
}

fn alert(
    s: &ScopeSpend<'_>,
    period: &str,
    percent: u32,
    spent: i64,
    limit: i64,
) -> serde_json::Value {
    let subject = if s.scope_id.starts_with("key:") {
        json!(s.key_id)
    } else {
        serde_json::Value::Null
    };
    json!({
        "kind": format!("budget_{percent}_percent"),
        "severity": if percent >= 100 { "high" } else { "warning" },
        "key_id": subject,
        "scope": s.scope_id,
        "request_key_id": s.key_id,
        "summary": format!(
            "this {} has spent {percent}% of its {period} budget ({} of {})",
            s.label,
            crate::prices::dollars(spent),
            crate::prices::dollars(limit)
        ),
        "seen": {"spent_pico": spent},
        "baseline": {"budget_pico": limit, "period": period},
        "action": "raise the budget (keyward keys update --daily-budget / --monthly-budget, or [[limits]]) or find what is spending",
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::Collected;
    use super::*;

    #[test]
    fn each_threshold_alerts_once_per_period() {
        let w = BudgetWatch::default();
        let sink = Collected::default();
        let spend = |day_spent: i64, day: i64| ScopeSpend {
            scope_id: "key:key_b",
            label: "key",
            key_id: "key_b",
            budget: Budget {
                daily: Some(1_000),
                monthly: None,
            },
            spent: (day, day_spent, 0, day_spent),
        };
        for spent in [100, 499, 500, 600, 799, 800, 900, 1_000, 1_000] {
            w.check(&sink, &spend(spent, 1));
        }
        assert_eq!(
            sink.kinds(),
            [
                "budget_50_percent",
                "budget_80_percent",
                "budget_100_percent"
            ]
        );
        // A new day starts over; a jump straight to 85% says 80 only.
        w.check(&sink, &spend(850, 2));
        assert_eq!(
            sink.0.lock().unwrap().last().unwrap()["kind"],
            "budget_80_percent"
        );
        w.refused(&sink, &spend(850, 2), "daily");
        w.refused(&sink, &spend(850, 2), "daily");
        let all = sink.0.lock().unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[4]["kind"], "budget_exhausted");
        assert_eq!(all[4]["key_id"], "key_b");
    }
}
