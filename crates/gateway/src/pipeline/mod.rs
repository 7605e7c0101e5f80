//! The request path as typed stages, each in its own module:
//!
//! 1. [`classify`]: which endpoint and provider family (method, path, headers);
//! 2. [`authenticate`]: the Keyward key, checked against the live directory;
//! 3. [`parse`]: the body read once, bounded, and the model it is for;
//! 4. [`authorize`]: the key's scope, the provider that serves the model, the
//!    credential for the key's environment, the redaction policy;
//! 5. [`admit`]: rate, token and concurrency limits of the key, its owner and
//!    its environment;
//! 6. screen ([`crate::screen`]): secrets in the request, by policy;
//! 7. [`budget`]: the worst case reserved against every spend budget;
//! 8. [`upstream`]: the call with the real credential, and the answer;
//! 9. [`taps`]: the response body watched (metering, echo scrubbing and
//!    redaction are attached in `upstream`; the key re-checked while a stream is
//!    open).
//!
//! Model lists and lookups are answered between 2 and 3 ([`models`]). Each stage
//! returns a [`Refusal`] to stop; [`Refusal::respond`] is the one place that turns
//! it into the provider's error format (and audits a key's refusal).

pub mod admit;
pub mod authenticate;
pub mod authorize;
pub mod budget;
pub mod classify;
pub mod models;
pub mod parse;
pub mod refusal;
pub mod taps;
pub mod upstream;

pub use refusal::Refusal;

use crate::api::{self, Family};
use crate::context::{request_id, Gateway};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::response::Response;
use keyward_vault::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the stages learn about a request, for its answer and its access-log line
/// (never a secret).
pub struct RequestContext {
    pub rid: String,
    /// The path, cut and redacted for logs and audit entries.
    pub target: String,
    pub peer: SocketAddr,
    /// The family errors are phrased in: guessed from the path until classified.
    pub family: Family,
    pub key_id: Option<String>,
    /// `issuer:subject` when a user's token authenticated the request.
    pub user: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
}

/// The gateway's handler for every client request.
pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::tls::PeerAddr(peer)): ConnectInfo<crate::tls::PeerAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let peer = std::net::SocketAddr::new(
        crate::forwarded::client_address(peer.ip(), req.headers(), &gw.trusted_proxies),
        peer.port(),
    );
    let mut ctx = RequestContext {
        rid: request_id(),
        target: crate::audit::safe_target(req.uri().path()),
        peer,
        family: Family::OpenAi,
        key_id: None,
        user: None,
        provider: None,
        model: None,
    };
    let resp = match run(&gw, &mut ctx, req).await {
        Ok(resp) => resp,
        Err(refusal) => refusal.respond(&gw, &ctx),
    };
    let elapsed = started.elapsed();
    gw.metrics.request(&crate::metrics::Answered {
        provider: ctx.provider.as_deref(),
        model: ctx.model.as_deref(),
        key_id: ctx.key_id.as_deref(),
        status: resp.status().as_u16(),
        elapsed,
        upstream: resp
            .extensions()
            .get::<upstream::UpstreamTime>()
            .map(|t| t.0),
    });
    tracing::info!(
        request_id = %ctx.rid, %method, path = %ctx.target, status = resp.status().as_u16(),
        key_id = ctx.key_id.as_deref().unwrap_or("-"), provider = ctx.provider.as_deref().unwrap_or("-"),
        model = ctx.model.as_deref().unwrap_or("-"), ms = elapsed.as_millis() as u64,
        "request"
    );
    with_request_id(resp, &ctx.rid)
}

/// The stages in order.
async fn run(
    gw: &Arc<Gateway>,
    ctx: &mut RequestContext,
    req: Request,
) -> Result<Response, Refusal> {
    let endpoint = classify::endpoint(&req, ctx)?;
    let caller = authenticate::caller(gw, ctx, req.headers(), req.uri().query()).await?;
    authorize::endpoint(&caller, &endpoint)?;
    if let Some(resp) = models::answer(gw, &endpoint, &caller.entry, &ctx.rid) {
        return Ok(resp);
    }
    let alt = authenticate::query_param(req.uri().query(), "alt").map(str::to_string);
    let headers = req.headers().clone();
    let parsed = parse::request(&endpoint, req.into_body(), gw.max_body).await?;
    ctx.model = Some(parsed.model.clone());
    if caller.user.is_none() {
        gw.watch
            .model(&caller.entry.record.id, &parsed.model, &ctx.rid);
    }
    let route = authorize::route(gw, ctx, &caller, &endpoint, &parsed.model)?;
    let scopes = admit::scopes(gw, &caller);
    let admitted = admit::request(gw, &caller, &scopes).await?;
    let screen = crate::screen::Screen {
        gw: gw.clone(),
        key_id: caller.entry.record.id.clone(),
        request_id: ctx.rid.clone(),
        path: ctx.target.clone(),
        family: ctx.family,
    };
    // Screened before the budget: a blocked request reserves nothing, and the
    // worst case is priced on the body that is sent.
    let screened = screen
        .inbound(route.policy.inbound, parsed.body)
        .await
        .map_err(|r| Refusal::Answered(Box::new(r)))?;
    let reserved = budget::reserve(
        gw,
        &caller,
        &scopes,
        &endpoint,
        route.provider.config.kind,
        &parsed.model,
        screened,
    )
    .await?;
    let body = reserved.body;
    let resp = upstream::call(upstream::UpstreamCall {
        screen: &screen,
        outbound: route.policy.outbound,
        provider: route.provider,
        endpoint: &endpoint,
        model: &parsed.model,
        alt: alt.as_deref(),
        client_headers: &headers,
        body,
        credential: route.credential.expose_secret(),
        client_key: &caller.key,
        client_key_hash: &caller.key_hash,
        rid: &ctx.rid,
        meter: crate::meter::Meter::new(
            gw.usage.clone(),
            endpoint.family(),
            crate::usage::UsageRecord {
                at_ms: crate::time::now_ms(),
                request_id: ctx.rid.clone(),
                key_id: caller.entry.record.id.clone(),
                environment: caller.entry.record.environment.clone(),
                provider: route.provider.config.name.clone(),
                model: parsed.model.clone(),
                endpoint: endpoint.scope_name().to_string(),
                status: 0,
                usage: Default::default(),
                cost_pico: None,
                complete: false,
                subject: caller.user.as_ref().map(|u| u.id.clone()),
                owner: caller.entry.record.owner.clone(),
            },
            gw.prices.lookup(&parsed.model).map(|e| e.price),
        )
        .with_limits(gw.limiter.clone(), admitted)
        .with_budget(reserved.reservation),
    })
    .await;
    let mut resp = resp;
    if let Some(n) = reserved.max_tokens_set {
        // The request named no output bound: say which one the budget allowed.
        resp.headers_mut()
            .insert("x-keyward-max-tokens", HeaderValue::from(n));
    }
    // A body already whole cannot outlive a revocation; a streamed one can.
    let streamed = http_body::Body::size_hint(resp.body()).exact().is_none();
    // A user's token is not in the key directory: its stream ends with the answer.
    Ok(if streamed && caller.user.is_none() {
        let (live, hash, source) = (gw.live.clone(), caller.key_hash, ctx.peer.ip());
        resp.map(|b| taps::until_unusable(b, live, hash, source))
    } else {
        resp
    })
}

/// Adds Keyward's request id as `x-keyward-request-id`, and as `x-request-id`
/// when the provider sent none (the gateway answered itself).
fn with_request_id(mut resp: Response, rid: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        let h = resp.headers_mut();
        if !h.contains_key("x-request-id") {
            h.insert("x-request-id", v.clone());
        }
        h.insert(api::KEYWARD_REQUEST_ID, v);
    }
    resp
}
