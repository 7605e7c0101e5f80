//! CORS for browser apps that call the gateway with their users' tokens: only
//! origins some issuer lists in `allowed_origins` are answered, each by name
//! (never `*`, never with credentials: tokens travel in `Authorization`, not
//! cookies). Whether a token may be used from its page's origin is checked
//! against its own issuer when it is verified.

use crate::context::Gateway;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Response headers a page may read: request ids, rate-limit and retry hints.
const EXPOSED: &str = "x-request-id, x-keyward-request-id, retry-after, retry-after-ms, \
x-keyward-max-tokens, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, \
x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, \
x-ratelimit-reset-tokens, anthropic-ratelimit-requests-limit, anthropic-ratelimit-requests-remaining, \
anthropic-ratelimit-requests-reset, anthropic-ratelimit-tokens-limit, anthropic-ratelimit-tokens-remaining, \
anthropic-ratelimit-tokens-reset, request-id";

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Longest `Access-Control-Request-Headers` echoed back.
const MAX_REQUEST_HEADERS_LEN: usize = 2048;

/// The middleware: answers preflights and marks answers to allowed origins.
pub async fn layer(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    if gw.cors_origins.is_empty() {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .filter(|o| gw.cors_origins.contains(*o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    if preflight {
        return match origin {
            Some(o) => preflight_answer(o, req.headers()),
            None => {
                let mut resp = (
                    StatusCode::FORBIDDEN,
                    [("content-type", "application/json")],
                    r#"{"error":{"message":"This origin is not in any issuer's allowed_origins","type":"permission_error"}}"#,
                )
                    .into_response();
                resp.headers_mut()
                    .insert("vary", HeaderValue::from_static("origin"));
                resp
            }
        };
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.append("vary", HeaderValue::from_static("origin"));
    if let Some(o) = origin {
        h.insert("access-control-allow-origin", o);
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static(EXPOSED),
        );
    }
    resp
}

fn preflight_answer(origin: HeaderValue, headers: &HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", origin);
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    // The SDKs send headers of their own (x-stainless-*, anthropic-version):
    // the ones asked for are allowed when they are plain header names.
    let asked = headers
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_REQUEST_HEADERS_LEN)
        .filter(|v| {
            v.split(',').map(str::trim).all(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        });
    if let Some(v) = asked.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert("access-control-allow-headers", v);
    }
    h.insert(
        "access-control-max-age",
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    h.insert("vary", HeaderValue::from_static("origin"));
    resp
}
