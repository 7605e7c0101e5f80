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

/// The sealing step for `events` written at `at`: given the newest stored entry's
/// sequence number and MAC, the chained rows and the new head marker. For
/// [`Store::append_audit`], and for changes that commit their audit entries in
/// their own transaction.
pub fn sealer<'a>(
    key: &'a HashKey,
    events: &'a [Event],
    at: i64,
) -> impl FnMut(i64, Option<&str>) -> (Vec<AuditRow>, String) + Send + 'a {
    move |last_seq, last_mac| {
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
        let head = rows
            .last()
            .map(|last| head_marker(key, last.seq, &last.mac))
            .unwrap_or_default();
        (rows, head)
    }
}

/// [`sealer`] for events that carry a number only the store's transaction knows
/// (a version, a count): `make` builds them from it.
pub fn sealer_with<'a>(
    key: &'a HashKey,
    at: i64,
    make: impl Fn(i64) -> Vec<Event> + Send + 'a,
) -> impl FnMut(i64, i64, Option<&str>) -> (Vec<AuditRow>, String) + Send + 'a {
    move |n, last_seq, last_mac| {
        let events = make(n);
        let sealed = sealer(key, &events, at)(last_seq, last_mac);
        sealed
    }
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
    store
        .append_audit(sealer(key, events, crate::time::now()))
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
///
/// Nothing queued is dropped: the queue has no bound, and what bounds it is that
/// events need an authenticated caller (admin actions, leak reports, secrets found
/// in a key's traffic). Refused requests, which anyone can cause by the hundred
/// thousand, go through [`Sink::refused`] instead: the first refusal of each kind
/// from each source in a [`REFUSAL_WINDOW`] is written at once, the rest are counted
/// and written as one `request.refused.repeated` entry when the window closes.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Command>,
    refusals: std::sync::Arc<std::sync::Mutex<Refusals>>,
}

enum Command {
    Write(Event),
    /// Flush what is pending and answer when it is written.
    Close(tokio::sync::oneshot::Sender<()>),
}

pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
pub const BATCH_MAX: usize = 256;

/// How long repeated refusals are counted before their total is written.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Distinct (actor, reason, source) groups counted in one window; refusals past it
/// are counted under one group per reason with actor and source `*`.
const MAX_REFUSAL_GROUPS: usize = 10_000;

/// One refused request, as [`Sink::refused`] takes it.
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    /// The key id when the key was known, else `anonymous`.
    pub actor: &'a str,
    /// The refusal's stable code (`invalid_key`, `revoked`, …).
    pub reason: &'static str,
    /// Audit action: `request.refused` or `admin.refused`.
    pub action: &'static str,
    pub source: std::net::IpAddr,
    /// Already cut short and redacted by the caller.
    pub target: &'a str,
    pub request_id: &'a str,
    pub status: u16,
}

#[derive(Debug, Default)]
struct Refusals {
    window_start: i64,
    groups: std::collections::HashMap<(String, &'static str, &'static str, String), RefusalGroup>,
}

#[derive(Debug)]
struct RefusalGroup {
    target: String,
    status: u16,
    /// Refusals after the first, which was written on its own.
    repeats: u64,
}

impl Refusals {
    /// The `request.refused.repeated` entries for the window ending now, and a fresh window.
    fn close_window(&mut self, now: i64) -> Vec<Event> {
        let start = std::mem::replace(&mut self.window_start, now);
        let mut out: Vec<Event> = self
            .groups
            .drain()
            .filter(|(_, g)| g.repeats > 0)
            .map(|((actor, action, reason, source), g)| {
                Event::new(
                    &actor,
                    &format!("{action}.repeated"),
                    &g.target,
                    "denied",
                    serde_json::json!({
                        "reason": reason, "source": source, "count": g.repeats,
                        "status": g.status, "window_start": start, "window_end": now,
                    }),
                )
            })
            .collect();
        out.sort_by(|a, b| (&a.actor, &a.target).cmp(&(&b.actor, &b.target)));
        out
    }
}

impl Sink {
    /// Starts the writer task.
    pub fn spawn(store: Store, key: HashKey) -> Sink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        let refusals = std::sync::Arc::new(std::sync::Mutex::new(Refusals {
            window_start: crate::time::now(),
            ..Refusals::default()
        }));
        let counted = refusals.clone();
        tokio::spawn(async move {
            let mut windows = tokio::time::interval(REFUSAL_WINDOW);
            windows.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            windows.tick().await;
            let take_window = || {
                counted
                    .lock()
                    .expect("refusal counts are never left half-updated")
                    .close_window(crate::time::now())
            };
            loop {
                let mut batch = Vec::new();
                let mut closed = None;
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Command::Write(e)) => batch.push(e),
                        Some(Command::Close(done)) => closed = Some(done),
                        None => {
                            write(&store, &key, &take_window()).await;
                            return;
                        }
                    },
                    _ = windows.tick() => batch = take_window(),
                }
                let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
                while closed.is_none() && batch.len() < BATCH_MAX {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Command::Write(e))) => batch.push(e),
                        Ok(Some(Command::Close(done))) => closed = Some(done),
                        _ => break,
                    }
                }
                if let Some(done) = closed {
                    // Everything queued before the close, then the open window.
                    while let Ok(Command::Write(e)) = rx.try_recv() {
                        batch.push(e);
                    }
                    batch.extend(take_window());
                    write(&store, &key, &batch).await;
                    let _ = done.send(());
                    continue;
                }
                write(&store, &key, &batch).await;
            }
        });
        Sink { tx, refusals }
    }

    /// Queues an event. It is written within [`BATCH_WINDOW`]; it is never dropped.
    pub fn record(&self, e: Event) {
        if self.tx.send(Command::Write(e)).is_err() {
            tracing::error!("audit writer stopped: an entry could not be queued");
        }
    }

    /// Records a refused request: written at once if it is the first of its kind
    /// from its source in this window, else counted (see [`Sink`]).
    pub fn refused(&self, r: Refusal<'_>) {
        let source = r.source.to_string();
        let first = {
            let mut w = self
                .refusals
                .lock()
                .expect("refusal counts are never left half-updated");
            let full = w.groups.len() >= MAX_REFUSAL_GROUPS;
            let group = if full {
                ("*".to_string(), r.action, r.reason, "*".to_string())
            } else {
                (r.actor.to_string(), r.action, r.reason, source.clone())
            };
            match w.groups.get_mut(&group) {
                Some(g) => {
                    g.repeats += 1;
                    false
                }
                None => {
                    w.groups.insert(
                        group,
                        RefusalGroup {
                            target: r.target.to_string(),
                            status: r.status,
                            repeats: u64::from(full),
                        },
                    );
                    !full
                }
            }
        };
        if first {
            self.record(Event::new(
                r.actor,
                r.action,
                r.target,
                "denied",
                serde_json::json!({
                    "request_id": r.request_id, "source": source, "reason": r.reason,
                    "status": r.status,
                }),
            ));
        }
    }

    /// Writes everything queued and the refusals counted so far, and returns when
    /// they are in the store (at shutdown).
    pub async fn close(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send(Command::Close(done)).is_ok() {
            let _ = written.await;
        }
    }
}

/// Appends a batch; while the store refuses it, logs and tries again (100 ms, then
/// doubling up to 5 s): entries wait in memory rather than being lost.
async fn write(store: &Store, key: &HashKey, batch: &[Event]) {
    let mut pause = Duration::from_millis(100);
    while let Err(e) = append(store, key, batch).await {
        tracing::error!(
            "cannot write {} audit entries ({e}); retrying in {pause:?}",
            batch.len()
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Longest request path kept in an audit entry (bytes; longer ones are cut and
/// marked with `…`).
pub const MAX_TARGET: usize = 256;

/// A request path as audit entries and logs may hold it: cut to [`MAX_TARGET`]
/// bytes first (so that the detector's cost is bounded), then with every secret the
/// detector finds replaced by its marker. `/v1beta/models/ghp_…:generateContent`
/// must not put the token in the database.
pub fn safe_target(path: &str) -> String {
    let mut end = path.len().min(MAX_TARGET);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &path[..end];
    let redacted = keyward_detect::Detector::builtin().redact(cut);
    if end < path.len() {
        format!("{redacted}…")
    } else {
        redacted.into_owned()
    }
}
