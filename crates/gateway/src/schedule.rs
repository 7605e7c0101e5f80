//! Scheduled rotation of client keys (`keys create --rotate-every 30d`).
//!
//! The server holding the job's lease ([`crate::lease`]) checks the schedule
//! once a second; the store still decides each step (a conditional update that
//! only one caller wins), so a notice or a rotation happens once however many
//! servers run, even while a lease changes hands. Before a rotation the
//! owner's webhook gets `key_rotation_scheduled`; at the rotation the key gets a
//! new secret (the old one stays valid for the key's grace period) and the
//! webhook gets `key_rotated` carrying the new key, the one time it is shown. If
//! it cannot be delivered, operators get a critical alert (without the key) while
//! the old secret still works.

use crate::alerts::Alerter;
use crate::state::{Backend, Live};
use crate::time::now;
use keyward_vault::ExposeSecret;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(1);

/// Advance notice before a rotation: a tenth of the period, at most three days.
pub fn notice_lead(every_secs: i64) -> i64 {
    (every_secs / 10).min(3 * 86_400)
}

/// Runs the schedule forever.
pub async fn run(backend: Backend, live: Arc<Live>, client: reqwest::Client, alerts: Alerter) {
    let backend = backend.as_actor("scheduler");
    let mut lease =
        crate::lease::JobLease::new(backend.store.clone(), "rotation schedule", &live.replica_id);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !lease.held().await {
            continue;
        }
        if let Err(e) = step(&backend, &live, &client, &alerts).await {
            tracing::warn!("scheduled rotation check failed: {e}");
        }
    }
}

async fn step(
    backend: &Backend,
    live: &Live,
    client: &reqwest::Client,
    alerts: &Alerter,
) -> Result<(), crate::state::StateError> {
    let snapshot = live.snapshot.load_full();
    let t = now();
    for entry in snapshot.keys.scheduled() {
        let k = &entry.record;
        let (Some(every), Some(due), Some(notify)) = (
            k.rotate_every,
            k.next_rotation_at,
            k.notify_secret.as_deref(),
        ) else {
            continue;
        };
        if k.revoked_at.is_some() {
            continue;
        }
        if every <= 0 || every > crate::time::MAX_LIFETIME.as_secs() as i64 {
            // Only a store edited by hand gets here: keys are created with checked
            // periods. Skipped loudly rather than looped on.
            tracing::error!(
                key_id = k.id.as_str(),
                rotate_every = every,
                "rotation period out of range (1 s to 36500 d): this key is not rotated"
            );
            continue;
        }
        let webhook = snapshot
            .credentials
            .get(notify)
            .map(|s| s.expose_secret().to_string());
        if t < due {
            if t >= due.saturating_sub(notice_lead(every))
                && backend.store.claim_rotation_notice(&k.id, due).await?
            {
                let body = json!({
                    "kind": "key_rotation_scheduled", "key_id": k.id, "key_name": k.name,
                    "environment": k.environment, "rotate_at": due,
                    "previous_valid_for_secs": k.rotation_grace.unwrap_or(86_400),
                });
                deliver(client, alerts, webhook.as_deref(), &body, &k.id).await;
            }
            continue;
        }
        // Due (or overdue after downtime): the next one is a period after now's slot.
        let periods_late = t.saturating_sub(due) / every;
        let next = due.saturating_add(every.saturating_mul(periods_late.saturating_add(1)));
        if !backend.store.claim_rotation(&k.id, due, next).await? {
            continue;
        }
        let grace = Duration::from_secs(k.rotation_grace.unwrap_or(86_400).max(0) as u64);
        let Some(new_key) = backend.rotate_key(&k.id, grace).await? else {
            continue;
        };
        let body = json!({
            "kind": "key_rotated", "key_id": k.id, "key_name": k.name,
            "environment": k.environment, "key": new_key,
            "previous_valid_until": t + grace.as_secs() as i64, "next_rotation_at": next,
        });
        deliver(client, alerts, webhook.as_deref(), &body, &k.id).await;
    }
    Ok(())
}

/// Posts `body` to the owner's webhook, three tries; on failure operators are
/// alerted (with the key id, never the body).
async fn deliver(
    client: &reqwest::Client,
    alerts: &Alerter,
    url: Option<&str>,
    body: &serde_json::Value,
    key_id: &str,
) {
    let kind = body["kind"].as_str().unwrap_or("notice");
    let mut last_error = "the owner webhook secret is missing from the vault".to_string();
    if let Some(url) = url.filter(|u| crate::webhook::check_webhook_url(u).is_ok()) {
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
            match client
                .post(url.trim())
                .header("content-type", "application/json")
                .body(body.to_string())
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => last_error = format!("the owner webhook answered {}", r.status()),
                Err(_) => last_error = "the owner webhook could not be reached".into(),
            }
        }
    }
    tracing::error!(key_id, kind, "{last_error}");
    alerts.send(json!({
        "kind": "key_rotation_notice_failed", "severity": "critical", "key_id": key_id,
        "notice": kind, "reason": last_error, "at": now(),
        "action": if kind == "key_rotated" {
            "the new key was not delivered: rotate it by hand (keyward keys rotate) before the old one's grace ends"
        } else {
            "the owner was not told of the coming rotation"
        },
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_come_a_tenth_of_the_period_early_at_most_three_days() {
        assert_eq!(notice_lead(30 * 86_400), 3 * 86_400);
        assert_eq!(notice_lead(100), 10);
    }
}
