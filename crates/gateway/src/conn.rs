//! Client connections: how many the server holds, and how long a client may take.
//!
//! Every accepted connection holds a permit of a fixed pool ([`ConnLimits::max_connections`]);
//! when the pool is empty the server stops accepting, and new clients wait in the
//! kernel's backlog until a connection ends, so file descriptors are never exhausted
//! by clients alone (upstream calls and the store need their own). A connection is
//! closed when:
//! - its request header (HTTP/1) has not fully arrived `header_timeout` after the
//!   connection opened or the previous response was sent (slow headers, and idle
//!   keep-alive connections waiting for their next request);
//! - no request has started on it for `idle_timeout` (HTTP/2 included): it is shut
//!   down gracefully, so a response still streaming finishes first;
//! - a request body pauses for `body_idle_timeout`, or has not fully arrived
//!   `body_timeout` after the request started: the body read fails, the request is
//!   answered with an error and the connection is not reused.

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::tls::PeerAddr;

/// Bounds on client connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// File descriptors kept back from client connections for the store, upstream
/// connection pools, TLS material and logs.
const RESERVED_FDS: u64 = 64;

/// The largest number of client connections the process's open-file limit allows,
/// with room for one upstream connection per client request and [`RESERVED_FDS`].
/// Raises the soft limit to the hard one first, as most servers do.
pub fn connections_allowed_by_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 512;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let usable = soft.min(1 << 20).saturating_sub(RESERVED_FDS) / 2;
    usable.max(8) as usize
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then
/// lets open requests finish (at most 30 s).
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener<Addr = std::net::SocketAddr>,
    L::Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let max = limits
        .max_connections
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    // Flips to true when shutdown begins; every connection then winds down.
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let builder = builder.clone();
        let stop = stop_seen.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(io, addr, router, &builder, limits, stop).await;
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends: holding them all means none is open.
    let drained = tokio::time::timeout(Duration::from_secs(30), permits.acquire_many(max as u32));
    if drained.await.is_err() {
        tracing::warn!("requests still open 30 s after shutdown began: closing them");
    }
}

async fn serve_connection<I>(
    io: I,
    addr: std::net::SocketAddr,
    router: Router,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    limits: ConnLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let opened = Instant::now();
    // Milliseconds after `opened` at which the last request started.
    let last_request = Arc::new(AtomicU64::new(0));
    let seen = last_request.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let started = Instant::now();
        seen.store(
            started.duration_since(opened).as_millis() as u64,
            Ordering::Relaxed,
        );
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(PeerAddr(addr)));
        let body = Body::new(DeadlineBody::new(body, started, limits));
        router
            .clone()
            .oneshot(axum::extract::Request::from_parts(parts, body))
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle_until = |last: &AtomicU64| {
        opened + Duration::from_millis(last.load(Ordering::Relaxed)) + limits.idle_timeout
    };
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep_until(idle_until(&last_request)), if !closing => {
                if idle_until(&last_request) <= Instant::now() {
                    // Ends the connection once the response in flight, if any, is sent.
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The error a request body read returns when the client sends too slowly.
#[derive(Debug)]
pub struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl std::error::Error for BodyTooSlow {}

/// A request body that fails with [`BodyTooSlow`] when a frame takes longer than
/// `body_idle_timeout`, or the whole body longer than `body_timeout`.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: hyper::body::Incoming, started: Instant, limits: ConnLimits) -> DeadlineBody {
        let deadline = started + limits.body_timeout;
        DeadlineBody {
            inner,
            idle: limits.body_idle_timeout,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(
                (started + limits.body_idle_timeout).min(deadline),
            )),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = (Instant::now() + this.idle).min(this.deadline);
                this.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
