//! Alerts: security events (a canary key used, a leaked key revoked, a secret in
//! traffic, a key used from a new network, a burst of failed logins, …) raised
//! once per key and kind within a dedupe window, always logged and counted,
//! stored with their delivery state, and delivered to the configured sinks in
//! the background (signed webhook, Slack-compatible webhook) with retries. A
//! request never waits for an alert.

mod age;
pub mod deliver;

pub use age::watch_credential_age;

use crate::metrics::Metrics;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::config::DEFAULT_DEDUPE_MS;

/// Subjects remembered for deduplication before the expired ones are dropped.
const MAX_DEDUPE_ENTRIES: usize = 100_000;

/// Raises alerts. Cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    /// Where alerts are kept; `None` only in tests that need no store.
    store: Option<keyward_store::Store>,
    delivery: deliver::Delivery,
    dedupe_ms: i64,
    /// (subject, kind) → when the last alert was raised and how many were
    /// suppressed since. The subject is the key, else the credential, else the
    /// source address.
    recent: Mutex<HashMap<(String, String), (i64, u64)>>,
}

impl Alerter {
    pub fn new(
        metrics: Arc<Metrics>,
        store: Option<keyward_store::Store>,
        delivery: deliver::Delivery,
        dedupe_ms: i64,
    ) -> Alerter {
        Alerter {
            inner: Arc::new(Inner {
                metrics,
                store,
                delivery,
                dedupe_ms,
                recent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Raises `alert`: a JSON object with at least `kind` and `severity`, and
    /// `key_id` when it concerns a key (never a secret). Within the dedupe window
    /// a second alert of the same kind about the same subject (key, else
    /// credential, else source address) is only counted; the next one after the
    /// window says how many were suppressed (`suppressed`).
    pub fn send(&self, mut alert: Value) {
        let field = |name: &str| {
            alert
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        };
        let (kind, severity, key_id) = (field("kind"), field("severity"), field("key_id"));
        // What the alert is about: the key, else the credential, the budget
        // scope or the address.
        let subject = [
            alert.get("key_id"),
            alert.get("credential"),
            alert.get("scope"),
            alert.get("seen").and_then(|s| s.get("address")),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .unwrap_or("-")
        .to_string();
        let now_ms = crate::time::now_ms();
        {
            let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() >= MAX_DEDUPE_ENTRIES {
                let window = self.inner.dedupe_ms;
                recent.retain(|_, (at, _)| now_ms.saturating_sub(*at) < window);
            }
            let slot = recent
                .entry((subject.clone(), kind.clone()))
                .or_insert((i64::MIN, 0));
            if now_ms.saturating_sub(slot.0) < self.inner.dedupe_ms {
                slot.1 += 1;
                tracing::debug!(
                    kind,
                    subject,
                    "alert suppressed (same subject and kind within the dedupe window)"
                );
                return;
            }
            if slot.1 > 0 {
                alert["suppressed"] = slot.1.into();
            }
            *slot = (now_ms, 0);
        }
        let id = format!("alrt_{}", keyward_vault::random_base62(16));
        if let Some(o) = alert.as_object_mut() {
            o.insert("id".into(), id.clone().into());
            o.entry("at").or_insert(crate::time::now().into());
        }
        tracing::warn!(target: "keyward::alert", alert = %alert, "alert");
        self.inner.metrics.alert(&kind, &severity);
        let row = keyward_store::AlertRow {
            id,
            at_ms: now_ms,
            kind,
            severity,
            key_id: (key_id != "-").then_some(key_id),
            body: alert.to_string(),
            delivery: if self.inner.delivery.configured() {
                "pending"
            } else {
                "log_only"
            }
            .into(),
            attempts: 0,
            last_error: None,
            acked_ms: None,
            acked_by: None,
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Some(store) = &inner.store {
                if let Err(e) = store.insert_alert(&row).await {
                    tracing::error!(alert_id = row.id, "alert not stored: {e}");
                }
            }
            if !inner.delivery.configured() {
                return;
            }
            let outcome = inner.delivery.deliver(&row.body).await;
            if let Some(store) = &inner.store {
                let (state, error) = match &outcome.error {
                    None => ("delivered", None),
                    Some(e) => ("undeliverable", Some(e.as_str())),
                };
                if let Err(e) = store
                    .set_alert_delivery(&row.id, state, outcome.attempts, error)
                    .await
                {
                    tracing::error!(alert_id = row.id, "alert delivery state not stored: {e}");
                }
            }
            if let Some(e) = outcome.error {
                tracing::error!(
                    alert_id = row.id,
                    attempts = outcome.attempts,
                    "alert not delivered: {e}; it is kept (keyward alerts list --undelivered)"
                );
            }
        });
    }
}
