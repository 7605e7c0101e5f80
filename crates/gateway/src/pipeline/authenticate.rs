//! Stage 2, authenticate: the Keyward key the request presents, wherever its SDK
//! put it, checked against the live key directory (format and checksum, canary,
//! rotation grace, standing, expiry, source network).

use super::{Refusal, RequestContext};
use crate::api::ErrorKind;
use crate::context::Gateway;
use crate::keys::{Denial, KeyEntry};
use crate::time::now;
use axum::http::HeaderMap;
use keyward_detect::checksum;
use std::sync::Arc;

/// The authenticated caller.
pub struct Caller {
    /// The key's entry, or for a user the rule's (scope, environment, owner).
    pub entry: Arc<KeyEntry>,
    /// The key or token as presented (to scrub its echoes from responses).
    pub key: String,
    /// Its keyed hash: how open streams find the key again to re-check it.
    pub key_hash: String,
    /// Set when a user's token, not a key, authenticated the request.
    pub user: Option<User>,
}

/// A user authenticated by an issuer's token.
pub struct User {
    /// `issuer:subject`.
    pub id: String,
    /// The user's own limits and budgets, from the rule.
    pub limits: crate::limits::Limits,
}

/// Authenticates the request's key, or says why not. Refuses everything while the
/// key directory may be stale (fail closed: a revocation could have been missed).
pub async fn caller(
    gw: &Gateway,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Caller, Refusal> {
    if !gw.live.fresh() {
        return Err(Refusal::error(
            ErrorKind::Unavailable,
            "Key store unreachable; refusing unchecked requests",
        ));
    }
    let presented = client_keys(headers, query);
    let Some(key) = presented.first() else {
        return Err(Refusal::denied(Denial::MissingKey, None));
    };
    let snapshot = gw.live.snapshot.load();
    // A canary among any of the presented credentials gives the caller away,
    // whichever key the request would be served with.
    let canary = presented
        .iter()
        .filter(|k| checksum::keyward_key_env(k.as_bytes()).is_some())
        .filter_map(|k| snapshot.keys.get(&gw.hash_key.hash_hex(k.as_bytes())))
        .find(|found| found.entry.record.canary);
    if let Some(found) = canary {
        let record = &found.entry.record;
        let ua = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        gw.alerts.send(serde_json::json!({
            "kind": "canary_key_used", "severity": "critical", "key_id": record.id,
            "key_name": record.name, "source": ctx.peer.ip().to_string(), "user_agent": ua,
            "path": ctx.target, "at": now(), "request_id": ctx.rid,
        }));
        return Err(Refusal::denied(Denial::Canary, Some(&record.id)));
    }
    if checksum::keyward_key_env(key.as_bytes()).is_none() {
        if !gw.identities.is_empty() && crate::identity::looks_like_jwt(key) {
            return user(gw, ctx, headers, key).await;
        }
        return Err(Refusal::denied(Denial::InvalidKey, None));
    }
    let key_hash = gw.hash_key.hash_hex(key.as_bytes());
    let Some(found) = snapshot.keys.get(&key_hash) else {
        return Err(Refusal::denied(Denial::InvalidKey, None));
    };
    let id = &found.entry.record.id;
    if found.previous_until.is_some_and(|until| now() >= until) {
        return Err(Refusal::denied(Denial::RotatedOut, Some(id)));
    }
    ctx.key_id = Some(id.clone());
    found
        .entry
        .check_usable(now(), ctx.peer.ip())
        .map_err(|d| Refusal::denied(d, Some(id)))?;
    gw.last_use.mark(id, now());
    gw.watch.request(&crate::watch::Seen {
        key_id: id,
        owner: found.entry.record.owner.as_deref(),
        ip: ctx.peer.ip(),
        user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()),
        request_id: &ctx.rid,
    });
    Ok(Caller {
        entry: found.entry.clone(),
        key: key.clone(),
        key_hash,
        user: None,
    })
}

/// Authenticates a user's token: verified for API calls, from an allowed
/// origin when a browser sent it, under its rule's scope.
async fn user(
    gw: &Gateway,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
    token: &str,
) -> Result<Caller, Refusal> {
    let verified = gw
        .identities
        .user(token, now(), &|name| gw.vault_bytes(name))
        .await
        .map_err(|error| Refusal::token(gw, error, token))?;
    let user = verified.user();
    if let Some(o) = &verified.rule.entry.record.owner {
        gw.watch.owner_request(o);
    }
    ctx.user = Some(user.clone());
    ctx.key_id = Some(verified.rule.entry.record.id.clone());
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
        if !verified
            .issuer
            .config
            .allowed_origins
            .iter()
            .any(|o| o == origin)
        {
            return Err(Refusal::denied(
                Denial::OriginNotAllowed,
                Some(&verified.rule.entry.record.id),
            ));
        }
    }
    Ok(Caller {
        entry: verified.rule.entry.clone(),
        key: token.to_string(),
        key_hash: verified.token_hash,
        user: Some(User {
            id: user,
            limits: verified.rule.limits,
        }),
    })
}

/// Every credential the request presents, in the order the key is taken from:
/// `Authorization` (bearer or bare), `x-api-key`, `x-goog-api-key`, `api-key`, then
/// `?key=`. The first is the request's key; all of them are checked for canaries.
pub(super) fn client_keys(headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut keys: Vec<String> = Vec::new();
    let mut add = |v: &str| {
        if !keys.iter().any(|k| k == v) {
            keys.push(v.to_string());
        }
    };
    if let Some(v) = h("authorization") {
        let v = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        add(v.trim());
    }
    for n in ["x-api-key", "x-goog-api-key", "api-key"] {
        if let Some(v) = h(n) {
            add(v);
        }
    }
    if let Some(v) = query_param(query, "key") {
        add(v);
    }
    keys
}

pub(super) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}
