//! The one place a stopped request becomes a response: every stage returns a
//! [`Refusal`], and [`Refusal::respond`] audits it (when a key's standing or
//! scope refused it) and answers in the provider family's own error format.

use super::RequestContext;
use crate::api::{self, ErrorKind, Family};
use crate::context::Gateway;
use crate::keys::Denial;
use axum::response::Response;

/// Why a request stops before (or instead of) reaching the provider.
pub enum Refusal {
    /// The caller's key, or its absence, refuses the request: audited (repeated
    /// refusals are counted together) and answered with the denial's status.
    Denied {
        denial: Denial,
        /// The key's id, when the key was recognised.
        key_id: Option<String>,
    },
    /// The request cannot be served as sent, or the gateway cannot serve it now.
    /// The message must be free of secrets (fixed phrases, names the client sent
    /// that passed validation, ids).
    Error { kind: ErrorKind, message: String },
    /// A rate, token or concurrency limit: 429 with the provider's headers,
    /// audited (counted together when repeated).
    Limited {
        exceeded: crate::limits::Exceeded,
        key_id: String,
    },
    /// A spend budget cannot cover the request's worst case: 429, audited.
    OverBudget {
        exceeded: crate::budget::OverBudget,
        key_id: String,
    },
    /// A user's token was refused: audited under its issuer's name (never
    /// the token, nor a subject that was not verified).
    Token {
        error: crate::identity::TokenError,
        /// `issuer:<name>` when the token names a trusted issuer.
        actor: String,
    },
    /// A stage already built the answer (a blocked secret). Boxed: the common
    /// refusals stay small.
    Answered(Box<Response>),
}

/// A refused request in the audit log (repeated ones are counted together).
fn audit(gw: &Gateway, ctx: &RequestContext, actor: &str, reason: &'static str, status: u16) {
    gw.audit.refused(crate::audit::Refusal {
        actor: ctx.user.as_deref().unwrap_or(actor),
        reason,
        action: "request.refused",
        source: ctx.peer.ip(),
        target: &ctx.target,
        request_id: &ctx.rid,
        status,
    });
}

impl Refusal {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Refusal {
        Refusal::Error {
            kind,
            message: message.into(),
        }
    }

    /// The limit counters or the budget ledger cannot be reached: 503, and the
    /// cause in the log (fail closed: nothing is served unchecked).
    pub fn counters_unavailable(why: &str) -> Refusal {
        tracing::error!("cannot reach the limit counters: {why}; refusing requests that need them");
        Refusal::error(
            ErrorKind::Unavailable,
            "Rate-limit and budget counters unreachable; refusing unchecked requests (retry shortly)",
        )
    }

    /// A refused token, audited under the issuer it names.
    pub fn token(gw: &Gateway, error: crate::identity::TokenError, token: &str) -> Refusal {
        Refusal::Token {
            error,
            actor: gw.identities.refused_actor(token),
        }
    }

    pub fn denied(denial: Denial, key_id: Option<&str>) -> Refusal {
        Refusal::Denied {
            denial,
            key_id: key_id.map(str::to_string),
        }
    }

    /// The response for this refusal, in the format of the request's family.
    pub fn respond(self, gw: &Gateway, ctx: &RequestContext) -> Response {
        match self {
            Refusal::Denied { denial, key_id } => {
                if matches!(
                    denial.code(),
                    "missing_key"
                        | "invalid_key"
                        | "revoked"
                        | "expired"
                        | "rotated_out"
                        | "canary"
                ) {
                    gw.watch
                        .auth_failed(ctx.peer.ip(), denial.code(), key_id.as_deref());
                }
                audit(
                    gw,
                    ctx,
                    key_id.as_deref().unwrap_or("anonymous"),
                    denial.code(),
                    denial.kind().status().as_u16(),
                );
                api::error_response(ctx.family, denial.kind(), &denial.message(), &ctx.rid)
            }
            Refusal::Limited { exceeded, key_id } => {
                audit(gw, ctx, &key_id, "rate_limited", 429);
                use crate::limits::LimitKind;
                let limit = match exceeded.kind {
                    LimitKind::Requests => "requests",
                    LimitKind::Tokens => "tokens",
                    LimitKind::Concurrency => "concurrency",
                };
                gw.metrics.refused(limit, scope_kind(&exceeded.scope));
                rate_limited_response(ctx.family, &exceeded, &ctx.rid)
            }
            Refusal::OverBudget { exceeded, key_id } => {
                audit(gw, ctx, &key_id, "over_budget", 429);
                gw.metrics.refused("budget", scope_kind(&exceeded.scope));
                let e = &exceeded;
                let message = format!(
                    "The {} spend budget of this {} ({}) cannot cover this request ({} committed); it resets in {} s",
                    e.period,
                    e.scope,
                    crate::prices::dollars(e.budget),
                    crate::prices::dollars(e.committed),
                    (e.resets_in_ms + 999) / 1000
                );
                let mut resp = api::error_response(
                    ctx.family,
                    api::ErrorKind::BudgetExhausted,
                    &message,
                    &ctx.rid,
                );
                if let Ok(v) =
                    axum::http::HeaderValue::from_str(&((e.resets_in_ms + 999) / 1000).to_string())
                {
                    resp.headers_mut().insert("retry-after", v);
                }
                resp
            }
            Refusal::Token { error, actor } => {
                let kind = error.kind();
                if kind == ErrorKind::Authentication {
                    gw.watch.auth_failed(ctx.peer.ip(), error.code(), None);
                }
                audit(gw, ctx, &actor, error.code(), kind.status().as_u16());
                api::error_response(ctx.family, kind, &error.message(), &ctx.rid)
            }
            Refusal::Error { kind, message } => {
                api::error_response(ctx.family, kind, &message, &ctx.rid)
            }
            Refusal::Answered(resp) => *resp,
        }
    }
}

/// `key`, `owner` or `environment`: the kind of a limit's scope label, for
/// metrics (the names themselves stay out of labels).
fn scope_kind(scope: &str) -> &'static str {
    if scope.starts_with("owner") {
        "owner"
    } else if scope.starts_with("environment") {
        "environment"
    } else {
        "key"
    }
}

/// A 429 for an exceeded limit, in the family's format, with `Retry-After` (and
/// `retry-after-ms`) and the family's rate-limit headers, so that the official
/// SDKs wait and retry by themselves.
fn rate_limited_response(
    family: Family,
    e: &crate::limits::Exceeded,
    request_id: &str,
) -> Response {
    use crate::limits::LimitKind;
    let what = match e.kind {
        LimitKind::Requests => format!("{} requests per minute", e.limit),
        LimitKind::Tokens => format!("{} tokens per minute", e.limit),
        LimitKind::Concurrency => format!("{} requests at once", e.limit),
    };
    let message = format!(
        "Rate limit reached for this {} ({what}); retry after {} ms",
        e.scope, e.retry_after_ms
    );
    let mut resp = api::error_response(family, ErrorKind::RateLimited, &message, request_id);
    let unit = if e.kind == LimitKind::Tokens {
        "tokens"
    } else {
        "requests"
    };
    let secs = (e.retry_after_ms + 999) / 1000;
    let mut headers = vec![
        ("retry-after".to_string(), secs.to_string()),
        ("retry-after-ms".to_string(), e.retry_after_ms.to_string()),
    ];
    headers.extend(
        family
            .adapter()
            .rate_limit_headers(unit, e.limit, e.retry_after_ms),
    );
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}
