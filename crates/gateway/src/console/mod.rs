//! The admin console: server-rendered pages for keys, credentials, usage,
//! alerts and the audit log, served beside the admin API (on the admin
//! listener when one is configured).
//!
//! Contracts:
//! - every page and every change needs a signed-in session ([`session`]);
//!   a request without one gets the sign-in page (reads) or 403 (changes);
//! - every change is a `POST` carrying the session's CSRF token, from a page
//!   of this origin (`Sec-Fetch-Site`/`Origin`); anything else is refused;
//! - pages are built with askama templates, which escape every value; no
//!   inline script or style runs: the Content-Security-Policy allows only the
//!   embedded stylesheet and script ([`assets`]);
//! - secrets are shown once (a new or rotated key, on the answer to the
//!   `POST` that made it, never stored in a URL) and credential values never.
//!
//! ```text
//! GET  /console/sign-in, POST /console/sign-in, POST /console/sign-out
//! GET  /console/keys[?q&state&sort&dir]   GET /console/keys/new   POST /console/keys
//! GET  /console/keys/{id}                 POST /console/keys/{id}/{rotate|suspend|resume|revoke}
//! GET  /console/credentials               POST /console/credentials/{name}
//! GET  /console/usage[?by&metric&days]
//! GET  /console/alerts[?show&days]        POST /console/alerts/{id}/ack
//! GET  /console/audit[?actor&action&key&since&until]
//! ```

mod alerts;
mod assets;
mod audit_log;
mod chart;
mod credentials;
mod format;
mod keys;
mod session;
mod usage;

use crate::context::Gateway;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub use session::Signed;

/// The console's routes, to be nested under `/console`.
pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/keys") }))
        .route("/assets/{file}", get(assets::serve))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/new", get(keys::new_form))
        .route("/keys/{id}", get(keys::detail))
        .route("/keys/{id}/{action}", post(keys::act))
        .route("/credentials", get(credentials::list))
        .route("/credentials/{name}", post(credentials::store))
        .route("/usage", get(usage::page_route))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/audit", get(audit_log::page_route))
        .fallback(|| async {
            message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no console page here.",
            )
        })
}

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Keys,
    Credentials,
    Usage,
    Alerts,
    Audit,
}

/// What every signed-in page's frame shows: the navigation, who is signed
/// in, the CSRF token for its forms and a notice.
pub struct Shell {
    pub title: String,
    pub section: Option<Section>,
    pub admin_name: String,
    pub csrf: String,
    /// A line confirming what was just done (chosen from fixed texts).
    pub notice: Option<String>,
}

impl Shell {
    pub fn new(signed: &Signed, section: Section, title: impl Into<String>) -> Shell {
        Shell {
            title: title.into(),
            section: Some(section),
            admin_name: signed.admin.name.clone(),
            csrf: signed.csrf.clone(),
            notice: None,
        }
    }

    /// `aria-current` for the navigation link to `section` (`keys`,
    /// `credentials`, `usage`, `alerts`, `audit`).
    pub fn current(&self, section: &str) -> &'static str {
        let name = match self.section {
            Some(Section::Keys) => "keys",
            Some(Section::Credentials) => "credentials",
            Some(Section::Usage) => "usage",
            Some(Section::Alerts) => "alerts",
            Some(Section::Audit) => "audit",
            None => "",
        };
        if name == section {
            "page"
        } else {
            "false"
        }
    }
}

/// A rendered page with the console's headers: no caching, no framing, no
/// sniffing, no referrer, and the CSP that allows only the console's own
/// stylesheet and script.
pub fn page(status: StatusCode, template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => with_headers(
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!("console template: {e}");
            with_headers(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be built; see the server log",
                )
                    .into_response(),
            )
        }
    }
}

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the console's security headers to an answer.
pub fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// A page that only says something (errors, refusals).
#[derive(askama::Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    heading: &'a str,
    text: &'a str,
}

pub fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    page(status, &MessagePage { heading, text })
}

/// A store failure: logged, answered without internals.
pub fn store_failure(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!("console {what}: {e}");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Store unavailable",
        "The store did not answer; nothing was changed. Try again in a moment.",
    )
}

/// `303 See Other` to a console path (after a change).
pub fn see_other(path: &str) -> Response {
    with_headers(Redirect::to(path).into_response())
}
