//! Stage 1, classify: which endpoint (and so which provider family) a request is
//! for, from its method, path and headers; nothing is read from the body yet.

use super::{Refusal, RequestContext};
use crate::api::{self, Endpoint, ErrorKind};
use axum::extract::Request;

/// The endpoint, or the refusal (414 for an overlong target, 404 for a path the
/// gateway does not serve). Sets the family the answer is phrased in.
pub fn endpoint(req: &Request, ctx: &mut RequestContext) -> Result<Endpoint, Refusal> {
    let path = req.uri().path();
    ctx.family = api::guess_family(path, req.headers());
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > api::MAX_TARGET_LEN {
        return Err(Refusal::error(
            ErrorKind::UriTooLong,
            format!(
                "Request path and query longer than {} bytes",
                api::MAX_TARGET_LEN
            ),
        ));
    }
    let endpoint = api::classify(req.method(), path, req.headers())
        .ok_or_else(|| Refusal::error(ErrorKind::NotFound, "Unknown endpoint"))?;
    ctx.family = endpoint.family();
    Ok(endpoint)
}
