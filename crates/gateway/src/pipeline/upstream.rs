//! Stage 6, upstream: the call to the provider with the real credential, and the
//! provider's answer turned into the client's (the body taps of stage 7 are
//! attached here: echo scrubbing, redaction, and the key watch in [`super::taps`]).

use crate::api::{self, Endpoint, ErrorKind};
use crate::provider::Provider;
use crate::upstream_client::{CallError, Chunk};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use keyward_detect::Detector;
use std::time::Duration;

/// Request headers passed to providers; everything else (client credentials,
/// cookies, forwarding headers, Host) is dropped.
const FORWARD_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "user-agent",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
];

/// Response headers passed back to clients.
const FORWARD_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    // The provider's own request ids (OpenAI, Anthropic), which SDKs expose and
    // support desks ask for; Keyward's is in `x-keyward-request-id`.
    "x-request-id",
    "request-id",
    "cache-control",
    "retry-after",
    "openai-processing-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
];

/// Provider error bodies are read whole (to scrub them) up to this size.
const MAX_ERROR_BODY: usize = 1 << 20;

/// One upstream call: everything [`call`] needs.
pub struct UpstreamCall<'a> {
    pub screen: &'a crate::screen::Screen,
    /// What to do with secrets in the response.
    pub outbound: crate::redact::Action,
    pub provider: &'a Provider,
    pub endpoint: &'a Endpoint,
    pub model: &'a str,
    /// Gemini's `alt` query value, passed on when it is one the API knows.
    pub alt: Option<&'a str>,
    pub client_headers: &'a HeaderMap,
    pub body: bytes::Bytes,
    /// The provider credential, injected the provider's way.
    pub credential: &'a str,
    /// The client's Keyward key: scrubbed, like the credential, from the answer.
    pub client_key: &'a str,
    /// Its keyed hash (with the credential's, the scrubbers' cache id).
    pub client_key_hash: &'a str,
    pub rid: &'a str,
    /// Records the request's usage once the answer is known (or abandoned).
    pub meter: crate::meter::Meter,
}

/// Calls the provider with the real credential and turns its answer into the
/// client's: allowed headers only (screened), the body screened whole or as it
/// streams, provider errors read whole and scrubbed, transport failures as 502 or
/// 504 in the family's format.
pub async fn call(c: UpstreamCall<'_>) -> Response {
    let UpstreamCall {
        screen,
        outbound,
        provider,
        endpoint,
        model,
        alt,
        client_headers,
        body,
        credential: secret,
        client_key,
        client_key_hash,
        rid,
        mut meter,
    } = c;
    let gw = &screen.gw;
    let family = endpoint.family();
    let url = provider.url(endpoint, model, alt);
    let mut headers = HeaderMap::new();
    for name in FORWARD_REQUEST_HEADERS {
        if let Some(v) = client_headers.get(*name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    let Some((hn, hv)) = provider.credential_header(secret) else {
        return api::error_response(
            family,
            ErrorKind::Unavailable,
            "The provider credential for this route is not usable",
            rid,
        );
    };
    headers.insert(hn, hv);
    // A compressed answer could not be screened: ask for none (and refuse one below).
    headers.insert(
        axum::http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // OpenAI chat streams report usage only when asked: ask, and take the extra
    // chunk out again below.
    let (body, strip_usage_chunk) = if family
        .adapter()
        .asks_for_stream_usage(endpoint, provider.config.kind)
    {
        crate::offload::by_size(body.len(), move || crate::meter::ask_for_stream_usage(body)).await
    } else {
        (body, false)
    };
    let echo = gw.echoes.scrubber(
        &format!(
            "{client_key_hash}/{}",
            gw.hash_key.hash_hex(secret.as_bytes())
        ),
        &[secret, client_key],
    );
    let timeout = Duration::from_secs(provider.config.timeout_secs.unwrap_or(600));
    let sent = std::time::Instant::now();
    let upstream = gw.client.post(&url, headers, body, timeout).await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            let kind = if e == CallError::Timeout {
                ErrorKind::Timeout
            } else {
                ErrorKind::Upstream
            };
            tracing::warn!(request_id = %rid, provider = provider.config.name.as_str(), "upstream call failed: {}", describe(e, &url));
            let error = if kind == ErrorKind::Timeout {
                "timeout"
            } else {
                "unreachable"
            };
            gw.metrics.upstream_error(&provider.config.name, error);
            gw.metrics.upstream_answered(&provider.config.name, false);
            meter.set_status(kind.status().as_u16());
            meter.finish(true);
            return api::error_response(family, kind, "The provider could not be reached", rid);
        }
    };
    let upstream_time = UpstreamTime(sent.elapsed());
    let status = upstream.status();
    meter.set_status(status.as_u16());
    gw.metrics
        .upstream_answered(&provider.config.name, !status.is_server_error());
    if status.is_client_error() || status.is_server_error() {
        let class = if status.is_server_error() {
            "5xx"
        } else {
            "4xx"
        };
        gw.metrics.upstream_error(&provider.config.name, class);
    }
    let encoded = upstream
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        tracing::warn!(request_id = %rid, provider = provider.config.name.as_str(),
            "the provider sent a compressed body although asked for none: not forwarded");
        meter.finish(true);
        return api::error_response(
            family,
            ErrorKind::Upstream,
            "The provider sent a compressed response, which the gateway cannot screen",
            rid,
        );
    }
    let mut out_headers = HeaderMap::new();
    for name in FORWARD_RESPONSE_HEADERS {
        if let Some(v) = upstream.headers().get(*name) {
            // Headers are screened like bodies: a provider may echo its key in any.
            let value = String::from_utf8_lossy(&echo.scrub(v.as_bytes())).into_owned();
            let value = gw.detector.redact(&value);
            if let Ok(v) = HeaderValue::from_str(&value) {
                out_headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
    if status.is_success() {
        use crate::redact::Action;
        let is_sse = upstream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let stream = without_echoes(upstream.into_body(), echo.stream());
        let body = if is_sse {
            let stream = crate::meter::sse(stream, meter, strip_usage_chunk);
            if outbound == Action::Off {
                Body::from_stream(stream)
            } else {
                screen.clone().outbound_stream(outbound, stream)
            }
        } else if outbound == Action::Off {
            Body::from_stream(crate::meter::whole(stream, meter))
        } else {
            match screen.outbound_whole(outbound, stream).await {
                Ok(b) => {
                    let (family, read) = (meter.family(), b.clone());
                    let usage = crate::offload::by_size(b.len(), move || {
                        crate::meter::usage_of_body(family, &read)
                    })
                    .await;
                    meter.add_usage(usage);
                    meter.finish(true);
                    Body::from(b)
                }
                Err(resp) => {
                    meter.finish(true);
                    return resp;
                }
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = out_headers;
        resp.extensions_mut().insert(upstream_time);
        return resp;
    }
    // Provider errors are read whole and scrubbed: some echo the key they received.
    let mut buf = Vec::new();
    let mut stream = upstream.into_body();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if buf.len() + c.len() <= MAX_ERROR_BODY => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    let text = scrub(
        gw.detector,
        &String::from_utf8_lossy(&echo.scrub(&buf)),
        &[secret, client_key],
    );
    meter.finish(true);
    let mut resp = (status, text).into_response();
    *resp.headers_mut() = out_headers;
    resp.extensions_mut().insert(upstream_time);
    resp
}

/// How long the provider took to answer a request's headers (a response
/// extension, for the gateway-added latency metric).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub Duration);

/// `upstream` with every form of the request's credentials replaced as it streams
/// (see [`crate::echo`]), whatever the redaction policy.
fn without_echoes<S>(
    upstream: S,
    echo: crate::echo::EchoStream,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Chunk> + Send>>
where
    S: futures_util::Stream<Item = Chunk> + Send + Unpin + 'static,
{
    Box::pin(futures_util::stream::unfold(
        (upstream, echo, false),
        |(mut upstream, mut echo, done)| async move {
            if done {
                return None;
            }
            loop {
                match upstream.next().await {
                    Some(Ok(piece)) => {
                        let out = echo.push(&piece);
                        if !out.is_empty() {
                            return Some((Ok(bytes::Bytes::from(out)), (upstream, echo, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (upstream, echo, true))),
                    None => {
                        let rest = echo.finish();
                        return (!rest.is_empty())
                            .then(|| (Ok(bytes::Bytes::from(rest)), (upstream, echo, true)));
                    }
                }
            }
        },
    ))
}

/// Removes known secrets and anything the detector recognises.
pub fn scrub(detector: &Detector, text: &str, secrets: &[&str]) -> String {
    let mut t = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        t = t.replace(*s, "[REDACTED]");
        // Providers often echo a key shortened (`sk-ab***xyz`): drop long fragments too.
        if s.len() >= 24 {
            let head = &s[..12];
            t = t.replace(head, "[REDACTED]");
        }
    }
    detector.redact(&t).into_owned()
}

/// A failed call, with the URL's scheme, host and path but not its query or
/// anything the provider sent.
fn describe(e: CallError, url: &str) -> String {
    let what = e.what();
    match url.parse::<axum::http::Uri>() {
        Ok(u) => format!(
            "{what} ({}://{}{})",
            u.scheme_str().unwrap_or("?"),
            u.host().unwrap_or("?"),
            u.path()
        ),
        Err(_) => what.to_string(),
    }
}
