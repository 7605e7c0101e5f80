//! Alerts: high-severity events (a canary key used, a leaked key reported) sent to
//! a webhook as JSON, and always logged on the `keyward::alert` target. Delivery
//! runs in the background with a few retries; it never holds up a request.

use serde_json::Value;
use std::time::Duration;

#[derive(Clone)]
pub struct Alerter {
    client: reqwest::Client,
    webhook: Option<String>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Alerter {
    pub fn new(
        client: reqwest::Client,
        webhook: Option<String>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Alerter {
        Alerter {
            client,
            webhook,
            metrics,
        }
    }

    /// Sends `alert` (an object with at least `kind` and `severity`).
    pub fn send(&self, alert: Value) {
        tracing::warn!(target: "keyward::alert", alert = %alert, "alert");
        let field = |name: &str| alert.get(name).and_then(Value::as_str).unwrap_or("-");
        self.metrics.alert(field("kind"), field("severity"));
        let Some(url) = self.webhook.clone() else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            for attempt in 0..3u64 {
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(alert.to_string())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!("alert webhook answered {}", r.status()),
                    Err(e) => tracing::warn!("alert webhook unreachable: {}", e.without_url()),
                }
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
            tracing::error!("alert not delivered to the webhook after 3 attempts");
        });
    }
}

/// Alerts once per credential version whose age passes `max_age`
/// (`credential_rotation_overdue`), checking every `max_age / 4` (1 s to 60 s).
pub async fn watch_credential_age(
    live: std::sync::Arc<crate::state::Live>,
    alerter: Alerter,
    max_age: std::time::Duration,
) {
    let every = (max_age / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut alerted = std::collections::HashSet::new();
    loop {
        tick.tick().await;
        let snapshot = live.snapshot.load_full();
        let now = crate::time::now();
        for (name, &created) in &snapshot.credential_created {
            let age = now - created;
            if age > max_age.as_secs() as i64 && alerted.insert((name.clone(), created)) {
                alerter.send(serde_json::json!({
                    "kind": "credential_rotation_overdue", "severity": "warning",
                    "credential": name, "age_secs": age, "max_age_secs": max_age.as_secs(),
                    "stored_at": created, "at": now,
                    "action": format!("rotate it: keyward vault rotate {name} < new-key"),
                }));
            }
        }
    }
}
