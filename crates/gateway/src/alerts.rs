//! Alerts: high-severity events (a canary key used, a leaked key reported) sent to
//! a webhook as JSON, and always logged on the `keyward::alert` target. Delivery
//! runs in the background with a few retries; it never holds up a request.

use serde_json::Value;
use std::time::Duration;

#[derive(Clone)]
pub struct Alerter {
    client: reqwest::Client,
    webhook: Option<String>,
}

impl Alerter {
    pub fn new(client: reqwest::Client, webhook: Option<String>) -> Alerter {
        Alerter { client, webhook }
    }

    /// Sends `alert` (an object with at least `kind` and `severity`).
    pub fn send(&self, alert: Value) {
        tracing::warn!(target: "keyward::alert", alert = %alert, "alert");
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
