//! The one place a stopped request becomes a response: every stage returns a
//! [`Refusal`], and [`Refusal::respond`] audits it (when a key's standing or
//! scope refused it) and answers in the provider family's own error format.

use super::RequestContext;
use crate::api::{self, ErrorKind};
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
    /// A stage already built the answer (a blocked secret). Boxed: the common
    /// refusals stay small.
    Answered(Box<Response>),
}

impl Refusal {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Refusal {
        Refusal::Error {
            kind,
            message: message.into(),
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
                gw.audit.refused(crate::audit::Refusal {
                    actor: key_id.as_deref().unwrap_or("anonymous"),
                    reason: denial.code(),
                    action: "request.refused",
                    source: ctx.peer.ip(),
                    target: &ctx.target,
                    request_id: &ctx.rid,
                    status: denial.kind().status().as_u16(),
                });
                api::error_response(ctx.family, denial.kind(), &denial.message(), &ctx.rid)
            }
            Refusal::Limited { exceeded, key_id } => {
                gw.audit.refused(crate::audit::Refusal {
                    actor: &key_id,
                    reason: "rate_limited",
                    action: "request.refused",
                    source: ctx.peer.ip(),
                    target: &ctx.target,
                    request_id: &ctx.rid,
                    status: 429,
                });
                api::rate_limited_response(ctx.family, &exceeded, &ctx.rid)
            }
            Refusal::Error { kind, message } => {
                api::error_response(ctx.family, kind, &message, &ctx.rid)
            }
            Refusal::Answered(resp) => *resp,
        }
    }
}
