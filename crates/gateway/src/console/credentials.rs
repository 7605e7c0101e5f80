//! The credentials page: vault names, versions, pools, age and overdue
//! rotations (never a value), and storing a new value pasted in.

use super::format;
use super::keys::{notice, Done};
use super::session::Posted;
use super::{message, page, see_other, store_failure, Section, Shell, Signed};
use crate::context::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub struct CredentialRow {
    pub name: String,
    /// The name as a URL path segment.
    pub path: String,
    pub version: String,
    pub versions: String,
    pub live: usize,
    pub stored: String,
    pub age: String,
    pub overdue: bool,
    pub used_by: String,
    pub missing: bool,
    /// The name is one the vault accepts (a config may name others).
    pub writable: bool,
}

#[derive(askama::Template)]
#[template(path = "console/credentials.html")]
struct CredentialsPage {
    shell: Shell,
    rows: Vec<CredentialRow>,
    max_age: String,
}

/// `GET /console/credentials`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    signed: Signed,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let stored = match gw.backend.store.current_secrets().await {
        Ok(s) => s,
        Err(e) => return store_failure("vault", &e),
    };
    let now = crate::time::now();
    let max_age = gw.console.vault_max_age.map(|d| d.as_secs() as i64);
    let snapshot = gw.live.snapshot.load();
    let used_by = |name: &str| {
        gw.console
            .credential_uses
            .get(name)
            .map_or("no provider in this config".to_string(), |u| u.join(", "))
    };
    let mut rows: Vec<CredentialRow> = Vec::new();
    // One row a name: a pool has several live versions; the newest speaks for it.
    let mut newest: Vec<&keyward_store::StoredSecret> = Vec::new();
    for s in &stored {
        match newest.iter_mut().find(|n| n.name == s.name) {
            Some(n) if n.version < s.version => *n = s,
            Some(_) => {}
            None => newest.push(s),
        }
    }
    for s in newest {
        let versions = gw
            .backend
            .store
            .secret_versions(&s.name)
            .await
            .unwrap_or_default();
        let age = now - s.created_at;
        rows.push(CredentialRow {
            name: s.name.clone(),
            path: format::path_segment(&s.name),
            version: s.version.to_string(),
            versions: versions
                .iter()
                .map(|(v, state, _)| format!("v{v} {state}"))
                .collect::<Vec<_>>()
                .join(", "),
            live: snapshot.pools.get(&s.name).map_or(1, |p| p.len()),
            // (`current_secrets` lists each live version of a pool)
            stored: format::time(s.created_at),
            age: format::span(age),
            overdue: max_age.is_some_and(|m| age > m),
            used_by: used_by(&s.name),
            missing: false,
            writable: true,
        });
    }
    for name in gw.console.credential_uses.keys() {
        if !stored.iter().any(|s| &s.name == name) {
            rows.push(CredentialRow {
                name: name.clone(),
                path: format::path_segment(name),
                version: "—".into(),
                versions: "none stored".into(),
                live: 0,
                stored: "—".into(),
                age: "—".into(),
                overdue: false,
                used_by: used_by(name),
                missing: true,
                writable: crate::state::valid_secret_name(name),
            });
        }
    }
    let mut shell = Shell::new(&signed, Section::Credentials, "Credentials");
    shell.notice = done.ok().and_then(|Query(d)| notice(&gw, &signed, &d));
    page(
        StatusCode::OK,
        &CredentialsPage {
            shell,
            rows,
            max_age: gw
                .console
                .vault_max_age
                .map_or("no rotation policy ([vault] max_age)".into(), |d| {
                    format!("rotate every {}", format::span(d.as_secs() as i64))
                }),
        },
    )
}

#[derive(serde::Deserialize)]
pub struct StoreForm {
    #[serde(default)]
    value: String,
    /// Add beside the live version(s) instead of replacing them.
    #[serde(default)]
    pool: Option<String>,
}

/// `POST /console/credentials/{name}`: a new version, used at once. The value
/// is never shown again, echoed in an error or logged.
pub async fn store(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Posted { signed, form }: Posted<StoreForm>,
) -> Response {
    let value = zeroize::Zeroizing::new(form.value);
    let trimmed = value.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return message(
            StatusCode::BAD_REQUEST,
            "No value",
            "Paste the credential's new value. Nothing was changed.",
        );
    }
    let backend = gw.backend.as_actor(&signed.actor());
    let stored = if form.pool.is_some() {
        backend.vault_pool_add(&name, trimmed).await
    } else {
        backend.vault_rotate(&name, trimmed).await
    };
    match stored {
        Ok(_) => {
            let servers = crate::admin::confirmed(&gw).await;
            see_other(&format!(
                "/console/credentials?{}",
                super::keys::done_query(&gw, &signed, "stored", Some(servers))
            ))
        }
        Err(crate::state::StateError::Invalid(m)) => {
            message(StatusCode::BAD_REQUEST, "Not stored", &m)
        }
        Err(e) => store_failure("vault", &e),
    }
}
