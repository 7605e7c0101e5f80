//! The audit page: the log filtered by actor, action, key and time, the
//! chain's verification status, and leak reports with their locations.

use super::keys::EntryRow;
use super::{page, store_failure, Section, Shell, Signed};
use crate::context::Gateway;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyward_store::AuditFilter;
use std::sync::Arc;

/// Held while the chain is walked.
static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Entries listed at most.
const MAX_ENTRIES: i64 = 200;

#[derive(serde::Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// What checking the chain found.
pub struct Verification {
    pub ok: bool,
    pub text: String,
    /// The first entry that does not verify.
    pub broken: Option<i64>,
}

impl Verification {
    /// Whether entry `seq` is the first that does not verify.
    pub fn fails(&self, seq: impl std::borrow::Borrow<i64>) -> bool {
        self.broken == Some(*seq.borrow())
    }
}

pub struct LeakRow {
    pub at: String,
    pub key: String,
    pub location: String,
    pub reported_by: String,
}

#[derive(askama::Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    shell: Shell,
    q: AuditQuery,
    error: Option<String>,
    verification: Verification,
    entries: Vec<EntryRow>,
    limit: i64,
    leaks: Vec<LeakRow>,
}

fn filled(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|s| !s.is_empty())
}

/// `GET /console/audit`.
pub async fn page_route(
    State(gw): State<Arc<Gateway>>,
    signed: Signed,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let now = crate::time::now();
    let mut error = None;
    let mut time = |v: &str, what: &str| match filled(v) {
        None => None,
        Some(v) => match crate::time::parse_since(&v, now) {
            Ok(t) => Some(t),
            Err(m) => {
                error = Some(format!("{what}: {m}"));
                None
            }
        },
    };
    let filter = AuditFilter {
        actor: filled(&q.actor),
        action: filled(&q.action),
        key: filled(&q.key),
        since: time(&q.since, "since"),
        until: time(&q.until, "until"),
    };
    let store = &gw.backend.store;
    let entries = match store.audit_search(&filter, MAX_ENTRIES).await {
        Ok(e) => e,
        Err(e) => return store_failure("audit", &e),
    };
    let leaks = match store
        .audit_search(
            &AuditFilter {
                action: Some("keys.leak_reported".into()),
                ..Default::default()
            },
            50,
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return store_failure("audit", &e),
    };
    // The whole chain, every time: a page that said "verified" from a cache
    // would hide a change made since. One walk at a time per server, so
    // reloads cannot pile walks of a large log onto the store.
    let walk = VERIFYING.acquire().await.expect("never closed");
    let verified = crate::audit::verify(store, gw.backend.audit_key()).await;
    drop(walk);
    let verification = match verified {
        Ok(r) => match r.first_broken {
            None => Verification {
                broken: None,
                ok: true,
                text: format!(
                    "Chain verified: all {} entries are intact and in order.",
                    r.entries
                ),
            },
            Some((seq, why)) => Verification {
                broken: Some(seq),
                ok: false,
                text: format!(
                    "Verification failed at entry {seq}: {why}. Entries before it ({}) verify.",
                    r.entries
                ),
            },
        },
        Err(e) => return store_failure("audit verify", &e),
    };
    page(
        StatusCode::OK,
        &AuditPage {
            shell: Shell::new(&signed, Section::Audit, "Audit log"),
            q,
            error,
            verification,
            entries: entries.iter().map(EntryRow::new).collect(),
            limit: MAX_ENTRIES,
            leaks: leaks
                .iter()
                .map(|r| {
                    let details: serde_json::Value =
                        serde_json::from_str(&r.details).unwrap_or_default();
                    LeakRow {
                        at: super::format::time(r.at),
                        key: r.target.clone(),
                        location: details["location"].as_str().unwrap_or("").to_string(),
                        reported_by: r.actor.clone(),
                    }
                })
                .collect(),
        },
    )
}
