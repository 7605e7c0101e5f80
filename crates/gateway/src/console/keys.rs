//! The keys pages: the list (search, filter, sort), a key's page with its
//! actions, and creation. A new or rotated secret is shown only on the answer
//! to the `POST` that made it.

use super::format;
use super::session::Posted;
use super::{message, page, see_other, store_failure, Section, Shell, Signed};
use crate::context::Gateway;
use crate::limits::Limits;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyward_store::{KeyRecord, UsageGroup};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A key's standing now.
pub fn state(k: &KeyRecord, now: i64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else if k.suspended_at.is_some() {
        "suspended"
    } else {
        "active"
    }
}

/// A stored key's limits.
pub fn limits_of(k: &KeyRecord) -> Limits {
    let u = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    Limits {
        rpm: u(k.rpm),
        tpm: u(k.tpm),
        concurrency: u(k.max_concurrent),
        daily_budget: k.daily_budget_pico,
        monthly_budget: k.monthly_budget_pico,
    }
}

/// Unix milliseconds at the start of today and of this month (UTC).
pub fn period_starts(now_ms: i64) -> (i64, i64) {
    let (day, month) = crate::budget::periods(now_ms);
    (day * 86_400_000, crate::budget::month_start_ms(month))
}

/// Spend per key today and this month, in pico-dollars.
pub async fn spend_by_key(
    gw: &Gateway,
) -> Result<(HashMap<String, i64>, HashMap<String, i64>), keyward_store::Error> {
    let (day, month) = period_starts(crate::time::now_ms());
    let sum = |rows: Vec<keyward_store::UsageTotals>| {
        rows.into_iter()
            .map(|t| (t.group, t.cost_pico))
            .collect::<HashMap<_, _>>()
    };
    let today = sum(gw.backend.store.usage_totals(UsageGroup::Key, day).await?);
    let month = sum(gw
        .backend
        .store
        .usage_totals(UsageGroup::Key, month)
        .await?);
    Ok((today, month))
}

/// One row of the list.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub canary: bool,
    pub state: &'static str,
    pub environment: String,
    pub owner: String,
    pub models: String,
    pub limits: String,
    pub expires: String,
    pub last_use: String,
    pub spend_today: String,
    pub spend_month: String,
    sort: SortValues,
}

struct SortValues {
    created: i64,
    expires: i64,
    last_use: i64,
    today: i64,
    month: i64,
}

/// A column header's sort link.
pub struct SortLink {
    pub label: &'static str,
    pub href: String,
    /// `ascending`, `descending` or `none`, for `aria-sort`.
    pub aria: &'static str,
}

#[derive(askama::Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    shell: Shell,
    q: String,
    states: Vec<(&'static str, &'static str, bool)>,
    columns: Vec<SortLink>,
    rows: Vec<KeyRow>,
    total: usize,
    max_rows: usize,
}

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    dir: String,
}

/// Rows a list page shows at most (a search narrows it).
const MAX_ROWS: usize = 500;

const SORTS: [(&str, &str); 8] = [
    ("name", "Name"),
    ("state", "State"),
    ("env", "Environment"),
    ("owner", "Owner"),
    ("expires", "Expires"),
    ("last_use", "Last use"),
    ("today", "Spend today"),
    ("month", "This month"),
];

/// `GET /console/keys`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    signed: Signed,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let keys = match gw.backend.store.keys().await {
        Ok(k) => k,
        Err(e) => return store_failure("keys", &e),
    };
    let last_use = gw.backend.store.key_last_use().await.unwrap_or_default();
    let (today, month) = match spend_by_key(&gw).await {
        Ok(s) => s,
        Err(e) => return store_failure("spend", &e),
    };
    let now = crate::time::now();
    let needle = q.q.trim().to_lowercase();
    let mut rows: Vec<KeyRow> = keys
        .iter()
        .filter(|k| q.state.is_empty() || q.state == "all" || state(k, now) == q.state)
        .filter(|k| {
            needle.is_empty()
                || [
                    k.name.as_str(),
                    k.id.as_str(),
                    k.environment.as_str(),
                    k.owner.as_deref().unwrap_or(""),
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(&needle))
        })
        .map(|k| {
            let used = last_use.get(&k.id).copied();
            let (t, m) = (
                today.get(&k.id).copied().unwrap_or(0),
                month.get(&k.id).copied().unwrap_or(0),
            );
            KeyRow {
                id: k.id.clone(),
                name: k.name.clone(),
                canary: k.canary,
                state: state(k, now),
                environment: k.environment.clone(),
                owner: k.owner.clone().unwrap_or_default(),
                models: k.models.join(", "),
                limits: format::limits(&limits_of(k)),
                expires: k
                    .expires_at
                    .map_or("never".into(), |e| format::relative(e, now)),
                last_use: used.map_or("never".into(), |u| format::relative(u, now)),
                spend_today: format::money(t),
                spend_month: format::money(m),
                sort: SortValues {
                    created: k.created_at,
                    expires: k.expires_at.unwrap_or(i64::MAX),
                    last_use: used.unwrap_or(0),
                    today: t,
                    month: m,
                },
            }
        })
        .collect();
    let sort = if SORTS.iter().any(|(s, _)| *s == q.sort) {
        q.sort.as_str()
    } else {
        ""
    };
    let descending = q.dir == "desc";
    rows.sort_by(|a, b| {
        let o = match sort {
            "name" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            "state" => a.state.cmp(b.state),
            "env" => a.environment.cmp(&b.environment),
            "owner" => a.owner.cmp(&b.owner),
            "expires" => a.sort.expires.cmp(&b.sort.expires),
            "last_use" => a.sort.last_use.cmp(&b.sort.last_use),
            "today" => a.sort.today.cmp(&b.sort.today),
            "month" => a.sort.month.cmp(&b.sort.month),
            // Newest first by default.
            _ => b.sort.created.cmp(&a.sort.created),
        };
        if descending { o.reverse() } else { o }.then_with(|| a.id.cmp(&b.id))
    });
    let base = format!(
        "/console/keys?q={}&state={}",
        format::query_value(&q.q),
        format::query_value(&q.state)
    );
    let columns = SORTS
        .iter()
        .map(|(s, label)| {
            let here = *s == sort;
            let dir = if here && !descending { "desc" } else { "asc" };
            SortLink {
                label,
                href: format!("{base}&sort={s}&dir={dir}"),
                aria: match (here, descending) {
                    (false, _) => "none",
                    (true, false) => "ascending",
                    (true, true) => "descending",
                },
            }
        })
        .collect();
    let states = [
        ("", "Not revoked or expired"),
        ("active", "Active"),
        ("suspended", "Suspended"),
        ("revoked", "Revoked"),
        ("expired", "Expired"),
        ("all", "All"),
    ]
    .into_iter()
    .map(|(v, l)| (v, l, v == q.state))
    .collect();
    // The default view leaves out what can no longer be used.
    if q.state.is_empty() {
        rows.retain(|r| r.state == "active" || r.state == "suspended");
    }
    let total = rows.len();
    rows.truncate(MAX_ROWS);
    page(
        StatusCode::OK,
        &KeysPage {
            shell: Shell::new(&signed, Section::Keys, "Keys"),
            q: q.q,
            states,
            columns,
            rows,
            total,
            max_rows: MAX_ROWS,
        },
    )
}

#[derive(askama::Template)]
#[template(path = "console/key_new.html")]
struct NewKeyPage {
    shell: Shell,
    form: NewKeyForm,
    error: Option<String>,
    providers: Vec<String>,
}

/// The creation form's fields, as typed (kept to show again after an error).
#[derive(serde::Deserialize, Default, Clone)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    providers: String,
    #[serde(default)]
    endpoints: String,
    #[serde(default)]
    cidrs: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    daily_budget: String,
    #[serde(default)]
    monthly_budget: String,
    #[serde(default)]
    canary: Option<String>,
}

fn list_field(v: &str) -> Vec<String> {
    v.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn optional(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|s| !s.is_empty())
}

/// A number typed in a form (`_` may group digits; `$` may lead). A comma
/// is refused rather than guessed at: `1,50` could be either 1.5 or 150.
fn number<T: std::str::FromStr>(v: &str, what: &str) -> Result<Option<T>, String> {
    optional(v)
        .map(|s| {
            if s.contains(',') {
                return Err(format!(
                    "{what}: write it without commas (a dot for decimals, such as 1.50)"
                ));
            }
            s.replace('_', "")
                .trim_start_matches('$')
                .parse::<T>()
                .map_err(|_| format!("{what} must be a number"))
        })
        .transpose()
}

impl NewKeyForm {
    fn request(&self) -> Result<crate::admin::CreateKey, String> {
        if self.env.trim().is_empty() {
            return Err("give the key an environment (prod, dev, …)".into());
        }
        let models = list_field(&self.models);
        if models.is_empty() {
            return Err("list the models the key may use (`*` for any)".into());
        }
        Ok(crate::admin::CreateKey {
            name: self.name.trim().to_string(),
            env: self.env.trim().to_string(),
            models,
            providers: list_field(&self.providers),
            endpoints: list_field(&self.endpoints),
            cidrs: list_field(&self.cidrs),
            expires: optional(&self.expires),
            canary: self.canary.is_some(),
            redaction: Default::default(),
            rotate_every: None,
            rotation_grace: None,
            notify: None,
            owner: optional(&self.owner),
            rpm: number(&self.rpm, "requests per minute")?,
            tpm: number(&self.tpm, "tokens per minute")?,
            concurrency: number(&self.concurrency, "requests at once")?,
            daily_budget: number(&self.daily_budget, "the daily budget")?,
            monthly_budget: number(&self.monthly_budget, "the monthly budget")?,
        })
    }
}

fn new_key_page(
    gw: &Gateway,
    signed: &Signed,
    form: NewKeyForm,
    error: Option<String>,
) -> Response {
    page(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &NewKeyPage {
            shell: Shell::new(signed, Section::Keys, "Create a key"),
            form,
            error,
            providers: gw.providers.iter().map(|p| p.config.name.clone()).collect(),
        },
    )
}

/// `GET /console/keys/new`.
pub async fn new_form(State(gw): State<Arc<Gateway>>, signed: Signed) -> Response {
    let form = NewKeyForm {
        env: "prod".into(),
        models: "*".into(),
        expires: "90d".into(),
        ..Default::default()
    };
    new_key_page(&gw, &signed, form, None)
}

#[derive(askama::Template)]
#[template(path = "console/key_secret.html")]
struct SecretPage {
    shell: Shell,
    id: String,
    name: String,
    /// Wiped from memory when the page is dropped.
    secret: zeroize::Zeroizing<String>,
    what: &'static str,
    servers: usize,
}

/// `POST /console/keys`: creates the key and shows its secret, once.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Posted { signed, form }: Posted<NewKeyForm>,
) -> Response {
    let spec = match form
        .request()
        .and_then(|r| crate::admin::new_key_spec(&gw, r))
    {
        Ok(s) => s,
        Err(m) => return new_key_page(&gw, &signed, form, Some(m)),
    };
    let name = spec.name.clone();
    match gw.backend.as_actor(&signed.actor()).create_key(spec).await {
        Ok((rec, key)) => {
            let servers = crate::admin::confirmed(&gw).await;
            page(
                StatusCode::CREATED,
                &SecretPage {
                    shell: Shell::new(&signed, Section::Keys, "Key created"),
                    id: rec.id,
                    name,
                    secret: zeroize::Zeroizing::new(key),
                    what: "created",
                    servers,
                },
            )
        }
        Err(crate::state::StateError::Invalid(m)) => new_key_page(&gw, &signed, form, Some(m)),
        Err(e) => store_failure("keys.create", &e),
    }
}

/// A fact about a key for its page.
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// An audit entry, as the console lists it.
pub struct EntryRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details: String,
}

impl EntryRow {
    pub fn new(r: &keyward_store::AuditRow) -> EntryRow {
        EntryRow {
            seq: r.seq,
            at: format::time(r.at),
            actor: r.actor.clone(),
            action: r.action.clone(),
            target: r.target.clone(),
            outcome: r.outcome.clone(),
            details: r.details.clone(),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/key.html")]
struct KeyPage {
    shell: Shell,
    id: String,
    state: &'static str,
    canary: bool,
    facts: Vec<Fact>,
    history: Vec<EntryRow>,
}

/// What a page was sent back with after a change: which change, how many
/// servers applied it, and a tag that ties both to this session (so a link
/// made elsewhere cannot show a notice of a change that never happened).
#[derive(serde::Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub servers: Option<usize>,
    #[serde(default)]
    pub tag: String,
}

fn notice_tag(gw: &Gateway, signed: &Signed, done: &str, servers: Option<usize>) -> String {
    let mut tag = gw
        .hash_key
        .hash_hex(format!("console-notice:{}:{done}:{servers:?}", signed.csrf).as_bytes());
    tag.truncate(32);
    tag
}

/// The query string that makes the next page say `done` happened.
pub fn done_query(gw: &Gateway, signed: &Signed, done: &str, servers: Option<usize>) -> String {
    let mut q = format!("done={done}&tag={}", notice_tag(gw, signed, done, servers));
    if let Some(n) = servers {
        q.push_str(&format!("&servers={n}"));
    }
    q
}

/// The notice for a finished action, from a fixed list (never echoed), when
/// its tag is this session's.
pub fn notice(gw: &Gateway, signed: &Signed, done: &Done) -> Option<String> {
    let tag = notice_tag(gw, signed, &done.done, done.servers);
    if !keyward_vault::ct_eq(tag.as_bytes(), done.tag.as_bytes()) {
        return None;
    }
    let what = match done.done.as_str() {
        "suspended" => "Key suspended",
        "resumed" => "Key resumed",
        "revoked" => "Key revoked",
        "stored" => "Credential stored",
        "acknowledged" => "Alert acknowledged",
        _ => return None,
    };
    Some(match done.servers {
        Some(n) => format!("{what}: applied by {n} running server(s)."),
        None => format!("{what}."),
    })
}

/// `GET /console/keys/{id}`.
pub async fn detail(
    State(gw): State<Arc<Gateway>>,
    signed: Signed,
    Path(id): Path<String>,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let k = match gw.backend.store.key(&id).await {
        Ok(Some(k)) => k,
        Ok(None) => return message(StatusCode::NOT_FOUND, "No such key", "No key has that id."),
        Err(e) => return store_failure("keys", &e),
    };
    let now = crate::time::now();
    let last_use = gw.backend.store.key_last_use().await.unwrap_or_default();
    let (today, month) = spend_by_key(&gw).await.unwrap_or_default();
    let history = gw
        .backend
        .store
        .audit_search(
            &keyward_store::AuditFilter {
                key: Some(k.id.clone()),
                ..Default::default()
            },
            50,
        )
        .await
        .unwrap_or_default();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let list = |v: &[String]| {
        if v.is_empty() {
            "any".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut facts = vec![
        Fact {
            label: "Id",
            value: k.id.clone(),
        },
        Fact {
            label: "Key begins",
            value: k.hint.clone(),
        },
        Fact {
            label: "Environment",
            value: k.environment.clone(),
        },
        Fact {
            label: "Owner",
            value: opt(&k.owner),
        },
        Fact {
            label: "Models",
            value: list(&k.models),
        },
        Fact {
            label: "Providers",
            value: list(&k.providers),
        },
        Fact {
            label: "Endpoints",
            value: list(&k.endpoints),
        },
        Fact {
            label: "Source networks",
            value: list(&k.source_cidrs),
        },
        Fact {
            label: "Limits",
            value: format::limits(&limits_of(&k)),
        },
        Fact {
            label: "Spend",
            value: format!(
                "{} today · {} this month",
                format::money(today.get(&k.id).copied().unwrap_or(0)),
                format::money(month.get(&k.id).copied().unwrap_or(0))
            ),
        },
        Fact {
            label: "Created",
            value: format::time(k.created_at),
        },
        Fact {
            label: "Expires",
            value: k.expires_at.map_or("never".into(), format::time),
        },
        Fact {
            label: "Last use",
            value: last_use.get(&k.id).map_or("never".into(), |u| {
                format!("{} ({})", format::time(*u), format::relative(*u, now))
            }),
        },
        Fact {
            label: "On anomaly",
            value: k
                .on_anomaly
                .clone()
                .unwrap_or_else(|| "server default".into()),
        },
    ];
    if let Some(until) = k.prev_valid_until.filter(|u| *u > now) {
        facts.push(Fact {
            label: "Previous secret",
            value: format!("still accepted until {}", format::time(until)),
        });
    }
    if let Some(every) = k.rotate_every {
        facts.push(Fact {
            label: "Scheduled rotation",
            value: format!(
                "every {}; next {}",
                format::span(every),
                k.next_rotation_at.map_or("—".into(), format::time)
            ),
        });
    }
    for (label, at, reason) in [
        ("Suspended", k.suspended_at, &k.suspend_reason),
        ("Revoked", k.revoked_at, &k.revoke_reason),
    ] {
        if let Some(at) = at {
            facts.push(Fact {
                label,
                value: format!("{} — {}", format::time(at), opt(reason)),
            });
        }
    }
    let mut shell = Shell::new(&signed, Section::Keys, format!("Key {}", k.name));
    shell.notice = done.ok().and_then(|Query(d)| notice(&gw, &signed, &d));
    page(
        StatusCode::OK,
        &KeyPage {
            shell,
            id: k.id.clone(),
            state: state(&k, now),
            canary: k.canary,
            facts,
            history: history.iter().map(EntryRow::new).collect(),
        },
    )
}

#[derive(serde::Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    grace: String,
    /// `alerts` to return to the alerts page afterwards.
    #[serde(default)]
    back: String,
}

/// `POST /console/keys/{id}/{rotate|suspend|resume|revoke}`.
pub async fn act(
    State(gw): State<Arc<Gateway>>,
    Path((id, action)): Path<(String, String)>,
    Posted { signed, form }: Posted<ActionForm>,
) -> Response {
    let backend = gw.backend.as_actor(&signed.actor());
    let reason = form.reason.trim();
    let needs_reason = || {
        message(
            StatusCode::BAD_REQUEST,
            "A reason is needed",
            "Say why (it is kept in the audit log and shown with the key). Nothing was changed.",
        )
    };
    let outcome = match action.as_str() {
        "rotate" => return rotate(&gw, &backend, &signed, &id, &form.grace).await,
        "suspend" if reason.is_empty() => return needs_reason(),
        "revoke" if reason.is_empty() => return needs_reason(),
        "suspend" => (backend.suspend_key(&id, reason).await, "suspended"),
        "revoke" => (backend.revoke_key(&id, reason).await, "revoked"),
        "resume" => (backend.resume_key(&id).await, "resumed"),
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                "Unknown action",
                "Keys can be rotated, suspended, resumed or revoked.",
            )
        }
    };
    match outcome {
        (Ok(true), done) => {
            let servers = crate::admin::confirmed(&gw).await;
            let back = if form.back == "alerts" {
                "/console/alerts?".to_string()
            } else {
                format!("/console/keys/{}?", format::path_segment(&id))
            };
            see_other(&format!(
                "{back}{}",
                done_query(&gw, &signed, done, Some(servers))
            ))
        }
        (Ok(false), _) => message(
            StatusCode::NOT_FOUND,
            "Not changed",
            "No such key, or it is revoked (or already in that state).",
        ),
        (Err(e), _) => store_failure("keys", &e),
    }
}

async fn rotate(
    gw: &Gateway,
    backend: &crate::state::Backend,
    signed: &Signed,
    id: &str,
    grace: &str,
) -> Response {
    let grace = match grace.trim() {
        "" => Duration::from_secs(24 * 3600),
        "0" | "0s" | "none" => Duration::ZERO,
        g => match crate::time::parse_lifetime(g) {
            Some(Some(d)) => d,
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Bad grace period",
                    "The grace period must look like 24h, 30m or 0s. Nothing was changed.",
                )
            }
        },
    };
    match backend.rotate_key(id, grace).await {
        Ok(Some(key)) => {
            let servers = crate::admin::confirmed(gw).await;
            let name = gw
                .backend
                .store
                .key(id)
                .await
                .ok()
                .flatten()
                .map(|k| k.name)
                .unwrap_or_default();
            page(
                StatusCode::OK,
                &SecretPage {
                    shell: Shell::new(signed, Section::Keys, "Key rotated"),
                    id: id.to_string(),
                    name,
                    secret: zeroize::Zeroizing::new(key),
                    what: "rotated",
                    servers,
                },
            )
        }
        Ok(None) => message(
            StatusCode::NOT_FOUND,
            "Not rotated",
            "No such key, or it is revoked.",
        ),
        Err(crate::state::StateError::Invalid(m)) => {
            message(StatusCode::CONFLICT, "Not rotated", &m)
        }
        Err(e) => store_failure("keys.rotate", &e),
    }
}
