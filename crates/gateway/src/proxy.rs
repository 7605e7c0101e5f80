//! The request path: authenticate, authorize, route, call upstream with the real
//! credential, stream the answer back.

use crate::api::{self, Endpoint, ErrorKind, Family};
use crate::config::{glob_match, ProviderConfig, ProviderKind};
use crate::keys::Denial;
use crate::state::{now, Live};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_detect::{checksum, Detector};
use keyward_vault::{ExposeSecret, HashKey};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A configured provider, ready to call.
pub struct Provider {
    pub config: ProviderConfig,
    base: String,
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Provider {
        let base = config.base_url.trim_end_matches('/').to_string();
        Provider { config, base }
    }

    fn serves(&self, endpoint: &Endpoint, model: &str) -> bool {
        let family_ok = match endpoint {
            Endpoint::AzurePost { .. } => self.config.kind == ProviderKind::AzureOpenai,
            e => self.config.kind.family() == e.family(),
        };
        family_ok && self.config.models.iter().any(|g| glob_match(g, model))
    }

    /// Upstream URL: only configuration and validated names go into it.
    fn url(&self, endpoint: &Endpoint, model: &str, alt: Option<&str>) -> String {
        match (endpoint, self.config.kind) {
            (
                Endpoint::OpenAiPost { suffix } | Endpoint::AzurePost { suffix, .. },
                ProviderKind::AzureOpenai,
            ) => format!(
                "{}/deployments/{model}{suffix}?api-version={}",
                self.base,
                self.config.api_version.as_deref().unwrap_or_default()
            ),
            (Endpoint::OpenAiPost { suffix } | Endpoint::AzurePost { suffix, .. }, _) => {
                format!("{}{suffix}", self.base)
            }
            (Endpoint::AnthropicPost { suffix }, _) => format!("{}/v1{suffix}", self.base),
            (
                Endpoint::GeminiPost {
                    version, method, ..
                },
                _,
            ) => {
                let mut u = format!("{}/{version}/models/{model}:{method}", self.base);
                if let Some(a) = alt.filter(|a| matches!(*a, "sse" | "json" | "proto")) {
                    u.push_str("?alt=");
                    u.push_str(a);
                }
                u
            }
            _ => self.base.clone(),
        }
    }

    /// The header that carries the credential, the provider's way.
    fn credential_header(&self, secret: &str) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = match self.config.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                ("authorization", format!("Bearer {secret}"))
            }
            ProviderKind::AzureOpenai => ("api-key", secret.to_string()),
            ProviderKind::Anthropic => ("x-api-key", secret.to_string()),
            ProviderKind::Gemini => ("x-goog-api-key", secret.to_string()),
        };
        let mut v = HeaderValue::from_str(&value).ok()?;
        v.set_sensitive(true);
        Some((HeaderName::from_static(name), v))
    }
}

/// Shared state of the request path.
pub struct Gateway {
    pub live: Arc<Live>,
    /// For admin API writes.
    pub backend: crate::state::Backend,
    /// Refused requests and admin reads go to the audit log through here.
    pub audit: crate::audit::Sink,
    pub alerts: crate::alerts::Alerter,
    pub hash_key: HashKey,
    pub providers: Vec<Provider>,
    pub client: reqwest::Client,
    pub max_body: usize,
    pub detector: &'static Detector,
    /// Permits for screening large bodies on the blocking pool (one per core).
    pub screening: Arc<tokio::sync::Semaphore>,
    /// The server's `[redaction]` policy.
    pub redaction: crate::redact::PolicyConfig,
    /// Secrets found in traffic since start, per key and rule.
    pub redactions: crate::redact::Counters,
    /// How hints in the log name this server's config.
    pub commands: crate::config::CommandHint,
    /// When each key was last used, written to the store in batches.
    pub last_use: Arc<crate::last_use::LastUse>,
}

/// A request id: unique, unguessable, safe to show.
pub(crate) fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    // A random per-process prefix and a counter: unique across replicas and
    // restarts, and no system call on the request path.
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| keyward_vault::random_base62(10));
    format!(
        "req_{prefix}{:010x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The client key from wherever its SDK put it.
/// Every credential the request presents, in the order the key is taken from:
/// `Authorization` (bearer or bare), `x-api-key`, `x-goog-api-key`, `api-key`, then
/// `?key=`. The first is the request's key; all of them are checked for canaries.
fn client_keys(headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
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

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// Gemini `batchEmbedContents`: each request names its model again.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    requests: Vec<BatchItem<'a>>,
}

#[derive(Deserialize)]
struct BatchItem<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// What one request did, for the access log (no secrets).
struct Outcome<'a> {
    key_id: Option<&'a str>,
    provider: Option<&'a str>,
}

pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::tls::PeerAddr(peer)): ConnectInfo<crate::tls::PeerAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let rid = request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut outcome = Outcome {
        key_id: None,
        provider: None,
    };
    let snapshot;
    let target = crate::audit::safe_target(&path);
    let resp = 'done: {
        if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > api::MAX_TARGET_LEN {
            let fam = api::guess_family(&path, req.headers());
            break 'done api::error_response(
                fam,
                ErrorKind::UriTooLong,
                &format!(
                    "Request path and query longer than {} bytes",
                    api::MAX_TARGET_LEN
                ),
                &rid,
            );
        }
        let Some(endpoint) = api::classify(&method, &path, req.headers()) else {
            let fam = api::guess_family(&path, req.headers());
            break 'done api::error_response(fam, ErrorKind::NotFound, "Unknown endpoint", &rid);
        };
        let family = endpoint.family();
        let deny = |d: Denial, key_id: Option<&str>| {
            gw.audit.refused(crate::audit::Refusal {
                actor: key_id.unwrap_or("anonymous"),
                reason: d.code(),
                action: "request.refused",
                source: peer.ip(),
                target: &target,
                request_id: &rid,
                status: d.kind().status().as_u16(),
            });
            api::error_response(family, d.kind(), &d.message(), &rid)
        };
        if !gw.live.fresh() {
            break 'done api::error_response(
                family,
                ErrorKind::Unavailable,
                "Key store unreachable; refusing unchecked requests",
                &rid,
            );
        }
        let presented = client_keys(req.headers(), req.uri().query());
        let Some(key) = presented.first() else {
            break 'done deny(Denial::MissingKey, None);
        };
        snapshot = gw.live.snapshot.load_full();
        // A canary among any of the presented credentials gives the caller away,
        // whichever key the request would be served with.
        let canary = presented
            .iter()
            .filter(|k| checksum::keyward_key_env(k.as_bytes()).is_some())
            .filter_map(|k| snapshot.keys.get(&gw.hash_key.hash_hex(k.as_bytes())))
            .find(|found| found.entry.record.canary);
        if let Some(found) = canary {
            let record = &found.entry.record;
            let ua = req
                .headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            gw.alerts.send(serde_json::json!({
                "kind": "canary_key_used", "severity": "critical", "key_id": record.id,
                "key_name": record.name, "source": peer.ip().to_string(), "user_agent": ua,
                "path": target, "at": now(), "request_id": rid,
            }));
            break 'done deny(Denial::Canary, Some(&record.id));
        }
        if checksum::keyward_key_env(key.as_bytes()).is_none() {
            break 'done deny(Denial::InvalidKey, None);
        }
        let Some(found) = snapshot.keys.get(&gw.hash_key.hash_hex(key.as_bytes())) else {
            break 'done deny(Denial::InvalidKey, None);
        };
        let entry = &found.entry;
        if found.previous_until.is_some_and(|until| now() >= until) {
            break 'done deny(Denial::RotatedOut, Some(&entry.record.id));
        }
        outcome.key_id = Some(&entry.record.id);
        if let Err(d) = entry.check_usable(now(), peer.ip()) {
            break 'done deny(d, Some(&entry.record.id));
        }
        gw.last_use.mark(&entry.record.id, now());
        if !entry.allows_endpoint(endpoint.scope_name()) {
            break 'done deny(
                Denial::EndpointNotAllowed(endpoint.scope_name()),
                Some(&entry.record.id),
            );
        }
        if matches!(
            endpoint,
            Endpoint::OpenAiListModels | Endpoint::AnthropicListModels | Endpoint::GeminiListModels
        ) {
            break 'done list_models(&gw, &endpoint, entry);
        }
        if let Endpoint::GetModel { model, .. } = &endpoint {
            break 'done get_model(&gw, family, model, entry, &rid);
        }
        let alt = query_param(req.uri().query(), "alt").map(str::to_string);
        let headers = req.headers().clone();
        let body = match read_body(req.into_body(), gw.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                break 'done api::error_response(
                    family,
                    ErrorKind::TooLarge,
                    &format!("Request body larger than {} bytes", gw.max_body),
                    &rid,
                )
            }
            Err(BodyError::Broken) => {
                break 'done api::error_response(
                    family,
                    ErrorKind::InvalidRequest,
                    "The request body could not be read: it broke off, or arrived too slowly",
                    &rid,
                )
            }
        };
        // Every body is checked to be JSON, also where the model is in the path.
        let named = match serde_json::from_slice::<ModelField>(&body) {
            Ok(m) => m.model,
            Err(_) => {
                break 'done api::error_response(
                    family,
                    ErrorKind::InvalidRequest,
                    "Request body is not valid JSON",
                    &rid,
                )
            }
        };
        let model: String = match (&endpoint, named) {
            (Endpoint::GeminiPost { model, .. }, _) => {
                model.trim_start_matches("models/").to_string()
            }
            (Endpoint::AzurePost { deployment, .. }, _) => deployment.clone(),
            (_, Some(m)) if api::valid_name(&m) => m.into_owned(),
            (_, Some(_)) => {
                break 'done api::error_response(
                    family,
                    ErrorKind::InvalidRequest,
                    "Invalid model name",
                    &rid,
                )
            }
            (_, None) => {
                break 'done api::error_response(
                    family,
                    ErrorKind::InvalidRequest,
                    "The request names no `model`",
                    &rid,
                )
            }
        };
        // A batch is authorised by the model in its path: every item must name
        // that model, or the key's model scope could be stepped around.
        if matches!(&endpoint, Endpoint::GeminiPost { method, .. } if *method == "batchEmbedContents")
        {
            let path_model = format!("models/{model}");
            let Ok(b) = serde_json::from_slice::<BatchBody>(&body) else {
                break 'done api::error_response(
                    family,
                    ErrorKind::InvalidRequest,
                    "batchEmbedContents needs `requests`: a list of embedding requests",
                    &rid,
                );
            };
            if b.requests.iter().any(|i| {
                i.model
                    .as_deref()
                    .is_some_and(|m| m != path_model && m != model)
            }) {
                break 'done api::error_response(
                    family,
                    ErrorKind::InvalidRequest,
                    &format!(
                        "Every request in a batch must name the model in the path (`{path_model}`)"
                    ),
                    &rid,
                );
            }
        }
        if !entry.allows_model(&model) {
            break 'done deny(Denial::ModelNotAllowed(model), Some(&entry.record.id));
        }
        let Some(provider) = gw.providers.iter().find(|p| p.serves(&endpoint, &model)) else {
            break 'done api::error_response(
                family,
                ErrorKind::NotFound,
                &format!("No provider serves model `{model}` on this API"),
                &rid,
            );
        };
        outcome.provider = Some(&provider.config.name);
        if !entry.allows_provider(&provider.config.name) {
            break 'done deny(
                Denial::ProviderNotAllowed(provider.config.name.clone()),
                Some(&entry.record.id),
            );
        }
        let Some(cred_name) = provider
            .config
            .credential
            .for_env(&entry.record.environment)
        else {
            break 'done deny(
                Denial::NoCredentialForEnvironment(entry.record.environment.clone()),
                Some(&entry.record.id),
            );
        };
        let Some(secret) = snapshot.credential(cred_name) else {
            tracing::error!(request_id = %rid, credential = cred_name, "vault has no secret `{cred_name}`: add it with `{}`",
                gw.commands.command(&format!("vault put {cred_name} < key.txt")));
            break 'done api::error_response(
                family,
                ErrorKind::Unavailable,
                "The provider credential for this route is not configured",
                &rid,
            );
        };
        let policy = crate::redact::Policy::resolve(
            entry.redaction,
            provider.config.redaction,
            gw.redaction,
        );
        let screen = crate::screen::Screen {
            gw: gw.clone(),
            key_id: entry.record.id.clone(),
            request_id: rid.clone(),
            path: target.clone(),
            family,
        };
        let body = match screen.inbound(policy.inbound, body).await {
            Ok(b) => b,
            Err(resp) => break 'done resp,
        };
        let resp = forward(
            &screen,
            policy.outbound,
            provider,
            &endpoint,
            &model,
            alt.as_deref(),
            &headers,
            body,
            secret.expose_secret(),
            key,
            &rid,
        )
        .await;
        // A body already whole cannot outlive a revocation; a streamed one can.
        let streamed = http_body::Body::size_hint(resp.body()).exact().is_none();
        let resp = if streamed {
            let key_hash = gw.hash_key.hash_hex(key.as_bytes());
            resp.map(|b| until_unusable(b, gw.live.clone(), key_hash, peer.ip()))
        } else {
            resp
        };
        tracing::info!(
            request_id = %rid, %method, path = %target, status = resp.status().as_u16(), key_id = entry.record.id.as_str(),
            provider = provider.config.name.as_str(), model = model.as_str(), ms = started.elapsed().as_millis() as u64,
            "request"
        );
        return with_request_id(resp, &rid);
    };
    tracing::info!(
        request_id = %rid, %method, path = %target, status = resp.status().as_u16(), key_id = outcome.key_id.unwrap_or("-"),
        provider = outcome.provider.unwrap_or("-"), ms = started.elapsed().as_millis() as u64,
        "request"
    );
    with_request_id(resp, &rid)
}

enum BodyError {
    TooLarge,
    Broken,
}

/// After the limit, this much more is read and discarded so that the client, still
/// sending, receives the 413 rather than a reset connection.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a request body of at most `max` bytes.
async fn read_body(body: Body, max: usize) -> Result<bytes::Bytes, BodyError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        total += chunk.len();
        if total > max {
            if total > max + DRAIN_LIMIT {
                return Err(BodyError::TooLarge);
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if total > max {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
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

#[allow(clippy::too_many_arguments)]
async fn forward(
    screen: &crate::screen::Screen,
    outbound: crate::redact::Action,
    provider: &Provider,
    endpoint: &Endpoint,
    model: &str,
    alt: Option<&str>,
    client_headers: &HeaderMap,
    body: bytes::Bytes,
    secret: &str,
    client_key: &str,
    rid: &str,
) -> Response {
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
    let echo = crate::echo::EchoScrubber::new(&[secret, client_key]);
    let timeout = Duration::from_secs(provider.config.timeout_secs.unwrap_or(600));
    let upstream = gw
        .client
        .post(url)
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Upstream
            };
            tracing::warn!(request_id = %rid, provider = provider.config.name.as_str(), "upstream call failed: {}", describe(&e));
            return api::error_response(family, kind, "The provider could not be reached", rid);
        }
    };
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let encoded = upstream
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        tracing::warn!(request_id = %rid, provider = provider.config.name.as_str(),
            "the provider sent a compressed body although asked for none: not forwarded");
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
        let stream = without_echoes(upstream.bytes_stream(), echo.stream());
        let body = if outbound == Action::Off {
            Body::from_stream(stream)
        } else if is_sse {
            screen.clone().outbound_stream(outbound, stream)
        } else {
            match screen.outbound_whole(outbound, stream).await {
                Ok(b) => Body::from(b),
                Err(resp) => return resp,
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = out_headers;
        return resp;
    }
    // Provider errors are read whole and scrubbed: some echo the key they received.
    let mut buf = Vec::new();
    let mut stream = upstream.bytes_stream();
    use futures_util::StreamExt;
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
    let mut resp = (status, text).into_response();
    *resp.headers_mut() = out_headers;
    resp
}

/// How often an open response re-checks its key even without a store change
/// (expiry, a rotation grace window running out).
const USABLE_RECHECK: Duration = Duration::from_secs(1);

/// `body`, ended with an error as soon as the key it is served under stops being
/// usable: revoked, suspended, expired or rotated out. A revocation reaches open
/// streams with the snapshot that carries it (within [`crate::state::POLL_INTERVAL`]),
/// not when the stream ends by itself.
fn until_unusable(
    body: Body,
    live: Arc<crate::state::Live>,
    key_hash: String,
    source: std::net::IpAddr,
) -> Body {
    use futures_util::StreamExt;
    let usable = move |live: &crate::state::Live| {
        live.snapshot.load().keys.get(&key_hash).is_some_and(|m| {
            m.entry.check_usable(now(), source).is_ok()
                && m.previous_until.is_none_or(|until| now() < until)
        })
    };
    let changes = live.changes();
    let recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + USABLE_RECHECK, USABLE_RECHECK);
    let state = (body.into_data_stream(), live, changes, recheck, false);
    Body::from_stream(futures_util::stream::unfold(
        state,
        move |(mut data, live, mut changes, mut recheck, done)| {
            let usable = usable.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    tokio::select! {
                        piece = data.next() => {
                            return piece.map(|p| (p, (data, live, changes, recheck, false)));
                        }
                        changed = changes.changed() => {
                            if changed.is_err() {
                                // The follower is gone; the periodic check still runs.
                                changes = live.changes();
                            }
                        }
                        _ = recheck.tick() => {}
                    }
                    if !usable(&live) {
                        let cut: axum::Error = axum::Error::new(KeyNoLongerUsable);
                        return Some((Err(cut), (data, live, changes, recheck, true)));
                    }
                }
            }
        },
    ))
}

/// Why a response was cut off mid-stream.
#[derive(Debug)]
struct KeyNoLongerUsable;

impl std::fmt::Display for KeyNoLongerUsable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the key was revoked, suspended or expired during the response")
    }
}

impl std::error::Error for KeyNoLongerUsable {}

/// `upstream` with every form of the request's credentials replaced as it streams
/// (see [`crate::echo`]), whatever the redaction policy.
fn without_echoes<S>(
    upstream: S,
    echo: crate::echo::EchoStream,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
{
    use futures_util::StreamExt;
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

/// A transport error without the URL's query or anything the provider sent.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    match e.url() {
        Some(u) => format!(
            "{what} ({}://{}{})",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.path()
        ),
        None => what.to_string(),
    }
}

/// One model as the family's API describes it (the fields its SDKs require).
fn model_object(family: Family, model: &str, owner: &str) -> serde_json::Value {
    match family {
        Family::OpenAi => {
            serde_json::json!({"id": model, "object": "model", "created": 0, "owned_by": owner})
        }
        Family::Anthropic => serde_json::json!({
            "type": "model", "id": model, "display_name": model,
            "created_at": "1970-01-01T00:00:00Z",
        }),
        Family::Gemini => serde_json::json!({
            "name": format!("models/{model}"), "displayName": model,
            "supportedGenerationMethods": [
                "generateContent", "streamGenerateContent", "countTokens",
                "embedContent", "batchEmbedContents",
            ],
        }),
    }
}

fn json_ok(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Model lists are answered from configuration: the concrete models the key may
/// use, in the family's format. Models configured only by a glob (`gpt-4o*`) are
/// not listed, since the glob does not say which exist; `GET /models/{id}` and
/// calls still accept every name the glob matches.
fn list_models(gw: &Gateway, endpoint: &Endpoint, entry: &crate::keys::KeyEntry) -> Response {
    let family = endpoint.family();
    let mut models: Vec<(&str, &str)> = Vec::new();
    for p in &gw.providers {
        if p.config.kind.family() != family || !entry.allows_provider(&p.config.name) {
            continue;
        }
        for m in p
            .config
            .models
            .iter()
            .filter(|m| !m.contains('*') && entry.allows_model(m))
        {
            models.push((m, &p.config.name));
        }
    }
    let objects: Vec<_> = models
        .iter()
        .map(|(m, p)| model_object(family, m, p))
        .collect();
    json_ok(&match family {
        Family::OpenAi => serde_json::json!({"object": "list", "data": objects}),
        Family::Anthropic => serde_json::json!({
            "data": objects,
            "has_more": false,
            "first_id": models.first().map(|m| m.0),
            "last_id": models.last().map(|m| m.0),
        }),
        Family::Gemini => serde_json::json!({"models": objects}),
    })
}

/// `GET /models/{id}`: the model when a provider of this family serves it (by
/// name or glob) and the key may use it there; 404 in the family's format
/// otherwise.
fn get_model(
    gw: &Gateway,
    family: Family,
    model: &str,
    entry: &crate::keys::KeyEntry,
    rid: &str,
) -> Response {
    let model = model.trim_start_matches("models/");
    let owner = gw.providers.iter().find(|p| {
        p.config.kind.family() == family
            && entry.allows_provider(&p.config.name)
            && p.config.models.iter().any(|g| glob_match(g, model))
    });
    match owner {
        Some(p) if entry.allows_model(model) => {
            json_ok(&model_object(family, model, &p.config.name))
        }
        _ => api::error_response(
            family,
            ErrorKind::NotFound,
            &format!("The model `{model}` does not exist or this key may not use it"),
            rid,
        ),
    }
}
