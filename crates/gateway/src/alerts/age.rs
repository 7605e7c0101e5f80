//! The credential-age alert: a vault secret older than `[vault] max_age`.

use super::Alerter;

/// Alerts once per credential version whose age passes `max_age`
/// (`credential_rotation_overdue`), checking every `max_age / 4` (1 s to 60 s)
/// while this server holds the job's `lease` (one server alerts, not each).
pub async fn watch_credential_age(
    live: std::sync::Arc<crate::state::Live>,
    alerter: Alerter,
    max_age: std::time::Duration,
    mut lease: crate::lease::JobLease,
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
        if !lease.held().await {
            continue;
        }
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
