//! Alert delivery: a JSON webhook, signed when a signing secret is configured,
//! and a Slack-compatible webhook (`{"text": …}`), each tried with backoff.
//!
//! The signature: `keyward-signature: v1=<hex HMAC-SHA-256>` over
//! `"{timestamp}.{body}"` under the signing secret, with the Unix time in
//! `keyward-timestamp`. A receiver recomputes it, compares in constant time and
//! refuses a timestamp more than a few minutes old (a replay).

use crate::state::Live;
use keyward_vault::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// Waits before each retry: six attempts over about a minute.
pub const BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// Where alerts go, and how.
#[derive(Clone)]
pub struct Delivery {
    pub client: reqwest::Client,
    /// JSON webhook URL (`[alerts] webhook_url`).
    pub webhook_url: Option<String>,
    /// Vault secret holding the HMAC key for the webhook (`[alerts] signing_secret`).
    pub signing_secret: Option<String>,
    /// Vault secret holding a Slack incoming-webhook URL (`[alerts] slack_webhook`).
    pub slack_webhook: Option<String>,
    /// For the vault secrets above.
    pub live: Option<Arc<Live>>,
    /// Waits between attempts.
    pub backoff: Vec<Duration>,
}

/// How a delivery ended.
pub struct Outcome {
    pub attempts: i64,
    /// Why it failed, after every attempt (never a secret).
    pub error: Option<String>,
}

impl Delivery {
    /// No sink at all: alerts are logged and stored only.
    pub fn log_only(client: reqwest::Client) -> Delivery {
        Delivery {
            client,
            webhook_url: None,
            signing_secret: None,
            slack_webhook: None,
            live: None,
            backoff: BACKOFF.to_vec(),
        }
    }

    pub fn configured(&self) -> bool {
        self.webhook_url.is_some() || self.slack_webhook.is_some()
    }

    fn vault_secret(&self, name: &str) -> Result<String, String> {
        self.live
            .as_ref()
            .and_then(|l| {
                l.snapshot
                    .load()
                    .credential(name)
                    .map(|s| s.expose_secret().to_string())
            })
            .ok_or_else(|| {
                format!("vault has no secret `{name}` (put it with `keyward vault put {name}`)")
            })
    }

    /// Delivers `body` (a JSON object) to every sink, retrying each with backoff.
    pub async fn deliver(&self, body: &str) -> Outcome {
        let mut attempts = 0;
        let mut errors = Vec::new();
        if let Some(url) = &self.webhook_url {
            let (n, e) = self.with_retries(|| self.post_webhook(url, body)).await;
            attempts += n;
            errors.extend(e.map(|e| format!("webhook: {e}")));
        }
        if let Some(name) = &self.slack_webhook {
            let (n, e) = self.with_retries(|| self.post_slack(name, body)).await;
            attempts += n;
            errors.extend(e.map(|e| format!("slack: {e}")));
        }
        Outcome {
            attempts,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    async fn with_retries<F, Fut>(&self, mut attempt: F) -> (i64, Option<String>)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), Attempt>>,
    {
        let mut last = String::new();
        for (n, wait) in std::iter::once(Duration::ZERO)
            .chain(self.backoff.iter().copied())
            .enumerate()
        {
            tokio::time::sleep(wait).await;
            match attempt().await {
                Ok(()) => return (n as i64 + 1, None),
                Err(Attempt::Final(e)) => return (n as i64 + 1, Some(e)),
                Err(Attempt::Retry(e)) => last = e,
            }
        }
        (self.backoff.len() as i64 + 1, Some(last))
    }

    async fn post_webhook(&self, url: &str, body: &str) -> Result<(), Attempt> {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(5));
        if let Some(name) = &self.signing_secret {
            // Unsigned is never sent when signing is configured.
            let key = self.vault_secret(name).map_err(Attempt::Final)?;
            let ts = crate::time::now();
            req = req
                .header("keyward-timestamp", ts.to_string())
                .header("keyward-signature", signature(key.as_bytes(), ts, body));
        }
        answer(req.body(body.to_string()).send().await)
    }

    async fn post_slack(&self, secret_name: &str, body: &str) -> Result<(), Attempt> {
        let url = self.vault_secret(secret_name).map_err(Attempt::Final)?;
        let text = slack_text(body);
        answer(
            self.client
                .post(url)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "text": text }).to_string())
                .timeout(Duration::from_secs(5))
                .send()
                .await,
        )
    }
}

enum Attempt {
    /// Worth trying again (unreachable, 5xx, 429).
    Retry(String),
    /// Will not get better by waiting (a missing secret, a 4xx).
    Final(String),
}

fn answer(r: reqwest::Result<reqwest::Response>) -> Result<(), Attempt> {
    match r {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
            Err(Attempt::Retry(format!("answered {}", r.status())))
        }
        Ok(r) => Err(Attempt::Final(format!("answered {}", r.status()))),
        // Without the URL: it may carry a token (Slack's does).
        Err(e) if e.is_timeout() => Err(Attempt::Retry("timed out".into())),
        Err(_) => Err(Attempt::Retry("unreachable".into())),
    }
}

/// `v1=<hex HMAC-SHA-256 of "{timestamp}.{body}">`.
pub fn signature(key: &[u8], timestamp: i64, body: &str) -> String {
    format!(
        "v1={}",
        keyward_vault::hmac_sha256_hex(key, format!("{timestamp}.{body}").as_bytes())
    )
}

/// One line for a chat channel: severity, kind, key and what to do.
fn slack_text(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let mut text = format!(
        ":rotating_light: Keyward {} alert: {}",
        s("severity"),
        s("kind")
    );
    if !s("key_id").is_empty() {
        text.push_str(&format!(" (key {})", s("key_id")));
    }
    if !s("summary").is_empty() {
        text.push_str(&format!(": {}", s("summary")));
    }
    if !s("action").is_empty() {
        text.push_str(&format!(". {}", s("action")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = signature(b"k", 1_700_000_000, "{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature(b"k", 1_700_000_001, "{}"));
        assert_ne!(a, signature(b"k", 1_700_000_000, "{ }"));
        assert_ne!(a, signature(b"j", 1_700_000_000, "{}"));
    }
}
