//! The admin HTTP API, for automation: the same operations as `keyward keys` and
//! `keyward vault`, authenticated with admin keys (`kw_admin_…`, created with
//! `keyward admin create`) that are distinct from client keys. Every call, and
//! every refused one, is an entry in the audit log naming the admin key's id.
//!
//! Every call that changes what the servers accept answers once every running
//! server applies it (`servers_confirmed` in the answer). The README documents
//! each route with its body and answer.
//!
//! ```text
//! GET  /admin/v1/keys                 list client keys
//! POST /admin/v1/keys                 {"name","env","models",["providers","endpoints","cidrs"],"expires":"30d"|"never"}
//! POST /admin/v1/keys/{id}/rotate     {"grace": "24h"}: a new secret, the old one works for the grace
//! POST /admin/v1/keys/{id}/revoke     {"reason"} (also suspend, resume)
//! POST /admin/v1/keys/{id}/policy     {"on_anomaly": "alert" | "suspend" | "default"}
//! GET  /admin/v1/vault                list credential names and versions
//! PUT  /admin/v1/vault/{name}         {"value"}: a new version, used at once
//! POST /admin/v1/leaks                {"tokens": [...], "location"}: revoke every Keyward key found
//! GET  /admin/v1/redactions           secrets found in traffic, counted per key and rule
//! ```

use crate::context::{request_id, Gateway};
use crate::state::NewKey;
use crate::time::parse_lifetime;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use keyward_store::AdminKeyRecord;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", axum::routing::patch(update_key))
        .route("/keys/{id}/{action}", post(set_standing))
        .route("/leaks", post(report_leak))
        .route("/vault", get(list_vault))
        .route("/vault/{name}", put(put_secret))
        .route("/redactions", get(list_redactions))
        .route("/usage", get(usage))
        .route("/alerts", get(list_alerts))
        .fallback(unknown_route)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

/// `GET /usage?by=key|env|provider|model|day&since=7d`: requests, tokens and spend
/// per group (spend in pico-dollars and as a dollar string).
async fn usage(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    query: Result<axum::extract::Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    audit(&gw, &admin, "usage.read", "-", &rid);
    let q = match read_query(
        query,
        "query parameters: by (key, owner, env, provider, model, day, user) and since (e.g. 7d)",
        &rid,
    ) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let by = match q.by.as_deref().unwrap_or("key") {
        "key" => keyward_store::UsageGroup::Key,
        "owner" => keyward_store::UsageGroup::Owner,
        "env" => keyward_store::UsageGroup::Environment,
        "provider" => keyward_store::UsageGroup::Provider,
        "model" => keyward_store::UsageGroup::Model,
        "day" => keyward_store::UsageGroup::Day,
        "user" => keyward_store::UsageGroup::User,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "`by` must be key, owner, env, provider, model, day or user",
                &rid,
            )
        }
    };
    let since_ms = match since_ms(q.since.as_deref(), "30d", &rid) {
        Ok(ms) => ms,
        Err(resp) => return resp,
    };
    match gw.backend.store.usage_totals(by, since_ms).await {
        Ok(rows) => Json(
            rows.iter()
                .map(|t| {
                    let mut v = serde_json::to_value(t).expect("serialisable");
                    v["cost_usd"] = crate::prices::dollars(t.cost_pico)
                        .trim_start_matches('$')
                        .into();
                    v
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_failure("usage.read", &e, &rid),
    }
}

#[derive(serde::Deserialize)]
struct AlertsQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    undelivered: Option<bool>,
}

/// `GET /admin/v1/alerts?since=7d&undelivered=true`: alerts, newest first, with
/// their delivery state (at most 1,000).
async fn list_alerts(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    query: Result<axum::extract::Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    audit(&gw, &admin, "alerts.read", "-", &rid);
    let q = match read_query(
        query,
        "query parameters: since (e.g. 7d) and undelivered (true or false)",
        &rid,
    ) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let since_ms = match since_ms(q.since.as_deref(), "7d", &rid) {
        Ok(ms) => ms,
        Err(resp) => return resp,
    };
    match gw
        .backend
        .store
        .alerts(since_ms, q.undelivered.unwrap_or(false), 1000)
        .await
    {
        Ok(rows) => Json(rows.iter().map(alert_json).collect::<Vec<_>>()).into_response(),
        Err(e) => store_failure("alerts.read", &e, &rid),
    }
}

/// The query parameters of a read, or the 400 that names them (`help`).
#[allow(clippy::result_large_err)]
fn read_query<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
    help: &str,
    rid: &str,
) -> Result<T, Response> {
    query
        .map(|axum::extract::Query(q)| q)
        .map_err(|_| error(StatusCode::BAD_REQUEST, help, rid))
}

/// A `since` parameter (`default` when absent) as Unix milliseconds, or the 400
/// that says what it takes.
#[allow(clippy::result_large_err)]
fn since_ms(since: Option<&str>, default: &str, rid: &str) -> Result<i64, Response> {
    crate::time::parse_since(since.unwrap_or(default), crate::time::now())
        .map(|s| s.saturating_mul(1000))
        .map_err(|m| error(StatusCode::BAD_REQUEST, &m, rid))
}

/// An alert row for the API and the CLI: the alert itself as an object.
pub fn alert_json(a: &keyward_store::AlertRow) -> serde_json::Value {
    json!({
        "id": a.id,
        "at": humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(a.at_ms.max(0) as u64)
        ).to_string(),
        "kind": a.kind,
        "severity": a.severity,
        "key_id": a.key_id,
        "delivery": a.delivery,
        "attempts": a.attempts,
        "last_error": a.last_error,
        "alert": serde_json::from_str::<serde_json::Value>(&a.body).unwrap_or_default(),
    })
}

/// A JSON request body, or the 400 to answer with. The error says where and what
/// kind of problem it is, never the value found there (it may be a secret put in
/// the wrong field). (The `Err` is the response itself, built only on this rare
/// path.)
#[allow(clippy::result_large_err)]
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], rid: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => "incomplete JSON",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => {
                "a field is unknown, missing or of the wrong type"
            }
        };
        error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid request body: {what} (line {}, column {}); the README's admin API section lists each route's fields",
                e.line(),
                e.column()
            ),
            rid,
        )
    })
}

/// Any other path or method under `/admin/v1`: 404 in the admin error format.
async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path = crate::audit::safe_target(uri.path());
    error(
        StatusCode::NOT_FOUND,
        &format!("no admin API route {method} {path}: see the README's admin API section"),
        &request_id(),
    )
}

/// Waits until every running server applies the latest change; the number that
/// confirmed, for the answer.
pub async fn confirmed(gw: &Gateway) -> usize {
    gw.backend
        .await_replicas(Duration::from_secs(3))
        .await
        .map(|(n, _)| n)
        .unwrap_or(0)
}

/// Secrets found in traffic since this server started, per key, rule, direction
/// and action (counts only).
async fn list_redactions(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
) -> Response {
    audit(&gw, &admin, "redactions.list", "-", &rid);
    Json(gw.redactions.snapshot()).into_response()
}

fn error(status: StatusCode, message: &str, rid: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "request_id": rid}})),
    )
        .into_response()
}

/// The admin key's record, or the error to answer with.
fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    source: std::net::IpAddr,
    rid: &str,
) -> Result<AdminKeyRecord, (StatusCode, &'static str)> {
    if !gw.live.fresh() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "key store unreachable"));
    }
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(key) = key else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "send an admin key as `Authorization: Bearer kw_admin_…`",
        ));
    };
    match admin_by_key(gw, key) {
        Some(rec) => Ok(rec),
        _ => {
            gw.audit.refused(crate::audit::Refusal {
                actor: "anonymous",
                reason: "invalid_admin_key",
                action: "admin.refused",
                source,
                target: "admin-api",
                request_id: rid,
                status: 401,
            });
            Err((StatusCode::UNAUTHORIZED, "invalid admin key"))
        }
    }
}

/// The live admin key whose secret is `key`, if any.
pub fn admin_by_key(gw: &Gateway, key: &str) -> Option<AdminKeyRecord> {
    let is_admin_format = keyward_detect::checksum::keyward_key_env(key.as_bytes())
        == Some(crate::keys::ADMIN_ENVIRONMENT);
    if !is_admin_format {
        return None;
    }
    gw.live
        .snapshot
        .load()
        .admin_keys
        .get(&gw.hash_key.hash_hex(key.as_bytes()))
        .cloned()
}

/// An authenticated admin API caller and the request id. Extracting it
/// authenticates the request; a failure answers with the error at once.
struct Caller {
    admin: AdminKeyRecord,
    rid: String,
}

impl axum::extract::FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Response> {
        let rid = request_id();
        let source = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::tls::PeerAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0 .0.ip());
        match authenticate(gw, &parts.headers, source, &rid) {
            Ok(admin) => Ok(Caller { admin, rid }),
            Err((status, message)) => Err(error(status, message, &rid)),
        }
    }
}

/// Records an admin read in the audit log (writes are audited by the backend).
fn audit(gw: &Gateway, admin: &AdminKeyRecord, action: &str, target: &str, rid: &str) {
    gw.audit.record(crate::audit::Event::new(
        &actor(admin),
        action,
        target,
        "ok",
        json!({"request_id": rid}),
    ));
}

/// A store failure: logged with the request id, answered without internals.
fn store_failure(action: &str, e: &dyn std::fmt::Display, rid: &str) -> Response {
    tracing::error!(request_id = rid, "admin {action}: {e}");
    error(StatusCode::SERVICE_UNAVAILABLE, "store error", rid)
}

fn actor(admin: &AdminKeyRecord) -> String {
    format!("admin-api:{}", admin.id)
}

async fn list_keys(State(gw): State<Arc<Gateway>>, Caller { admin, rid }: Caller) -> Response {
    audit(&gw, &admin, "keys.list", "-", &rid);
    match gw.backend.store.keys().await {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => store_failure("keys.list", &e, &rid),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// A new client key as the admin API and the console take it.
pub struct CreateKey {
    pub name: String,
    pub env: String,
    pub models: Vec<String>,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub cidrs: Vec<String>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub canary: bool,
    /// `{"inbound": "block", "outbound": "redact"}`; unset directions defer to
    /// the provider's and the server's policy.
    #[serde(default)]
    pub redaction: crate::redact::PolicyConfig,
    /// Scheduled rotation period (`30d`); needs `notify`.
    #[serde(default)]
    pub rotate_every: Option<String>,
    /// How long the old secret works after a scheduled rotation (default 24h).
    #[serde(default)]
    pub rotation_grace: Option<String>,
    /// Vault secret holding the owner's webhook URL.
    #[serde(default)]
    pub notify: Option<String>,
    /// Who the key belongs to (owner limits and usage reports).
    #[serde(default)]
    pub owner: Option<String>,
    /// Requests per minute, tokens per minute, requests in flight.
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// Spend budgets in US dollars per UTC day and month.
    #[serde(default)]
    pub daily_budget: Option<f64>,
    #[serde(default)]
    pub monthly_budget: Option<f64>,
}

/// A rotation schedule from its request or command-line parts.
pub fn rotation_schedule(
    every: Option<&str>,
    grace: Option<&str>,
    notify: Option<String>,
) -> Result<Option<crate::state::RotationSchedule>, String> {
    let Some(every) = every else {
        if notify.is_some() || grace.is_some() {
            return Err(
                "a rotation grace or notify webhook needs a rotation period (rotate_every)".into(),
            );
        }
        return Ok(None);
    };
    let every = match parse_lifetime(every) {
        Some(Some(d)) => d,
        _ => {
            return Err(format!(
                "rotate_every `{every}`: use a period such as 30d or 12h (at most 36500d)"
            ))
        }
    };
    let grace = match parse_lifetime(grace.unwrap_or("24h")) {
        Some(Some(d)) => d,
        _ => {
            return Err("rotation_grace: use a duration such as 24h or 30m (at most 36500d)".into())
        }
    };
    let notify_secret = notify.ok_or_else(|| {
        "scheduled rotation needs the owner's webhook: store its URL in the vault and name it (notify)".to_string()
    })?;
    Ok(Some(crate::state::RotationSchedule {
        every,
        grace,
        notify_secret,
    }))
}

async fn create_key(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    body: axum::body::Bytes,
) -> Response {
    let req: CreateKey = match parse_body(&body, &rid) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let spec = match new_key_spec(&gw, req) {
        Ok(spec) => spec,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg, &rid),
    };
    match gw.backend.as_actor(&actor(&admin)).create_key(spec).await {
        Ok((rec, key)) => {
            let servers = confirmed(&gw).await;
            (
                StatusCode::CREATED,
                Json(json!({"id": rec.id, "key": key, "servers_confirmed": servers})),
            )
                .into_response()
        }
        Err(crate::state::StateError::Invalid(m)) => error(StatusCode::BAD_REQUEST, &m, &rid),
        Err(e) => store_failure("keys.create", &e, &rid),
    }
}

/// The key `req` asks for, checked against this server's config, or what to
/// change (a sentence for the caller).
pub fn new_key_spec(gw: &Gateway, req: CreateKey) -> Result<NewKey, String> {
    let Some(expires_in) = parse_lifetime(req.expires.as_deref().unwrap_or("90d")) else {
        return Err("`expires` must look like 30d, 12h, 45m or never (at most 36500d)".into());
    };
    let rotation = rotation_schedule(
        req.rotate_every.as_deref(),
        req.rotation_grace.as_deref(),
        req.notify,
    )?;
    let spec = NewKey {
        name: req.name,
        environment: req.env,
        models: req.models,
        providers: req.providers,
        endpoints: req.endpoints,
        source_cidrs: req.cidrs,
        expires_in,
        canary: req.canary,
        redaction: req.redaction,
        rotation,
        owner: req.owner,
        limits: key_limits(
            [req.rpm, req.tpm, req.concurrency],
            [req.daily_budget, req.monthly_budget],
        )?,
    };
    if let Some(p) = spec
        .providers
        .iter()
        .find(|p| !gw.providers.iter().any(|c| &c.config.name == *p))
    {
        let known: Vec<&str> = gw
            .providers
            .iter()
            .map(|c| c.config.name.as_str())
            .collect();
        return Err(format!(
            "no provider named `{}` in this server's config; it has: {}",
            crate::keys::escape_for_terminal(p),
            known.join(", ")
        ));
    }
    Ok(spec)
}

/// A key's limits from the API's fields: `[rpm, tpm, concurrency]` and the
/// `[daily, monthly]` budgets in US dollars (pico-dollars inside).
pub fn key_limits(
    [rpm, tpm, concurrency]: [Option<u64>; 3],
    [daily, monthly]: [Option<f64>; 2],
) -> Result<crate::limits::Limits, &'static str> {
    let pico = |v: Option<f64>| {
        v.map(|d| crate::config::budget_pico(d).ok_or("budgets are positive amounts of US dollars"))
            .transpose()
    };
    Ok(crate::limits::Limits {
        rpm,
        tpm,
        concurrency,
        daily_budget: pico(daily)?,
        monthly_budget: pico(monthly)?,
    })
}

/// `PATCH /keys/{id}`: the key's owner and limits, all four replaced (a field
/// left out or `null` means none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKey {
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
    #[serde(default)]
    concurrency: Option<u64>,
    /// Spend budgets in US dollars per UTC day and month.
    #[serde(default)]
    daily_budget: Option<f64>,
    #[serde(default)]
    monthly_budget: Option<f64>,
}

async fn update_key(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: UpdateKey = match parse_body(&body, &rid) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let limits = match key_limits(
        [req.rpm, req.tpm, req.concurrency],
        [req.daily_budget, req.monthly_budget],
    ) {
        Ok(l) => l,
        Err(m) => return error(StatusCode::BAD_REQUEST, m, &rid),
    };
    match gw
        .backend
        .as_actor(&actor(&admin))
        .update_key_limits(&id, req.owner.as_deref(), limits)
        .await
    {
        Ok(true) => {
            let servers = confirmed(&gw).await;
            Json(json!({"id": id, "owner": req.owner, "limits": limits, "servers_confirmed": servers}))
                .into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "no such key (or it is revoked)",
            &rid,
        ),
        Err(crate::state::StateError::Invalid(m)) => error(StatusCode::BAD_REQUEST, &m, &rid),
        Err(e) => store_failure("keys.update", &e, &rid),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Standing {
    /// Why (revoke, suspend).
    #[serde(default)]
    reason: Option<String>,
    /// How long the previous secret keeps working (rotate; default 24h).
    #[serde(default)]
    grace: Option<String>,
    /// `alert`, `suspend` or `default` (policy).
    #[serde(default)]
    on_anomaly: Option<String>,
}

/// `POST /keys/{id}/revoke|suspend|resume` (optional `{"reason": …}`) and
/// `POST /keys/{id}/rotate` (optional `{"grace": "24h"}`): answers once every
/// running server applies the change.
async fn set_standing(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let id = id.as_str();
    let req: Standing = if body.is_empty() {
        Standing::default()
    } else {
        match parse_body(&body, &rid) {
            Ok(r) => r,
            Err(resp) => return resp,
        }
    };
    let backend = gw.backend.as_actor(&actor(&admin));
    if action == "rotate" {
        return rotate(&gw, &backend, id, req.grace.as_deref(), &rid).await;
    }
    let (done, label, action) = match action.as_str() {
        "revoke" => {
            let reason = req
                .reason
                .unwrap_or_else(|| format!("revoked through the admin API by {}", admin.id));
            (
                backend.revoke_key(id, &reason).await,
                "revoked",
                "keys.revoke",
            )
        }
        "suspend" => {
            let reason = req
                .reason
                .unwrap_or_else(|| format!("suspended through the admin API by {}", admin.id));
            (
                backend.suspend_key(id, &reason).await,
                "suspended",
                "keys.suspend",
            )
        }
        "resume" => (backend.resume_key(id).await, "resumed", "keys.resume"),
        "policy" => {
            let policy = match req.on_anomaly.as_deref() {
                Some("default") => None,
                Some(p) => match p.parse::<crate::config::OnAnomaly>() {
                    Ok(p) => Some(p),
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e, &rid),
                },
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "send {\"on_anomaly\": \"alert\" | \"suspend\" | \"default\"}",
                        &rid,
                    )
                }
            };
            (
                backend.set_key_anomaly_policy(id, policy).await,
                "policy_set",
                "keys.policy",
            )
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown key action: use rotate, revoke, suspend, resume or policy",
                &rid,
            )
        }
    };
    match done {
        Ok(true) => {
            let servers = confirmed(&gw).await;
            Json(json!({"id": id, label: true, "servers_confirmed": servers})).into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "no such key (or it is revoked)",
            &rid,
        ),
        Err(e) => store_failure(action, &e, &rid),
    }
}

/// `POST /keys/{id}/rotate`: a new secret under the same id, returned once.
async fn rotate(
    gw: &Gateway,
    backend: &crate::state::Backend,
    id: &str,
    grace: Option<&str>,
    rid: &str,
) -> Response {
    let grace = match grace.unwrap_or("24h") {
        "0" | "0s" | "none" => Duration::ZERO,
        g => match parse_lifetime(g) {
            Some(Some(d)) => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "`grace` must look like 24h, 30m or 0s (at most 36500d)",
                    rid,
                )
            }
        },
    };
    match backend.rotate_key(id, grace).await {
        Ok(Some(key)) => {
            let servers = confirmed(gw).await;
            Json(json!({
                "id": id, "key": key, "previous_valid_for_secs": grace.as_secs(),
                "servers_confirmed": servers,
            }))
            .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such key (or it is revoked)", rid),
        Err(crate::state::StateError::Invalid(m)) => error(StatusCode::CONFLICT, &m, rid),
        Err(e) => store_failure("keys.rotate", &e, rid),
    }
}

async fn list_vault(State(gw): State<Arc<Gateway>>, Caller { admin, rid }: Caller) -> Response {
    audit(&gw, &admin, "vault.list", "-", &rid);
    match gw.backend.store.current_secrets().await {
        Ok(s) => Json(
            s.iter()
                .map(|s| json!({"name": s.name, "version": s.version, "created_at": s.created_at}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_failure("vault.list", &e, &rid),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSecret {
    value: String,
}

async fn put_secret(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // Never echo the body: it holds the secret.
    let req: PutSecret = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "body must be {\"value\": \"...\"}",
                &rid,
            )
        }
    };
    let value = zeroize::Zeroizing::new(req.value);
    match gw
        .backend
        .as_actor(&actor(&admin))
        .vault_put(&name, &value)
        .await
    {
        Ok(version) => {
            let servers = confirmed(&gw).await;
            Json(json!({"name": name, "version": version, "servers_confirmed": servers}))
                .into_response()
        }
        Err(crate::state::StateError::Invalid(m)) => error(StatusCode::BAD_REQUEST, &m, &rid),
        Err(e) => store_failure("vault.put", &e, &rid),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeakReport {
    tokens: Vec<String>,
    location: String,
}

/// Most tokens one report may carry.
const MAX_LEAK_TOKENS: usize = 1000;

/// A self-hosted secret-scanning partner endpoint: found tokens in, revocations out.
async fn report_leak(
    State(gw): State<Arc<Gateway>>,
    Caller { admin, rid }: Caller,
    body: axum::body::Bytes,
) -> Response {
    // Never echo the body: it holds the tokens.
    let Ok(req) = serde_json::from_slice::<LeakReport>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be {\"tokens\": [\"kw_…\"], \"location\": \"…\"}",
            &rid,
        );
    };
    if req.tokens.len() > MAX_LEAK_TOKENS {
        return error(
            StatusCode::BAD_REQUEST,
            "at most 1000 tokens per report",
            &rid,
        );
    }
    let location: String = req
        .location
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    match gw
        .backend
        .as_actor(&actor(&admin))
        .report_leak(&req.tokens, &location)
        .await
    {
        Ok(out) => {
            if !out.revoked.is_empty() {
                confirmed(&gw).await;
            }
            for (id, env) in &out.revoked {
                gw.alerts.send(json!({
                    "kind": "leaked_key_revoked", "severity": "high", "key_id": id, "environment": env,
                    "location": location, "reported_by": admin.id, "request_id": rid,
                }));
            }
            Json(json!({
                "revoked": out.revoked.iter().map(|(id, env)| json!({"id": id, "environment": env})).collect::<Vec<_>>(),
                "already_revoked": out.already_revoked,
                "unknown": out.unknown,
            }))
            .into_response()
        }
        Err(e) => store_failure("leaks", &e, &rid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_body_is_described_without_its_values() {
        // Built here: the repository holds no secret-looking literal.
        let secret = ["sk-proj-", "put-in-the-wrong-field-0123456789"].concat();
        let body = format!(r#"{{"rpm": "{secret}"}}"#);
        let resp = parse_body::<UpdateKey>(body.as_bytes(), "req_t")
            .err()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let text = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains(&secret) && !text.contains("wrong-field"),
            "{text}"
        );
        assert!(
            text.contains("wrong type") && text.contains("column"),
            "{text}"
        );
    }

    #[test]
    fn rotation_periods_out_of_range_are_refused_with_the_limit() {
        let e =
            rotation_schedule(Some("9223372036854775808s"), None, Some("hook".into())).unwrap_err();
        assert!(e.contains("36500d"), "{e}");
    }
}
