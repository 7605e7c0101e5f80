//! Keyward's LLM gateway (`keyward serve`).
//!
//! Clients call OpenAI, Anthropic and Gemini style APIs with scoped, expiring
//! Keyward keys; the gateway checks each key against an in-memory snapshot of the
//! store (refreshed within [`state::POLL_INTERVAL`] of any change, refusing all
//! requests when the store has been unreachable for [`state::STALE_AFTER`]), routes
//! by model to a configured provider, injects the real credential the provider's way
//! and streams the answer back. Upstream hosts come only from configuration,
//! redirects are never followed, and provider errors are scrubbed of credentials.

pub mod admin;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod budget;
pub mod cluster;
pub mod compress;
pub mod config;
pub mod conn;
pub mod console;
pub mod context;
pub mod cors;
pub mod echo;
pub mod forwarded;
pub mod identity;
pub mod keys;
pub mod last_use;
pub mod lease;
pub mod limits;
pub mod master_file;
pub mod meter;
pub mod metrics;
pub mod offload;
pub mod pipeline;
pub mod prices;
pub mod provider;
pub mod redact;
pub mod rekey;
pub mod schedule;
pub mod screen;
pub mod state;
pub mod tasks;
pub mod time;
pub mod tls;
pub mod token_exchange;
pub mod upstream_client;
pub mod usage;
pub mod usage_view;
pub mod usage_writer;
pub mod watch;
pub mod webhook;

use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
pub use state::{Backend, NewKey};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Cluster(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The upstream HTTP client: pooled, no redirects, no proxies from the
/// environment (they would see every credential), bounded connect time.
pub fn upstream_client() -> Result<reqwest::Client, ServeError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ServeError::Client(e.to_string()))
}

/// Builds the client router around a gateway; with `admin_api`, the admin API
/// (and the console, unless `[admin] console = false`) is served on it too
/// (when no admin listener is configured).
pub fn router(gw: Arc<context::Gateway>, admin_api: bool) -> Router {
    let mut app = probes(&gw).route("/v1/token", axum::routing::post(token_exchange::exchange));
    if admin_api {
        app = app.nest("/admin/v1", admin::router());
        if gw.console.enabled {
            app = app.nest("/console", console::router());
        }
    }
    app.fallback(pipeline::handle)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            cors::layer,
        ))
        .layer(compress::layer())
        .with_state(gw)
}

/// The admin listener's router: `/metrics`, the admin API, the console and
/// the probes.
pub fn admin_router(gw: Arc<context::Gateway>) -> Router {
    let mut app = probes(&gw)
        .route("/metrics", get(metrics_page))
        .nest("/admin/v1", admin::router());
    if gw.console.enabled {
        app = app.nest("/console", console::router());
    }
    app.fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                [("content-type", "application/json")],
                r#"{"error":"not found: this is the admin listener (/metrics, /admin/v1/..., /console)"}"#,
            )
        })
        .layer(compress::layer())
        .with_state(gw)
}

/// `GET /metrics`: every metric, with the store's state read at scrape time.
async fn metrics_page(
    axum::extract::State(gw): axum::extract::State<Arc<context::Gateway>>,
) -> impl axum::response::IntoResponse {
    gw.metrics
        .store(gw.live.fresh(), gw.live.snapshot.load().generation);
    (
        [("content-type", metrics::CONTENT_TYPE)],
        gw.metrics.encode(),
    )
}

/// `/healthz` (the process answers) and `/readyz` (the key directory is fresh).
fn probes(gw: &Arc<context::Gateway>) -> Router<Arc<context::Gateway>> {
    let ready = gw.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let fresh = ready.live.fresh();
                async move {
                    if fresh {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "store unreachable",
                        )
                    }
                }
            }),
        )
}

/// The limiter and the budget ledger the config asks for: in Redis with
/// `[cluster] redis_url`, else in this process.
async fn counters(
    config: &Config,
    store: &keyward_store::Store,
) -> Result<(Arc<dyn limits::Limiter>, Arc<dyn budget::BudgetLedger>), ServeError> {
    match &config.cluster.redis_url {
        Some(url) => {
            let redis = cluster::Redis::connect(url, &config.cluster.key_prefix)
                .await
                .map_err(ServeError::Cluster)?;
            tracing::info!(
                "limits and budgets are counted in Redis at {} (shared by every replica)",
                keyward_store::redact_url(url)
            );
            Ok((
                Arc::new(cluster::limiter::RedisLimiter::new(redis.clone())),
                Arc::new(cluster::ledger::RedisLedger::new(redis, store.clone())),
            ))
        }
        None => Ok((
            Arc::new(limits::LocalLimiter::new(Arc::new(limits::SystemClock))),
            Arc::new(
                budget::seeded(store)
                    .await
                    .map_err(state::StateError::from)?,
            ),
        )),
    }
}

/// Runs the gateway until `shutdown` resolves. `on_ready` is called with the bound
/// address once the listener accepts connections.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr, &Backend),
) -> Result<(), ServeError> {
    let (backend, _) = Backend::open(&config).await?;
    let live = Arc::new(state::Live::new(backend.load_snapshot().await?));
    let replica_id = live.replica_id.clone();
    backend
        .store
        .replica_heartbeat(&replica_id, live.snapshot.load().generation, time::now_ms())
        .await
        .map_err(state::StateError::from)?;
    {
        let (live, backend) = (live.clone(), backend.clone());
        tasks::supervise("store follower", move || {
            live.clone().follow(backend.clone())
        });
    }
    if backend.store.backend() == keyward_store::Backend::Postgres {
        let (live, store) = (live.clone(), backend.store.clone());
        tasks::supervise("store change notices", move || {
            live.clone().listen(store.clone())
        });
    }
    // Off the start-up path; a stream arriving first waits for it.
    tokio::task::spawn_blocking(|| keyward_detect::Detector::builtin().prepare_streaming());
    let usage_writer = usage_writer::UsageWriter::spawn(backend.store.clone());
    let (owner_limits, environment_limits) = config
        .owner_and_environment_limits()
        .map_err(|e| ServeError::State(state::StateError::Invalid(e)))?;
    let metrics = Arc::new(metrics::Metrics::following(live.change_lag.clone()));
    let alerter = alerts::Alerter::new(
        metrics.clone(),
        Some(backend.store.clone()),
        alerts::deliver::Delivery {
            webhook_url: config.alerts.webhook_url.clone(),
            signing_secret: config.alerts.signing_secret.clone(),
            slack_webhook: config.alerts.slack_webhook.clone(),
            live: Some(live.clone()),
            ..alerts::deliver::Delivery::log_only(upstream_client()?)
        },
        config.alerts.dedupe_ms(),
    );
    let (new_sources, sources_queue) = tokio::sync::mpsc::unbounded_channel();
    let identities = Arc::new(
        identity::Identities::new(&config.identity, &upstream_client()?)
            .map_err(|e| ServeError::State(state::StateError::Invalid(e)))?,
    );
    let directory = live.snapshot.load_full();
    let known = watch::Known {
        sources: backend
            .store
            .key_sources()
            .await
            .map_err(state::StateError::from)?,
        hours: backend
            .store
            .usage_hourly(time::now_ms() - watch::habits::BASELINE_HOURS * watch::habits::HOUR_MS)
            .await
            .map_err(state::StateError::from)?
            .into_iter()
            .flat_map(|(k, hour, requests, tokens, cost)| {
                let n = |v: i64| v.max(0) as u64;
                let past = watch::habits::PastHour {
                    hour,
                    requests: n(requests),
                    tokens: n(tokens),
                    spend_pico: n(cost),
                };
                // An owner's hours are the sum of its keys' (seeding adds).
                // A key's owner, or an identity rule's (its usage carries the
                // rule's id as the key id).
                let owner = directory
                    .keys
                    .by_id(&k)
                    .map(|e| e.record.owner.clone())
                    .unwrap_or_else(|| identities.rule_owner(&k));
                std::iter::once((k, past)).chain(owner.map(|o| (watch::owner_habits(&o), past)))
            })
            .collect(),
    };
    let mut detectors = watch::Watch::new(
        Arc::new(limits::SystemClock),
        Arc::new(alerter.clone()),
        watch::WatchSettings {
            warmup_ms: config.watch.warmup_ms(),
            failed_auth_burst: config.watch.failed_auth_burst,
        },
        known,
        new_sources,
    );
    if !config.watch.enabled {
        tracing::info!("anomaly detectors are off ([watch] enabled = false)");
        detectors = detectors.disabled();
    }
    if let Some(path) = &config.watch.geoip_db {
        let geo = watch::geo::GeoIp::open(&config.base_dir.join(path))
            .map_err(|e| ServeError::State(state::StateError::Invalid(e)))?;
        tracing::info!("country database {} loaded", path.display());
        detectors = detectors.with_geoip(geo);
    }
    {
        // The key's own `on_anomaly`, else the server's.
        let (watcher, policy_of, server_policy) = (
            backend.as_actor("keyward-watch"),
            live.clone(),
            config.watch.on_anomaly,
        );
        detectors = detectors.suspending_with(Arc::new(move |id: String, reason: String| {
            let policy = policy_of
                .snapshot
                .load()
                .keys
                .by_id(&id)
                .and_then(|e| e.on_anomaly)
                .unwrap_or(server_policy);
            if policy != config::OnAnomaly::Suspend {
                return false;
            }
            let watcher = watcher.clone();
            tokio::spawn(async move {
                match watcher.suspend_key(&id, &reason).await {
                    Ok(_) => tracing::warn!(key_id = id, "key suspended: {reason}"),
                    Err(e) => tracing::error!(key_id = id, "could not suspend the key: {e}"),
                }
            });
            true
        }));
    }
    let watch = Arc::new(detectors);
    let (limiter, ledger) = counters(&config, &backend.store).await?;
    if !identities.is_empty() {
        let ids = identities.clone();
        tasks::supervise("identity key sets", move || ids.clone().refresh_forever());
    }
    tokio::spawn(watch::record_sources(backend.store.clone(), sources_queue));
    let gw = Arc::new(context::Gateway {
        live,
        backend: backend.clone(),
        audit: audit::Sink::spawn(backend.store.clone(), backend.audit_key().clone()),
        alerts: alerter,
        watch: watch.clone(),
        hash_key: backend.hash_key().clone(),
        providers: config
            .providers
            .iter()
            .cloned()
            .map(provider::Provider::new)
            .collect(),
        client: upstream_client::UpstreamClient::new().map_err(ServeError::Client)?,
        max_body: config.server.max_body_bytes,
        detector: keyward_detect::Detector::builtin(),
        screening: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        redaction: config.redaction,
        redactions: Default::default(),
        commands: config.hint(),
        last_use: Default::default(),
        usage: Arc::new(metrics::CountingSink {
            metrics: metrics.clone(),
            inner: Arc::new(watch::WatchedSink {
                watch: watch.clone(),
                inner: Arc::new(usage_writer.clone()),
            }),
        }),
        prices: prices::PriceTable::with_config(&config.prices)
            .map_err(|e| ServeError::State(state::StateError::Invalid(e)))?,
        echoes: Default::default(),
        metrics,
        limiter,
        ledger,
        owner_limits,
        environment_limits,
        trusted_proxies: config.server.trusted_proxy_networks(),
        cors_origins: config
            .identity
            .issuers
            .iter()
            .flat_map(|i| i.allowed_origins.iter().cloned())
            .collect(),
        identities,
        console: config::ConsoleSettings::from_config(&config),
    });
    {
        let (last_use, store) = (gw.last_use.clone(), backend.store.clone());
        tasks::supervise("key last-use recorder", move || {
            last_use.clone().run(store.clone())
        });
    }
    {
        let snapshot = gw.live.snapshot.load();
        for p in &config.providers {
            let host = reqwest::Url::parse(&p.base_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            tracing::info!(
                provider = p.name.as_str(),
                "provider `{}` ({:?}) at {host}: models {}",
                p.name,
                p.kind,
                p.models.join(", ")
            );
        }
        for m in config.missing_credentials(|n| snapshot.credential(n).is_some()) {
            tracing::warn!(
                credential = m.name.as_str(),
                "vault has no secret `{}` (needed by {}): requests there get 503 until you run `{}`",
                m.name,
                m.used_by.join(", "),
                config.command(&format!("vault put {} < key.txt", m.name))
            );
        }
    }
    {
        let (backend, live, alerts) = (backend.clone(), gw.live.clone(), gw.alerts.clone());
        let client = upstream_client()?;
        tasks::supervise("rotation schedule", move || {
            schedule::run(
                backend.clone(),
                live.clone(),
                client.clone(),
                alerts.clone(),
            )
        });
    }
    if let Some(max_age) = config.vault.max_age() {
        let (live, alerts, store) = (gw.live.clone(), gw.alerts.clone(), backend.store.clone());
        tasks::supervise("credential age alerts", move || {
            let lease =
                lease::JobLease::new(store.clone(), "credential age alerts", &live.replica_id);
            alerts::watch_credential_age(live.clone(), alerts.clone(), max_age, lease)
        });
    }
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(c, k).map_err(ServeError::Tls)?),
        _ => None,
    };
    let listen = config.server.listen;
    let bind_err = |e: std::io::Error| ServeError::Listen {
        addr: listen,
        reason: if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "{e}: another process holds that port; stop it, or pick another address with \
                 `--listen 127.0.0.1:PORT` (or [server] listen in the config)"
            )
        } else {
            e.to_string()
        },
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    // One shutdown signal for both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_server = match config.admin.listen {
        Some(admin_addr) => {
            let admin_listener = tokio::net::TcpListener::bind(admin_addr)
                .await
                .map_err(|e| ServeError::Listen {
                    addr: admin_addr,
                    reason: format!("{e} (the [admin] listen address)"),
                })?;
            let bound = admin_listener
                .local_addr()
                .map_err(|e| ServeError::Listen {
                    addr: admin_addr,
                    reason: e.to_string(),
                })?;
            tracing::info!(%bound, "admin listener (metrics at http://{bound}/metrics, admin API under /admin/v1, console at http://{bound}/console) on {bound}");
            Some(tokio::spawn(conn::serve(
                tls::PlainListener(admin_listener),
                admin_router(gw.clone()),
                config.server.conn_limits(),
                until_stopped(stopped.clone()),
            )))
        }
        None => None,
    };
    on_ready(addr, &backend);
    let limits = config.server.conn_limits();
    tracing::info!(
        max_connections = limits.max_connections,
        "accepting at most {} client connections at once",
        limits.max_connections
    );
    let app = router(gw.clone(), config.admin.listen.is_none());
    let shutdown = until_stopped(stopped);
    match tls {
        Some(cfg) => conn::serve(tls::TlsListener::new(listener, cfg), app, limits, shutdown).await,
        None => conn::serve(tls::PlainListener(listener), app, limits, shutdown).await,
    }
    if let Some(admin) = admin_server {
        let _ = admin.await;
    }
    // Refusals counted in the open window, and anything still queued, are written
    // before the store closes.
    for job in ["rotation schedule", "credential age alerts"] {
        let _ = backend.store.release_lease(job, &replica_id).await;
    }
    gw.audit.close().await;
    gw.last_use.flush(&backend.store).await;
    usage_writer.close().await;
    let _ = backend.store.replica_gone(&replica_id).await;
    backend.store.close().await;
    Ok(())
}
