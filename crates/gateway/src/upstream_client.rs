//! The client for provider calls: hyper's pooled client over rustls (the system's
//! roots, HTTP/2 or HTTP/1.1 by ALPN), and the answer's body as a stream that
//! fails once the call's deadline passes.
//!
//! Provider calls need none of a general-purpose client's per-request layers
//! (URL parsing and normalisation, redirect and retry policies, proxies): a call
//! is a POST to a URL the provider's adapter built. Those layers were about 7% of
//! the gateway's CPU per request, so the hot path goes to hyper directly; the
//! occasional calls (identity key sets, webhooks, alerts) keep `reqwest`.

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Method, Request, Response, Uri};
use hyper_rustls::ConfigBuilderExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTPS connector with a bound on the whole set-up of a connection: a
/// provider that accepts TCP but stalls its TLS handshake fails the call as a
/// connection failure, not only at the call's (much later) deadline.
#[derive(Clone)]
struct Bounded {
    inner: Https,
    timeout: Duration,
}

impl tower::Service<Uri> for Bounded {
    type Response = <Https as tower::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connecting, timeout) = (self.inner.call(uri), self.timeout);
        Box::pin(async move {
            tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| BoxError::from("setting up the connection timed out"))?
        })
    }
}

/// How long setting up a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept per provider host.
const POOL_MAX_IDLE_PER_HOST: usize = 256;

/// A pooled client for provider calls; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Client<Bounded, Full<Bytes>>,
}

/// Why a call failed before its answer's headers arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The deadline passed.
    Timeout,
    /// No connection could be made (refused, unresolvable, TLS failed).
    Connect,
    /// The request could not be built, or the connection broke.
    Failed,
}

impl CallError {
    /// Says what failed, for logs (no URL: the caller adds the parts it may show).
    pub fn what(self) -> &'static str {
        match self {
            CallError::Timeout => "timed out",
            CallError::Connect => "connection failed",
            CallError::Failed => "request failed",
        }
    }
}

/// An answer's body failed to arrive whole: it broke off, or its deadline passed.
#[derive(Debug)]
pub struct BodyError {
    pub timed_out: bool,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.timed_out {
            "the response body did not arrive before the deadline"
        } else {
            "the response body broke off"
        })
    }
}

impl std::error::Error for BodyError {}

/// One piece of an answer's body.
pub type Chunk = Result<Bytes, BodyError>;

impl UpstreamClient {
    /// A client trusting the system's root certificates.
    pub fn new() -> Result<UpstreamClient, String> {
        UpstreamClient::with_connect_timeout(CONNECT_TIMEOUT)
    }

    /// [`UpstreamClient::new`] with another bound on setting up a connection
    /// (TCP and TLS together).
    fn with_connect_timeout(connect_timeout: Duration) -> Result<UpstreamClient, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_native_roots()
        .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(Bounded {
                inner: connector,
                timeout: connect_timeout,
            });
        Ok(UpstreamClient { inner })
    }

    /// POSTs `body` to `url` with `headers`. The whole call, the answer's body
    /// included, must end within `timeout`: after it the body stream fails.
    pub async fn post(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<BodyStream>, CallError> {
        let uri: Uri = url.parse().map_err(|_| CallError::Failed)?;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let deadline = Instant::now() + timeout;
        let answer = tokio::time::timeout_at(deadline, self.inner.request(req))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Connect
                } else {
                    CallError::Failed
                }
            })?;
        Ok(answer.map(|body| BodyStream {
            body,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            ended: false,
        }))
    }
}

/// An answer's body as a stream of data chunks (trailers are dropped); it fails
/// with [`BodyError`] when the body breaks off or the call's deadline passes,
/// and ends after the first failure.
pub struct BodyStream {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
    ended: bool,
}

impl futures_util::Stream for BodyStream {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(_))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(BodyError { timed_out: false })));
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(BodyError { timed_out: true })));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that answers each connection with `answer` and then,
    /// when `hold` is set, keeps the connection open without sending more.
    async fn server(answer: &'static str, hold: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = s.write_all(answer.as_bytes()).await;
                    if hold {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                });
            }
        });
        format!("http://{addr}/v1/chat/completions")
    }

    async fn whole(mut body: BodyStream) -> (Vec<u8>, Option<BodyError>) {
        let mut out = Vec::new();
        while let Some(piece) = body.next().await {
            match piece {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn an_answer_arrives_whole_with_its_status_and_headers() {
        let url = server(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nx-request-id: up-1\r\ncontent-length: 11\r\n\r\n{\"ok\":true}",
            false,
        )
        .await;
        let client = UpstreamClient::new().unwrap();
        let answer = client
            .post(
                &url,
                HeaderMap::new(),
                Bytes::from_static(b"{}"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        assert_eq!(answer.headers()["x-request-id"], "up-1");
        let (body, error) = whole(answer.into_body()).await;
        assert_eq!(body, b"{\"ok\":true}");
        assert!(error.is_none());
    }

    #[tokio::test]
    async fn a_body_still_arriving_at_the_deadline_fails_as_timed_out() {
        let url = server(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n",
            true,
        )
        .await;
        let client = UpstreamClient::new().unwrap();
        let started = Instant::now();
        let answer = client
            .post(
                &url,
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        let (body, error) = whole(answer.into_body()).await;
        assert_eq!(body, b"data: ");
        assert!(error.expect("the deadline ends the body").timed_out);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn headers_that_never_come_time_out_and_a_closed_port_fails_to_connect() {
        let url = server("", true).await;
        let client = UpstreamClient::new().unwrap();
        let slow = client
            .post(
                &url,
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(slow.err(), Some(CallError::Timeout));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            drop(l);
            format!("http://127.0.0.1:{port}/v1/x")
        };
        let refused = client
            .post(
                &closed,
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(refused.err(), Some(CallError::Connect));
    }

    #[tokio::test]
    async fn a_tls_handshake_that_stalls_fails_to_connect_at_the_connect_bound() {
        // Accepts TCP and never answers the TLS client hello.
        let url = server("", true).await.replace("http://", "https://");
        let client = UpstreamClient::with_connect_timeout(Duration::from_millis(300)).unwrap();
        let started = Instant::now();
        let stalled = client
            .post(
                &url,
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(stalled.err(), Some(CallError::Connect));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_fails_as_broken() {
        let url = server(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":",
            false,
        )
        .await;
        let client = UpstreamClient::new().unwrap();
        let answer = client
            .post(&url, HeaderMap::new(), Bytes::new(), Duration::from_secs(5))
            .await
            .unwrap();
        let (_, error) = whole(answer.into_body()).await;
        assert!(!error.expect("a short body is an error").timed_out);
    }
}
