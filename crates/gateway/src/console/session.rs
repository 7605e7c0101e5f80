//! Console sessions: sign-in with an admin key, the session cookie, and the
//! checks every request passes ([`Signed`] for pages, [`Posted`] for changes).
//!
//! - The session id is 256 random bits, sent only in the cookie
//!   `__Host-keyward_console` (`Secure; HttpOnly; SameSite=Strict; Path=/`).
//!   The store keeps only its keyed hash; a fresh id is made at every sign-in,
//!   so an id planted before sign-in (session fixation) is never signed in.
//! - A session ends at its absolute lifetime, when idle too long, at sign-out,
//!   and when the admin key it was opened with is revoked.
//! - The CSRF token is a keyed hash of the session id: nothing more to store,
//!   different per session, unknowable without the cookie.

use super::{message, page, see_other, with_headers};
use crate::context::Gateway;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use keyward_store::{AdminKeyRecord, SessionRow};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The session cookie's name; the `__Host-` prefix makes browsers refuse it
/// unless it is `Secure`, host-only and for `/`.
pub const COOKIE: &str = "__Host-keyward_console";

/// Activity is written back at most this often (milliseconds), or every
/// quarter of the idle limit when that is shorter.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Largest form a console page posts (the biggest is a pasted credential).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A request from a signed-in console session.
pub struct Signed {
    pub admin: AdminKeyRecord,
    /// The token this session's forms must carry.
    pub csrf: String,
    id_hash: String,
}

impl Signed {
    /// The audit actor for changes made in the console.
    pub fn actor(&self) -> String {
        format!("console:{}", self.admin.id)
    }
}

fn session_hash(gw: &Gateway, id: &str) -> String {
    gw.hash_key
        .hash_hex(format!("console-session:{id}").as_bytes())
}

fn csrf_token(gw: &Gateway, id: &str) -> String {
    gw.hash_key
        .hash_hex(format!("console-csrf:{id}").as_bytes())
}

/// The session id from the request's cookies, if it has one of the right shape.
fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Why a request has no session.
enum NoSession {
    /// No cookie, or one the store does not know (or that has ended).
    SignedOut {
        had_cookie: bool,
    },
    StoreDown,
}

async fn signed(gw: &Gateway, headers: &HeaderMap) -> Result<Signed, NoSession> {
    let Some(id) = cookie_session(headers) else {
        return Err(NoSession::SignedOut {
            had_cookie: headers.get(header::COOKIE).is_some(),
        });
    };
    let gone = NoSession::SignedOut { had_cookie: true };
    let id_hash = session_hash(gw, &id);
    let row = match gw.backend.store.session(&id_hash).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(gone),
        Err(e) => {
            tracing::error!("console session lookup: {e}");
            return Err(NoSession::StoreDown);
        }
    };
    let now = crate::time::now_ms();
    let idle_ms = gw.console.idle.as_millis() as i64;
    let admin = gw
        .live
        .snapshot
        .load()
        .admin_keys
        .values()
        .find(|a| a.id == row.admin_key_id && a.revoked_at.is_none())
        .cloned();
    let Some(admin) = admin.filter(|_| now < row.expires_ms && now - row.seen_ms < idle_ms) else {
        let _ = gw.backend.store.delete_session(&id_hash).await;
        return Err(gone);
    };
    if now - row.seen_ms >= TOUCH_EVERY_MS.min(idle_ms / 4) {
        if let Err(e) = gw.backend.store.touch_session(&id_hash, now).await {
            tracing::warn!("console session touch: {e}");
        }
    }
    Ok(Signed {
        admin,
        csrf: csrf_token(gw, &id),
        id_hash,
    })
}

/// A `Set-Cookie` that deletes the session cookie.
fn clear_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .expect("ASCII")
}

impl FromRequestParts<Arc<Gateway>> for Signed {
    type Rejection = Response;

    /// Reads (`GET`, `HEAD`) without a session are sent to the sign-in page;
    /// anything else is refused with 403.
    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, Response> {
        if !gw.live.fresh() {
            return Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unreachable",
                "This server cannot read the key store; the console is unavailable until it can.",
            ));
        }
        match signed(gw, &parts.headers).await {
            Ok(s) => Ok(s),
            Err(NoSession::StoreDown) => Err(super::store_failure("session", &"lookup failed")),
            Err(NoSession::SignedOut { had_cookie }) => {
                let mut resp = if parts.method == Method::GET || parts.method == Method::HEAD {
                    see_other("/console/sign-in")
                } else {
                    message(
                        StatusCode::FORBIDDEN,
                        "Signed out",
                        "Your console session has ended. Sign in again; nothing was changed.",
                    )
                };
                if had_cookie {
                    resp.headers_mut()
                        .append(header::SET_COOKIE, clear_cookie());
                }
                Err(resp)
            }
        }
    }
}

/// Whether a state-changing request comes from a page of this origin. A
/// browser's `Sec-Fetch-Site` decides when it is sent (it must be
/// `same-origin`; pages cannot forge it, and it survives proxies that rewrite
/// `Host`). Otherwise `Origin` must name this host (the `Host` header, or the
/// URI's authority over HTTP/2). A request with neither is not from a browser
/// page of ours (every current browser sends `Origin` with a form `POST`).
pub fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

fn cross_site() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Refused",
        "Console changes are accepted only from the console's own pages. Nothing was changed.",
    )
}

/// A change from a signed-in session: same origin, the session's CSRF token
/// in the form's `csrf` field, and the form `T` (fields other than `csrf`).
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<Gateway>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, gw: &Arc<Gateway>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        if !same_origin(&parts.headers, &parts.uri) {
            return Err(cross_site());
        }
        let signed = Signed::from_request_parts(&mut parts, gw).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too large",
                    "That form is larger than the console accepts (64 KiB).",
                )
            })?;
        let sent = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !keyward_vault::ct_eq(sent.as_bytes(), signed.csrf.as_bytes()) {
            return Err(message(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form's security token is missing or stale: reload the page and try again. Nothing was changed.",
            ));
        }
        let form = read_form(&bytes)?;
        Ok(Posted { signed, form })
    }
}

/// The form's fields as `T`, or a 400 that does not repeat them (a field may
/// hold a pasted secret).
#[allow(clippy::result_large_err)]
fn read_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_urlencoded::from_bytes(bytes).map_err(|_| {
        message(
            StatusCode::BAD_REQUEST,
            "Bad form",
            "The form was not understood; reload the page and try again.",
        )
    })
}

#[derive(askama::Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage<'a> {
    error: Option<&'a str>,
}

/// `GET /console/sign-in`; a signed-in browser goes on to the keys.
pub async fn sign_in_page(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Response {
    if signed(&gw, &headers).await.is_ok() {
        return see_other("/console/keys");
    }
    page(StatusCode::OK, &SignInPage { error: None })
}

#[derive(serde::Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    admin_key: String,
}

/// `POST /console/sign-in`: an admin key in, a new session out. Whatever
/// session cookie came with the request is ignored and replaced.
pub async fn sign_in(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let source = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::tls::PeerAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0 .0.ip());
    if !same_origin(&parts.headers, &parts.uri) {
        return cross_site();
    }
    if !gw.live.fresh() {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unreachable",
            "This server cannot read the key store; try again when it can.",
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            "That form is larger than the console accepts.",
        );
    };
    let form: SignInForm = match read_form(&body) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let key = zeroize::Zeroizing::new(form.admin_key);
    let Some(admin) = crate::admin::admin_by_key(&gw, key.trim()) else {
        gw.audit.refused(crate::audit::Refusal {
            actor: "anonymous",
            reason: "invalid_admin_key",
            action: "admin.refused",
            source,
            target: "console",
            request_id: &crate::context::request_id(),
            status: 401,
        });
        return page(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                error: Some(
                    "That is not a valid admin key. Create one with `keyward admin create`.",
                ),
            },
        );
    };
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(keyward_vault::random_bytes::<32>());
    let now = crate::time::now_ms();
    let store = &gw.backend.store;
    // A session the browser had before ends: one sign-in, one live session.
    if let Some(old) = cookie_session(&parts.headers) {
        let _ = store.delete_session(&session_hash(&gw, &old)).await;
    }
    let _ = store
        .delete_stale_sessions(now, now - gw.console.idle.as_millis() as i64)
        .await;
    let row = SessionRow {
        id_hash: session_hash(&gw, &id),
        admin_key_id: admin.id.clone(),
        created_ms: now,
        seen_ms: now,
        expires_ms: now.saturating_add(gw.console.session.as_millis() as i64),
    };
    if let Err(e) = store.insert_session(&row).await {
        return super::store_failure("sign-in", &e);
    }
    gw.audit.record(crate::audit::Event::new(
        &format!("console:{}", admin.id),
        "console.sign_in",
        "console",
        "ok",
        serde_json::json!({"source": source.to_string()}),
    ));
    let mut resp = see_other("/console/keys");
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict"
        ))
        .expect("ASCII"),
    );
    resp
}

/// A form with no fields but the CSRF token.
#[derive(serde::Deserialize)]
pub struct Nothing {}

/// `POST /console/sign-out`: the session ends in the store and the cookie goes.
pub async fn sign_out(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    Posted { signed, .. }: Posted<Nothing>,
) -> Response {
    if let Err(e) = gw.backend.store.delete_session(&signed.id_hash).await {
        return super::store_failure("sign-out", &e);
    }
    gw.audit.record(crate::audit::Event::new(
        &signed.actor(),
        "console.sign_out",
        "console",
        "ok",
        serde_json::json!({}),
    ));
    let mut resp = see_other("/console/sign-in");
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_cookie());
    with_headers(resp.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn same_origin(h: &HeaderMap) -> bool {
        super::same_origin(h, &axum::http::Uri::from_static("/console/keys"))
    }

    #[test]
    fn only_this_origin_may_post() {
        let host = ("host", "127.0.0.1:9090");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9090")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://127.0.0.1:9090")
        ])));
        // Neither header: not a browser page of ours.
        assert!(!same_origin(&headers(&[host])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9090.evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://127.0.0.1:9090")
        ])));
        // Behind a proxy that rewrites Host, the browser's own word decides.
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://console.example")
        ])));
        // HTTP/2 has no Host header: the URI's authority stands in.
        let h2 = axum::http::Uri::from_static("https://gw.example:8443/console/keys");
        let origin = headers(&[("origin", "https://gw.example:8443")]);
        assert!(super::same_origin(&origin, &h2));
        let other = headers(&[("origin", "https://evil.example")]);
        assert!(!super::same_origin(&other, &h2));
    }

    #[test]
    fn the_session_cookie_is_read_only_in_its_own_shape() {
        let id = "a".repeat(43);
        let h = headers(&[("cookie", &format!("other=1; {COOKIE}={id}; x=y"))]);
        assert_eq!(cookie_session(&h).as_deref(), Some(id.as_str()));
        let h = headers(&[("cookie", &format!("{COOKIE}=short"))]);
        assert_eq!(cookie_session(&h), None);
        let h = headers(&[("cookie", &format!("keyward_console={id}"))]);
        assert_eq!(cookie_session(&h), None);
    }
}
