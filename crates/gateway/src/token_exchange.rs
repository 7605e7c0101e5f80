//! `POST /v1/token`: a CI pipeline's or workload's OIDC token (GitHub Actions,
//! GitLab CI, Kubernetes service accounts) exchanged, RFC 8693 style, for a
//! short-lived Keyward key scoped by the first rule its claims match.
//!
//! ```text
//! POST /v1/token
//! content-type: application/x-www-form-urlencoded   (or application/json)
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! &subject_token=<the OIDC token>
//! &subject_token_type=urn:ietf:params:oauth:token-type:jwt   (or :id_token)
//!
//! 200 {"access_token": "kw_ci_…", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
//!      "token_type": "Bearer", "expires_in": 900, "key_id": "key_…", "environment": "ci"}
//! 400 {"error": "invalid_request", "error_description": "…"}  (and unsupported_grant_type,
//!      access_denied 403, temporarily_unavailable 503, slow_down 429)
//! ```
//!
//! The key is answered once every running server accepts it. The exchange, with
//! the issuer, subject and the claims its rule matched, is in the audit log;
//! the token never is.

use crate::config::identity::TokenUse;
use crate::context::{request_id, Gateway};
use crate::identity::TokenError;
use crate::state::NewKey;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ISSUED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TOKEN_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
];
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Exchanges one identity may make per minute.
pub const EXCHANGES_PER_MINUTE: u64 = 30;

/// The request's fields, from a form or a JSON object.
#[derive(Default, serde::Deserialize)]
struct ExchangeRequest {
    grant_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<ExchangeRequest, String> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return serde_json::from_slice(body)
            .map_err(|_| "the body is not a JSON object of strings".to_string());
    }
    let mut r = ExchangeRequest::default();
    for (k, v) in form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut r.grant_type,
            "subject_token" => &mut r.subject_token,
            "subject_token_type" => &mut r.subject_token_type,
            "requested_token_type" => &mut r.requested_token_type,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("`{k}` is given twice"));
        }
        *slot = Some(v.into_owned());
    }
    Ok(r)
}

/// An OAuth error answer (RFC 6749 §5.2), with the request id.
fn oauth_error(status: StatusCode, error: &str, description: &str, rid: &str) -> Response {
    (
        status,
        [("cache-control", "no-store"), ("x-keyward-request-id", rid)],
        Json(json!({"error": error, "error_description": description, "request_id": rid})),
    )
        .into_response()
}

/// The handler.
pub async fn exchange(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::tls::PeerAddr(peer)): ConnectInfo<crate::tls::PeerAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let rid = request_id();
    let source = crate::forwarded::client_address(peer.ip(), &headers, &gw.trusted_proxies);
    let refuse = |actor: &str, reason: &'static str, status: StatusCode| {
        gw.audit.refused(crate::audit::Refusal {
            actor,
            reason,
            action: "token.exchange.refused",
            source,
            target: "/v1/token",
            request_id: &rid,
            status: status.as_u16(),
        });
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            &format!("the body is over {MAX_BODY} bytes"),
            &rid,
        );
    };
    let req = match parse(&headers, &body) {
        Ok(r) => r,
        Err(m) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &m, &rid),
    };
    if req.grant_type.as_deref() != Some(GRANT_TYPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type must be {GRANT_TYPE}"),
            &rid,
        );
    }
    if !req
        .subject_token_type
        .as_deref()
        .is_some_and(|t| SUBJECT_TOKEN_TYPES.contains(&t))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!(
                "subject_token_type must be one of {}",
                SUBJECT_TOKEN_TYPES.join(", ")
            ),
            &rid,
        );
    }
    if req
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ISSUED_TOKEN_TYPE)
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("requested_token_type can only be {ISSUED_TOKEN_TYPE}"),
            &rid,
        );
    }
    let Some(token) = req.subject_token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token (the OIDC token) is missing",
            &rid,
        );
    };
    if !gw.live.fresh() {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "key store unreachable; retry shortly",
            &rid,
        );
    }
    let verified = match gw
        .identities
        .verify(&token, TokenUse::Exchange, crate::time::now(), &|n| {
            gw.vault_bytes(n)
        })
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let actor = gw.identities.refused_actor(&token);
            let (status, code) = match e {
                TokenError::KeysUnavailable => {
                    (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
                }
                TokenError::NoRule | TokenError::WrongUse(_) => {
                    (StatusCode::FORBIDDEN, "access_denied")
                }
                _ => (StatusCode::BAD_REQUEST, "invalid_request"),
            };
            if e.kind() == crate::api::ErrorKind::Authentication {
                gw.watch.auth_failed(source, e.code(), None);
            }
            refuse(&actor, e.code(), status);
            return oauth_error(status, code, &e.message(), &rid);
        }
    };
    let user = verified.user();
    let actor = format!("exchange:{user}");
    let scope = [(
        format!("exchange:{user}"),
        format!("exchanges of `{user}`"),
        crate::limits::Limits {
            rpm: Some(EXCHANGES_PER_MINUTE),
            ..Default::default()
        },
    )];
    match gw.limiter.admit(&scope).await {
        Ok(_permit) => {}
        Err(crate::limits::LimitError::Exceeded(e)) => {
            refuse(&actor, "rate_limited", StatusCode::TOO_MANY_REQUESTS);
            let mut resp = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                &format!("at most {EXCHANGES_PER_MINUTE} exchanges a minute per identity"),
                &rid,
            );
            if let Ok(v) = ((e.retry_after_ms + 999) / 1000).to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
            return resp;
        }
        Err(crate::limits::LimitError::Unavailable(why)) => {
            tracing::error!(request_id = %rid, "token exchange: limit counters unreachable: {why}");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "rate-limit counters unreachable; retry shortly",
                &rid,
            );
        }
    }
    let rule = verified.rule;
    let ttl = rule.config.ttl();
    // What bound the key: the subject and the claims the rule matched.
    let bound: serde_json::Map<String, Value> = rule
        .config
        .claims
        .keys()
        .filter_map(|path| {
            crate::identity::claims::lookup(&verified.claims, path)
                .map(|v| (path.clone(), v.clone()))
        })
        .collect();
    let name: String = format!("exchanged for {user}")
        .chars()
        .take(crate::keys::MAX_NAME_LEN)
        .collect();
    let spec = NewKey {
        name,
        environment: rule.config.environment.clone(),
        models: rule.config.models.clone(),
        providers: rule.config.providers.clone(),
        endpoints: rule.config.endpoints.clone(),
        source_cidrs: Vec::new(),
        expires_in: Some(ttl),
        canary: false,
        redaction: Default::default(),
        rotation: None,
        owner: rule.config.owner.clone(),
        limits: rule.limits,
    };
    let (record, key) = match gw.backend.as_actor(&actor).create_key(spec).await {
        Ok(created) => created,
        Err(e) => {
            tracing::error!(request_id = %rid, "token exchange: cannot store the key: {e}");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "store error; retry shortly",
                &rid,
            );
        }
    };
    gw.audit.record(crate::audit::Event::new(
        &actor,
        "token.exchange",
        &record.id,
        "ok",
        json!({
            "request_id": rid, "source": source.to_string(), "issuer": verified.issuer.config.name,
            "subject": verified.subject, "rule": record_rule(&rule.entry.record.id),
            "claims": bound, "expires_at": record.expires_at,
        }),
    ));
    let servers = gw
        .backend
        .await_replicas(Duration::from_secs(3))
        .await
        .map(|(n, _)| n)
        .unwrap_or(0);
    tracing::info!(request_id = %rid, key_id = %record.id, user = %user, "token exchanged for a key valid {}s", ttl.as_secs());
    (
        StatusCode::OK,
        [
            ("cache-control", "no-store"),
            ("x-keyward-request-id", rid.as_str()),
        ],
        Json(json!({
            "access_token": key, "issued_token_type": ISSUED_TOKEN_TYPE, "token_type": "Bearer",
            "expires_in": ttl.as_secs(), "key_id": record.id, "environment": record.environment,
            "servers_confirmed": servers,
        })),
    )
        .into_response()
}

/// The rule's number, from its entry id (`idp_<issuer>_<n>`).
fn record_rule(id: &str) -> Value {
    id.rsplit('_')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(Value::Null, Value::from)
}
