//! The alerts page: open and past alerts with their evidence and baseline,
//! acknowledgement, and resuming a key an anomaly suspended.

use super::format;
use super::keys::{notice, Done};
use super::session::{Nothing, Posted};
use super::{message, page, see_other, store_failure, Section, Shell, Signed};
use crate::context::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// Alerts listed at most.
const MAX_ALERTS: i64 = 500;

pub struct Evidence {
    pub name: String,
    pub value: String,
}

pub struct AlertView {
    pub id: String,
    pub at: String,
    pub kind: String,
    pub severity: String,
    pub key_id: Option<String>,
    pub key_name: String,
    /// The key is suspended now: the page offers to resume it.
    pub key_suspended: bool,
    pub evidence: Vec<Evidence>,
    pub delivery: String,
    pub acked: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/alerts.html")]
struct AlertsPage {
    shell: Shell,
    show_all: bool,
    days: i64,
    alerts: Vec<AlertView>,
    open: i64,
    max_alerts: i64,
}

#[derive(serde::Deserialize, Default)]
pub struct AlertsQuery {
    #[serde(default)]
    show: String,
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    done: String,
    #[serde(default)]
    servers: Option<usize>,
    #[serde(default)]
    tag: String,
}

/// The alert's fields other than those in its own columns, as text.
fn evidence(body: &str) -> Vec<Evidence> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) else {
        return vec![Evidence {
            name: "alert".into(),
            value: body.to_string(),
        }];
    };
    map.into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "kind" | "severity" | "key_id" | "alert_id" | "id" | "at"
            )
        })
        .map(|(name, v)| Evidence {
            name,
            value: match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
        })
        .collect()
}

/// `GET /console/alerts[?show=all&days=30]`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    signed: Signed,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let days = q.days.filter(|d| (1..=366).contains(d)).unwrap_or(30);
    let since_ms = crate::time::now_ms() - days * 86_400_000;
    let show_all = q.show == "all";
    let store = &gw.backend.store;
    let listed = async {
        let (open_rows, open) = store.open_alerts(since_ms, MAX_ALERTS).await?;
        let rows = if show_all {
            store.alerts(since_ms, false, MAX_ALERTS).await?
        } else {
            open_rows
        };
        Ok::<_, keyward_store::Error>((rows, open, store.keys().await?))
    };
    let (rows, open, keys) = match listed.await {
        Ok(r) => r,
        Err(e) => return store_failure("alerts", &e),
    };
    let alerts = rows
        .iter()
        .map(|a| {
            let key = a
                .key_id
                .as_ref()
                .and_then(|id| keys.iter().find(|k| &k.id == id));
            AlertView {
                id: a.id.clone(),
                at: format::time_ms(a.at_ms),
                kind: a.kind.clone(),
                severity: a.severity.clone(),
                key_id: a.key_id.clone(),
                key_name: key.map(|k| k.name.clone()).unwrap_or_default(),
                key_suspended: key
                    .is_some_and(|k| k.suspended_at.is_some() && k.revoked_at.is_none()),
                evidence: evidence(&a.body),
                delivery: a.delivery.clone(),
                acked: a.acked_ms.map(|at| {
                    format!(
                        "acknowledged {} by {}",
                        format::time_ms(at),
                        a.acked_by.as_deref().unwrap_or("?")
                    )
                }),
            }
        })
        .collect();
    let mut shell = Shell::new(&signed, Section::Alerts, "Alerts");
    shell.notice = notice(
        &gw,
        &signed,
        &Done {
            done: q.done,
            servers: q.servers,
            tag: q.tag,
        },
    );
    page(
        StatusCode::OK,
        &AlertsPage {
            shell,
            show_all,
            days,
            alerts,
            open,
            max_alerts: MAX_ALERTS,
        },
    )
}

/// `POST /console/alerts/{id}/ack`.
pub async fn acknowledge(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Posted { signed, .. }: Posted<Nothing>,
) -> Response {
    let now = crate::time::now_ms();
    match gw
        .backend
        .store
        .acknowledge_alert(&id, &signed.actor(), now)
        .await
    {
        Ok(true) => {
            gw.audit.record(crate::audit::Event::new(
                &signed.actor(),
                "alerts.acknowledge",
                &crate::audit::safe_target(&id),
                "ok",
                serde_json::json!({}),
            ));
            see_other(&format!(
                "/console/alerts?{}",
                super::keys::done_query(&gw, &signed, "acknowledged", None)
            ))
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            "Not acknowledged",
            "No such alert, or it was acknowledged already.",
        ),
        Err(e) => store_failure("alerts", &e),
    }
}
