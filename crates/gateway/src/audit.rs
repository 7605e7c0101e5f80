//! The tamper-evident audit log.
//!
//! Every admin action and every refused request is an entry in the store's
//! `audit_log` table. Each entry carries an HMAC-SHA-256 over its own fields and the
//! previous entry's MAC, under a key sealed in the store by the master key: someone
//! who can write to the database but does not hold the master key can neither change
//! nor remove nor reorder entries without [`verify`] naming the first broken one.
//! The newest entry's MAC is also kept, MACed, in `meta.audit_head`, so cutting off
//! the end of the log is detected as well. Entries never hold a secret: keys are
//! referred to by id.

use keyward_store::{AuditRow, Store};
use keyward_vault::HashKey;
use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc;

/// What happened, by whom, to what.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `ok`, `denied`, `failed`.
    pub outcome: String,
    pub details: serde_json::Value,
}

impl Event {
    pub fn new(
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        details: serde_json::Value,
    ) -> Event {
        Event {
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: outcome.to_string(),
            details,
        }
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_mac(
    key: &HashKey,
    seq: i64,
    at: i64,
    e: (&str, &str, &str, &str, &str),
    prev_mac: &str,
) -> String {
    // A JSON array is an unambiguous encoding of the fields.
    let fields = serde_json::json!([seq, at, e.0, e.1, e.2, e.3, e.4, prev_mac]);
    key.hash_hex(fields.to_string().as_bytes())
}

fn head_marker(key: &HashKey, seq: i64, mac: &str) -> String {
    format!(
        "{seq}:{mac}:{}",
        key.hash_hex(format!("audit head {seq} {mac}").as_bytes())
    )
}

/// Appends events in order, durably, before returning.
pub async fn append(
    store: &Store,
    key: &HashKey,
    events: &[Event],
) -> Result<(), keyward_store::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let at = crate::state::now();
    store
        .append_audit(|last_seq, last_mac| {
            let mut prev = last_mac.unwrap_or(GENESIS).to_string();
            let mut rows = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                let seq = last_seq + 1 + i as i64;
                let details = e.details.to_string();
                let mac = entry_mac(
                    key,
                    seq,
                    at,
                    (&e.actor, &e.action, &e.target, &e.outcome, &details),
                    &prev,
                );
                rows.push(AuditRow {
                    seq,
                    at,
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    target: e.target.clone(),
                    outcome: e.outcome.clone(),
                    details,
                    prev_mac: prev.clone(),
                    mac: mac.clone(),
                });
                prev = mac;
            }
            let last = rows.last().expect("non-empty");
            let head = head_marker(key, last.seq, &last.mac);
            (rows, head)
        })
        .await
}

/// The result of checking the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub entries: i64,
    /// The first entry that does not verify, and why.
    pub first_broken: Option<(i64, String)>,
}

/// Walks the log from the start, checking sequence, chain, MACs and the head marker.
pub async fn verify(store: &Store, key: &HashKey) -> Result<Report, keyward_store::Error> {
    let mut prev_mac = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut after = 0;
    loop {
        let batch = store.audit_entries(after, 1000).await?;
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            let broken = |why: &str| {
                Ok(Report {
                    entries: expected_seq - 1,
                    first_broken: Some((r.seq, why.to_string())),
                })
            };
            if r.seq != expected_seq {
                return Ok(Report {
                    entries: expected_seq - 1,
                    first_broken: Some((
                        expected_seq,
                        format!("entry {expected_seq} is missing (next is {})", r.seq),
                    )),
                });
            }
            if r.prev_mac != prev_mac {
                return broken("does not follow the entry before it (reordered, or one was removed or changed)");
            }
            let mac = entry_mac(
                key,
                r.seq,
                r.at,
                (&r.actor, &r.action, &r.target, &r.outcome, &r.details),
                &r.prev_mac,
            );
            if !keyward_vault::ct_eq(mac.as_bytes(), r.mac.as_bytes()) {
                return broken("its contents were changed");
            }
            prev_mac = r.mac.clone();
            expected_seq += 1;
            after = r.seq;
        }
    }
    let entries = expected_seq - 1;
    let head = store.meta("audit_head").await?;
    let expected_head = (entries > 0).then(|| head_marker(key, entries, &prev_mac));
    if head != expected_head {
        let what = match (&head, entries) {
            (Some(_), 0) => {
                "the log is empty but entries were written: all were removed".to_string()
            }
            (None, _) => "the head marker is missing".to_string(),
            _ => format!(
                "the newest entries after {entries} were removed, or the head marker was altered"
            ),
        };
        return Ok(Report {
            entries,
            first_broken: Some((entries + 1, what)),
        });
    }
    Ok(Report {
        entries,
        first_broken: None,
    })
}

/// A non-blocking sink for events from the request path, written in small batches
/// (at most [`BATCH_WINDOW`] or [`BATCH_MAX`] entries later).
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Event>,
}

pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
pub const BATCH_MAX: usize = 256;

impl Sink {
    /// Starts the writer task.
    pub fn spawn(store: Store, key: HashKey) -> Sink {
        let (tx, mut rx) = mpsc::channel::<Event>(16_384);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
                while batch.len() < BATCH_MAX {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(e)) => batch.push(e),
                        _ => break,
                    }
                }
                if let Err(e) = append(&store, &key, &batch).await {
                    tracing::error!("cannot write {} audit entries: {e}", batch.len());
                }
            }
        });
        Sink { tx }
    }

    /// Queues an event; if the queue is full the event is logged as lost.
    pub fn record(&self, e: Event) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.tx.try_send(e) {
            tracing::error!(action = e.action.as_str(), "audit queue full: entry lost");
        }
    }
}
