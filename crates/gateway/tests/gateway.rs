//! The gateway end to end, in process: a fake provider on loopback records what it
//! receives; requests go through a real listener; SQLite and PostgreSQL stores.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use keyward_gateway::{Backend, Config, NewKey};
use keyward_vault::ExposeSecret;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake provider saw.
#[derive(Debug, Clone)]
#[allow(dead_code)] // `body` is read through Debug in leak checks
struct Seen {
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn authorization(&self) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

impl Fake {
    /// The credential header of the last request the fake received.
    fn last_auth(&self) -> String {
        self.seen.lock().unwrap().last().unwrap().authorization()
    }

    /// The JSON bodies posted to `path` (alerts, owner notices), in order.
    fn posted(&self, path: &str) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path_and_query == path)
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect()
    }
}

/// Polls `done` every 100 ms until it holds or `within` has passed.
async fn wait_for(within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    /// Set when a streamed response could not be written: the client went away.
    stream_cancelled: Mutex<Option<Instant>>,
}

/// Whether the fake's request body carries a marker. memchr's search, not
/// `str::contains`: that is generic, so built at this test's opt-level 0, and on a
/// body of megabytes it would hold the runtime the gateway under test shares.
fn has(body: &str, marker: &str) -> bool {
    memchr::memmem::find(body.as_bytes(), marker.as_bytes()).is_some()
}

async fn fake_handler(State(f): State<Arc<Fake>>, req: Request) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect::<Vec<_>>();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = String::from_utf8_lossy(
        &axum::body::to_bytes(req.into_body(), 1 << 24)
            .await
            .unwrap(),
    )
    .into_owned();
    f.seen.lock().unwrap().push(Seen {
        path_and_query,
        headers,
        body: body.clone(),
    });
    let key_sent = auth.trim_start_matches("Bearer ").to_string();
    if has(&body, "ECHO_IN_HEADERS") {
        // A provider that echoes its credential in rate-limit headers, on 200 and 401.
        let status = if has(&body, "as401") { 401 } else { 200 };
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-ratelimit-limit-requests", format!("100; key={key_sent}"))
            .header("retry-after", key_sent.clone())
            .body(Body::from(
                r#"{"id":"c1","object":"chat.completion","choices":[]}"#,
            ))
            .unwrap();
    }
    if has(&body, "ECHO_ENCODED") {
        use base64::Engine;
        let unicode: String = key_sent
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{key_sent}"));
        let content = format!(r#"seen {unicode} and {b64}"#);
        if has(&body, "\"stream\":true") {
            let event = format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\ndata: [DONE]\n\n"
            );
            // Cut inside the echoed key: a form split across pieces.
            let (a, b) = event.split_at(event.len() / 2);
            let pieces: Vec<Result<String, std::io::Error>> =
                vec![Ok(a.to_string()), Ok(b.to_string())];
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(futures_util::stream::iter(pieces)))
                .unwrap();
        }
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"id":"c1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}]}}"#
            )))
            .unwrap();
    }
    if has(&body, "COMPRESSED") {
        return Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Body::from(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]))
            .unwrap();
    }
    if has(&body, "ECHO_KEY") {
        let msg = format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#,
            auth.trim_start_matches("Bearer ")
        );
        return Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .body(Body::from(msg))
            .unwrap();
    }
    if has(&body, "\"stream\":true") {
        // One chunk now, the rest only later: the client must see the first early.
        let f2 = f.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(1);
        tokio::spawn(async move {
            for i in 0..50 {
                let chunk = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"part{i} \"}}}}]}}\n\n");
                if tx.send(Ok(chunk)).await.is_err() {
                    *f2.stream_cancelled.lock().unwrap() = Some(Instant::now());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = tx.send(Ok("data: [DONE]\n\n".into())).await;
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .unwrap();
    }
    let reply = format!(
        r#"{{"id":"c1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"ok"}},"finish_reason":"stop"}}],"echo_auth":"{}"}}"#,
        auth.len()
    );
    Response::builder()
        .header("content-type", "application/json")
        .header("set-cookie", "upstream=1")
        .body(Body::from(reply))
        .unwrap()
}

async fn start_fake() -> (SocketAddr, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .fallback(fake_handler)
        .with_state(fake.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, fake)
}

const PROD_CRED: &str = "sk-fakeprov-prod-7f3a9c1e5b2d4f6a8c0e";
const DEV_CRED: &str = "sk-fakeprov-dev-0b1c2d3e4f5a6b7c8d9e";

struct Running {
    url: String,
    /// The fake provider's root URL.
    fake_url: String,
    backend: Backend,
    config: Config,
    fake: Arc<Fake>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(store_url: Option<String>) -> Running {
    start_with(store_url, "").await
}

/// `start`, with `vault_extra` lines added to the `[vault]` section.
async fn start_with(store_url: Option<String>, vault_extra: &str) -> Running {
    let (fake_addr, fake) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let store =
        store_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("k.db").display()));
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store}"
[vault]
master_key_file = "master.key"
{vault_extra}
[alerts]
webhook_url = "http://{fake_addr}/alerts"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{fake_addr}/v1"
credential = {{ prod = "openai-prod", dev = "openai-dev" }}
models = ["gpt-4o-mini", "gpt-4o*"]
"#
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let (backend, _) = Backend::open(&config).await.unwrap();
    backend.vault_put("openai-prod", PROD_CRED).await.unwrap();
    backend.vault_put("openai-dev", DEV_CRED).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let served = config.clone();
    tokio::spawn(async move {
        keyward_gateway::serve(
            served,
            async move {
                let _ = rx.await;
            },
            |a, _| addr_tx.send(a).unwrap(),
        )
        .await
        .unwrap();
    });
    let addr = addr_rx.await.unwrap();
    Running {
        url: format!("http://{addr}"),
        fake_url: format!("http://{fake_addr}"),
        backend,
        config,
        fake,
        _shutdown: tx,
        _dir: dir,
    }
}

fn new_key(env: &str, models: &[&str]) -> NewKey {
    NewKey {
        name: "test".into(),
        environment: env.into(),
        models: models.iter().map(|s| s.to_string()).collect(),
        providers: vec![],
        endpoints: vec![],
        source_cidrs: vec![],
        expires_in: Some(Duration::from_secs(3600)),
        canary: false,
        redaction: Default::default(),
        rotation: None,
        owner: None,
        limits: Default::default(),
    }
}

async fn chat(client: &reqwest::Client, url: &str, key: &str, body: &str) -> (u16, String) {
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Starts a streamed chat completion (the fake provider sends 50 events, 100 ms apart).
async fn open_stream(c: &reqwest::Client, url: &str, key: &str) -> reqwest::Response {
    c.post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .body(r#"{"model":"gpt-4o-mini","stream":true}"#)
        .send()
        .await
        .unwrap()
}

/// Waits until the running server has picked up store changes.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn credentials_and_environments(r: &Running) {
    let (_, dev_key) = r
        .backend
        .create_key(new_key("dev", &["gpt-4o*"]))
        .await
        .unwrap();
    let (_, prod_key) = r
        .backend
        .create_key(new_key("prod", &["gpt-4o*"]))
        .await
        .unwrap();
    let (_, test_key) = r.backend.create_key(new_key("test", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let (s, body) = chat(
        &c,
        &r.url,
        &dev_key,
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = chat(&c, &r.url, &prod_key, r#"{"model":"gpt-4o","messages":[]}"#).await;
    assert_eq!(s, 200);
    let seen = r.fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let auth = |s: &Seen| {
        s.headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        auth(&seen[0]).as_deref(),
        Some(format!("Bearer {DEV_CRED}").as_str()),
        "dev key reaches the dev credential"
    );
    assert_eq!(
        auth(&seen[1]).as_deref(),
        Some(format!("Bearer {PROD_CRED}").as_str())
    );
    for s in &seen {
        assert_eq!(s.path_and_query, "/v1/chat/completions");
        let all = format!("{s:?}");
        assert!(
            !all.contains(&dev_key) && !all.contains(&prod_key),
            "the Keyward key never reaches the provider"
        );
        assert!(!all.contains("kw_"), "{all}");
    }
    // No credential mapped for `test`: refused before anything goes upstream.
    let (s, body) = chat(&c, &r.url, &test_key, r#"{"model":"gpt-4o","messages":[]}"#).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("environment `test`"));
    assert_eq!(r.fake.seen.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_credentials_environments_scope_and_errors() {
    let r = start(None).await;
    credentials_and_environments(&r).await;
    let c = reqwest::Client::new();
    let (_, key) = r
        .backend
        .create_key(new_key("dev", &["gpt-4o-mini"]))
        .await
        .unwrap();
    settle().await;
    // Scope: a model outside the globs.
    let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o","messages":[]}"#).await;
    assert_eq!(s, 403);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("request id: req_"));
    // Unknown and malformed keys, bad JSON, oversized bodies.
    assert_eq!(chat(&c, &r.url, "kw_dev_notarealkey", "{}").await.0, 401);
    let forged =
        keyward_detect::checksum::keyward_key_seal("kw_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB");
    assert_eq!(
        chat(&c, &r.url, &forged, "{}").await.0,
        401,
        "a well-formed unknown key"
    );
    assert_eq!(chat(&c, &r.url, &key, "{not json").await.0, 400);
    let huge = format!(
        r#"{{"model":"gpt-4o-mini","pad":"{}"}}"#,
        "x".repeat(11 << 20)
    );
    assert_eq!(chat(&c, &r.url, &key, &huge).await.0, 413);
    // A provider error that echoes the credential reaches the client scrubbed.
    let (s, body) = chat(
        &c,
        &r.url,
        &key,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ECHO_KEY"}]}"#,
    )
    .await;
    assert_eq!(s, 401);
    assert!(
        !body.contains(DEV_CRED) && !body.contains(&DEV_CRED[..12]),
        "{body}"
    );
    assert!(body.contains("REDACTED"), "{body}");
    // Nothing that dumps configuration.
    for p in ["/config", "/env", "/debug", "/admin", "/.env"] {
        assert_eq!(
            c.get(format!("{}{p}", r.url))
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{p}"
        );
    }
    assert_eq!(
        c.get(format!("{}/readyz", r.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_steer_the_upstream() {
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let resp = c
        .post(format!(
            "{}/v1/chat/completions?base_url=http://169.254.169.254/&key=x",
            r.url
        ))
        .bearer_auth(&key)
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("cookie", "session=abc")
        .body(r#"{"model":"gpt-4o-mini"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "upstream cookies are not passed back"
    );
    let seen = r.fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path_and_query, "/v1/chat/completions",
        "no client query reaches the provider"
    );
    let names: Vec<&str> = seen[0].headers.iter().map(|(k, _)| k.as_str()).collect();
    for banned in ["x-forwarded-host", "cookie"] {
        assert!(!names.contains(&banned), "{banned} forwarded: {names:?}");
    }
    let host = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "host")
        .unwrap()
        .1
        .clone();
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    // Model names cannot add path segments.
    let (s, _) = chat(&c, &r.url, &key, r#"{"model":"../../admin"}"#).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_as_they_arrive_and_disconnects_cancel_upstream() {
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let started = Instant::now();
    let mut resp = open_stream(&c, &r.url, &key).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the first event arrives long before the stream ends (5 s)"
    );
    // Redaction (on by default) may hold back a word that could still grow into
    // a secret until the next event: `part0` comes with the first or second one.
    let second = resp.chunk().await.unwrap().unwrap();
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
    assert!(both.contains("part0"), "{both}");
    drop(resp);
    let dropped = Instant::now();
    wait_for(Duration::from_secs(3), || {
        r.fake.stream_cancelled.lock().unwrap().is_some()
    })
    .await;
    let cancelled = r
        .fake
        .stream_cancelled
        .lock()
        .unwrap()
        .expect("the provider stream was cancelled");
    assert!(cancelled.duration_since(dropped) < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_takes_effect_within_a_second() {
    let r = start(None).await;
    let (rec, key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(
        chat(&c, &r.url, &key, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    assert!(r.backend.revoke_key(&rec.id, "test").await.unwrap());
    let revoked_at = Instant::now();
    loop {
        let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o-mini"}"#).await;
        if s == 401 {
            assert!(body.contains("revoked"), "{body}");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "revoked key still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pg_admin_url() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_and_fail_closed_when_it_goes_away() {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run at {admin} (.ci/run starts it): {e}"));
    let name = format!(
        "keyward_gw_{}_{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 1_000_000
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let r = start(Some(url)).await;
    credentials_and_environments(&r).await;
    let (_, key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(
        chat(&c, &r.url, &key, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    // The store disappears: within a few seconds every request is refused.
    r.backend.store.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    let gone = Instant::now();
    loop {
        let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o-mini"}"#).await;
        if s == 503 {
            assert!(body.contains("unreachable"), "{body}");
            break;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(8),
            "still serving unchecked requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        c.get(format!("{}/readyz", r.url))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_issues_revokes_and_rotates_with_admin_keys_only() {
    let r = start(None).await;
    let (_, admin) = r.backend.create_admin_key("automation").await.unwrap();
    let (_, client_key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let api = |p: &str| format!("{}/admin/v1{p}", r.url);
    // A client key is not an admin key.
    let s = c
        .get(api("/keys"))
        .bearer_auth(&client_key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 401);
    assert_eq!(c.get(api("/keys")).send().await.unwrap().status(), 401);
    // Create a key through the API and use it.
    let resp = c
        .post(api("/keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "ci", "env": "prod", "models": ["gpt-4o*"], "expires": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: serde_json::Value = resp.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("kw_prod_"));
    let listed = c
        .get(api("/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains(created["id"].as_str().unwrap()) && !listed.contains(&key),
        "lists never hold keys"
    );
    settle().await;
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    // Rotate the provider credential through the API: the next call uses the new one.
    let new_cred = "sk-fakeprov-prod-rotated-1a2b3c4d5e6f";
    let resp = c
        .put(api("/vault/openai-prod"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"value": new_cred}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(new_cred), "{text}");
    settle().await;
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    let last = r.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert!(last
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == &format!("Bearer {new_cred}")));
    // Suspend, resume, then revoke through the API.
    let id = created["id"].as_str().unwrap();
    for (action, status) in [("suspend", 401), ("resume", 200)] {
        let resp = c
            .post(api(&format!("/keys/{id}/{action}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{action}");
        let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await;
        assert_eq!(s, status, "after {action}: {body}");
    }
    let resp = c
        .post(api(&format!("/keys/{id}/delete")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "unknown actions are refused");
    let resp = c
        .post(api(&format!("/keys/{id}/revoke")))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"reason": "leaked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    settle().await;
    let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(
        c.post(api("/keys/key_nope/revoke"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let bad = c
        .post(api("/keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "x", "env": "admin", "models": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        400,
        "client keys cannot take the admin environment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_when_a_certificate_is_configured() {
    let (fake_addr, _fake) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "cert.pem"
tls_key = "key.pem"
[store]
url = "sqlite://k.db"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{fake_addr}/v1"
credential = "c"
models = ["*"]
"#
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let (backend, _) = Backend::open(&config).await.unwrap();
    backend.vault_put("c", PROD_CRED).await.unwrap();
    let (_, key) = backend.create_key(new_key("prod", &["*"])).await.unwrap();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        keyward_gateway::serve(
            config,
            async move {
                let _ = rx.await;
            },
            |a, _| addr_tx.send(a).unwrap(),
        )
        .await
        .unwrap();
    });
    let addr: SocketAddr = addr_rx.await.unwrap();
    // A client that stalls its handshake does not hold up others.
    let _stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}", addr.port());
    let (s, body) = chat(&client, &url, &key, r#"{"model":"gpt-4o-mini"}"#).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/healthz", addr.port()))
            .send()
            .await
            .is_err(),
        "plain HTTP is not served"
    );
    // Half a TLS configuration is refused with the fix named.
    let e = Config::parse(&text.replace("tls_key = \"key.pem\"\n", ""), dir.path()).unwrap_err();
    assert!(e.contains("tls_cert and tls_key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_secret_for_the_grace_window_only() {
    let r = start(None).await;
    let (rec, old) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(
        chat(&c, &r.url, &old, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    let new = r
        .backend
        .rotate_key(&rec.id, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new, old);
    assert!(new.starts_with("kw_dev_"));
    settle().await;
    // Both work inside the grace window, under the same stable id.
    assert_eq!(
        chat(&c, &r.url, &old, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    assert_eq!(
        chat(&c, &r.url, &new, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    let keys = r.backend.store.keys().await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.id == rec.id).count(), 1);
    // After it, only the new one.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (s, body) = chat(&c, &r.url, &old, r#"{"model":"gpt-4o-mini"}"#).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("rotated"), "{body}");
    assert_eq!(
        chat(&c, &r.url, &new, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    // Revoking the id kills the new secret too; a revoked key cannot be rotated.
    r.backend.revoke_key(&rec.id, "done").await.unwrap();
    settle().await;
    assert_eq!(
        chat(&c, &r.url, &new, r#"{"model":"gpt-4o-mini"}"#).await.0,
        401
    );
    assert!(r.backend.rotate_key(&rec.id, Duration::ZERO).await.is_err());
    assert_eq!(
        r.backend
            .rotate_key("key_missing", Duration::ZERO)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_use_is_refused_like_an_unknown_key_and_alerts_the_webhook() {
    let r = start(None).await;
    let (rec, canary) = r
        .backend
        .create_key(NewKey {
            canary: true,
            redaction: Default::default(),
            rotation: None,
            owner: None,
            limits: Default::default(),
            ..new_key("prod", &["*"])
        })
        .await
        .unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let (s, body) = c
        .post(format!("{}/v1/chat/completions", r.url))
        .bearer_auth(&canary)
        .header("user-agent", "stolen-key-tester/1.0")
        .body(r#"{"model":"gpt-4o-mini"}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let body = body.text().await.unwrap();
    assert_eq!(s, 401);
    assert!(
        body.contains("Invalid Keyward key"),
        "a canary answers like any unknown key: {body}"
    );
    wait_for(Duration::from_secs(3), || {
        !r.fake.posted("/alerts").is_empty()
    })
    .await;
    let alert = r
        .fake
        .posted("/alerts")
        .into_iter()
        .next()
        .expect("alert delivered");
    assert_eq!(alert["kind"], "canary_key_used");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["key_id"], rec.id.as_str());
    assert_eq!(alert["user_agent"], "stolen-key-tester/1.0");
    assert_eq!(alert["source"], "127.0.0.1");
    assert_eq!(alert["path"], "/v1/chat/completions");
    assert!(alert["at"].as_i64().unwrap() > 0);
    assert!(
        !alert.to_string().contains(&canary),
        "alerts never carry the key"
    );
    let upstream = r
        .fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path_and_query.starts_with("/v1/"))
        .count();
    assert_eq!(upstream, 0, "nothing was sent upstream");

    // A canary in a second header, beside a valid key, gives the caller away too
    // (another canary: alerts of one key and kind are deduplicated).
    let (rec2, canary2) = r
        .backend
        .create_key(NewKey {
            canary: true,
            ..new_key("prod", &["*"])
        })
        .await
        .unwrap();
    let (_, valid) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    settle().await;
    let s = c
        .post(format!("{}/v1/chat/completions", r.url))
        .bearer_auth(&valid)
        .header("x-api-key", &canary2)
        .body(r#"{"model":"gpt-4o-mini"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401, "a request presenting a canary is refused");
    wait_for(Duration::from_secs(3), || {
        r.fake.posted("/alerts").len() >= 2
    })
    .await;
    let second = &r.fake.posted("/alerts")[1];
    assert_eq!(second["kind"], "canary_key_used");
    assert_eq!(second["key_id"], rec2.id.as_str());
    // The first canary again, within the dedupe window: refused, not re-alerted.
    let s = c
        .post(format!("{}/v1/chat/completions", r.url))
        .bearer_auth(&canary)
        .body(r#"{"model":"gpt-4o-mini"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.fake.posted("/alerts").len(),
        2,
        "a repeat within the window is only counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_report_revokes_the_key_and_the_next_call_gets_401() {
    let r = start(None).await;
    let (_, admin) = r.backend.create_admin_key("scanner").await.unwrap();
    let (rec, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(
        chat(&c, &r.url, &key, r#"{"model":"gpt-4o-mini"}"#).await.0,
        200
    );
    let resp = c
        .post(format!("{}/admin/v1/leaks", r.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"tokens": [key, "kw_prod_notarealkey", "ghp_other"], "location": "https://git.example/acme/app/blob/main/.env#L3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let out: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(out["revoked"][0]["id"], rec.id.as_str());
    assert_eq!(out["revoked"][0]["environment"], "prod");
    assert_eq!(out["unknown"], 2);
    assert!(!out.to_string().contains(&key));
    settle().await;
    let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o-mini"}"#).await;
    assert_eq!(s, 401, "{body}");
    let k = r
        .backend
        .store
        .keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == rec.id)
        .unwrap();
    assert!(
        k.revoke_reason.unwrap().contains("git.example/acme/app"),
        "the location is recorded"
    );
    let audit = r.backend.store.audit_entries(0, 1000).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "keys.leak_reported" && e.target == rec.id));
    // Reporting again changes nothing.
    let again: serde_json::Value = c
        .post(format!("{}/admin/v1/leaks", r.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"tokens": [key], "location": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["already_revoked"][0], rec.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_is_accepted_after_a_revocation_is_acknowledged() {
    let r = start(None).await;
    let (rec, key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Concurrent traffic: (sent at, status) for every request.
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, url, key, stop) = (c.clone(), r.url.clone(), key.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = Instant::now();
                let (s, _) = chat(&c, &url, &key, r#"{"model":"gpt-4o-mini"}"#).await;
                seen.push((sent, s));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(r.backend.revoke_key(&rec.id, "incident").await.unwrap());
    let (confirmed, behind) = r
        .backend
        .await_replicas(Duration::from_secs(2))
        .await
        .unwrap();
    let acknowledged = Instant::now();
    assert_eq!(
        (confirmed, behind.len()),
        (1, 0),
        "the running server confirmed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut before_ok = 0;
    for w in workers {
        for (sent, status) in w.await.unwrap() {
            if sent >= acknowledged {
                assert_eq!(
                    status, 401,
                    "a request sent after the acknowledgement was accepted"
                );
            } else if status == 200 {
                before_ok += 1;
            }
        }
    }
    assert!(before_ok > 0, "traffic flowed before the revocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_rotation_switches_traffic_and_rollback_switches_it_back() {
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    let rotated = "sk-fakeprov-prod-v2-9a8b7c6d5e4f";
    r.backend.vault_put("openai-prod", rotated).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    assert_eq!(r.fake.last_auth(), format!("Bearer {rotated}"));
    assert_eq!(r.backend.vault_rollback("openai-prod").await.unwrap(), 1);
    settle().await;
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    assert_eq!(r.fake.last_auth(), format!("Bearer {PROD_CRED}"));
    assert!(
        r.backend.vault_rollback("openai-prod").await.is_err(),
        "nothing older than version 1"
    );
    let audit = r.backend.store.audit_entries(0, 100).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "vault.rollback" && e.target == "openai-prod"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_while_serving_decrypts_nothing_to_disk() {
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    let key_file = r.config.base_dir.join("master.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();

    let report = keyward_gateway::rekey::rotate_master_key(&r.config, None)
        .await
        .unwrap();
    assert_eq!(
        report.rewrapped, 4,
        "two secrets and the two sealed store keys"
    );
    let new_key_text = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new_key_text, old_key);
    assert!(!keyward_gateway::master_file::pending_path(&key_file).exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The server keeps serving the same credential, and traffic never stops.
    for _ in 0..10 {
        assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(r.fake.last_auth(), format!("Bearer {PROD_CRED}"));
    // A handle opened before the rekey notices it and seals under the new key.
    let rotated = "sk-fakeprov-prod-v3-1f2e3d4c5b6a";
    r.backend.vault_put("openai-prod", rotated).await.unwrap();
    settle().await;
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    assert_eq!(r.fake.last_auth(), format!("Bearer {rotated}"));
    // A restart works with the new key file; the old key opens nothing.
    let (reopened, _) = Backend::open(&r.config).await.unwrap();
    let snap = reopened.load_snapshot().await.unwrap();
    assert_eq!(snap.credentials["openai-dev"].expose_secret(), DEV_CRED);
    let old_dir = tempfile::tempdir().unwrap();
    let old_file = old_dir.path().join("old.key");
    let mut cfg = r.config.clone();
    cfg.vault.master_key_file = Some(old_file.clone());
    keyward_vault::MasterKey::from_base64(&old_key)
        .unwrap()
        .write_new_file(&old_file)
        .unwrap();
    let err = Backend::open(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    let audit = r.backend.store.audit_entries(0, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "vault.rekey"));
    // Neither key, nor any credential, is in the database file.
    let db = std::fs::read(r.config.base_dir.join("k.db")).unwrap();
    for s in [
        old_key.trim(),
        new_key_text.trim(),
        PROD_CRED,
        DEV_CRED,
        rotated,
    ] {
        assert!(!db.windows(s.len()).any(|w| w == s.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_cut_short_after_its_commit_is_finished_on_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nurl = \"sqlite://{}\"\n[vault]\nmaster_key_file = \"master.key\"\n",
        dir.path().join("k.db").display()
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let (backend, _) = Backend::open(&config).await.unwrap();
    backend.vault_put("openai-prod", PROD_CRED).await.unwrap();
    // What `vault rekey` does, stopped before it replaces the key file.
    let key_file = dir.path().join("master.key");
    let pending = keyward_gateway::master_file::pending_path(&key_file);
    let new = keyward_vault::MasterKey::generate();
    new.write_new_file(&pending).unwrap();
    let check = new.check_value();
    backend.rekey(new).await.unwrap();
    assert!(pending.exists());
    let (reopened, _) = Backend::open(&config).await.unwrap();
    assert!(!pending.exists(), "the pending key was moved into place");
    let snap = reopened.load_snapshot().await.unwrap();
    assert_eq!(snap.credentials["openai-prod"].expose_secret(), PROD_CRED);
    let installed =
        keyward_vault::MasterKey::load(&keyward_vault::MasterKeySource::File(key_file)).unwrap();
    assert_eq!(installed.check_value(), check);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_credentials_share_traffic_until_retired() {
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    let second = "sk-fakeprov-prod-pool2-4b5c6d7e8f90";
    let v2 = r
        .backend
        .vault_pool_add("openai-prod", second)
        .await
        .unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let before = r.fake.seen.lock().unwrap().len();
    for _ in 0..6 {
        assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    }
    let used: Vec<String> = r.fake.seen.lock().unwrap()[before..]
        .iter()
        .map(Seen::authorization)
        .collect();
    for cred in [PROD_CRED, second] {
        let n = used
            .iter()
            .filter(|a| **a == format!("Bearer {cred}"))
            .count();
        assert_eq!(n, 3, "each live version takes its turn: {used:?}");
    }
    r.backend.vault_retire("openai-prod", 1).await.unwrap();
    assert!(
        r.backend.vault_retire("openai-prod", v2).await.is_err(),
        "the last live version cannot be retired"
    );
    settle().await;
    let before = r.fake.seen.lock().unwrap().len();
    for _ in 0..3 {
        assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    }
    assert!(r.fake.seen.lock().unwrap()[before..].iter().all(|s| s
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && *v == format!("Bearer {second}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_older_than_max_age_raises_one_alert() {
    let r = start_with(None, r#"max_age = "2s""#).await;
    let alerts = || r.fake.posted("/alerts");
    wait_for(Duration::from_secs(10), || alerts().len() >= 2).await;
    let got = alerts();
    let mut names: Vec<&str> = got
        .iter()
        .filter(|a| a["kind"] == "credential_rotation_overdue")
        .map(|a| a["credential"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["openai-dev", "openai-prod"], "{got:?}");
    assert!(got.iter().all(|a| a["age_secs"].as_i64().unwrap() > 2));
    let body = format!("{got:?}");
    assert!(!body.contains(PROD_CRED) && !body.contains(DEV_CRED));
    // Once per version: no repeats while nothing changes...
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alerts().len(), 2);
    // ...and a rotation resets the clock.
    r.backend
        .vault_put("openai-prod", "sk-fakeprov-prod-fresh-0a1b2c3d")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(alerts().len(), 2, "a fresh version is not overdue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_warns_the_owner_then_hands_over_the_new_key() {
    use keyward_gateway::state::RotationSchedule;
    let r = start(None).await;
    let schedule = |notify: &str| RotationSchedule {
        every: Duration::from_secs(10),
        grace: Duration::from_secs(2),
        notify_secret: notify.into(),
    };
    let mut spec = new_key("prod", &["*"]);
    spec.rotation = Some(schedule("owner-hook"));
    let err = r
        .backend
        .create_key(spec.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("vault put owner-hook"), "{err}");
    r.backend
        .vault_put("plain-hook", "http://hooks.example.com/rotate")
        .await
        .unwrap();
    spec.rotation = Some(schedule("plain-hook"));
    let err = r
        .backend
        .create_key(spec.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("https"), "{err}");
    r.backend
        .vault_put("owner-hook", &format!("{}/owner-hook", r.fake_url))
        .await
        .unwrap();
    spec.rotation = Some(schedule("owner-hook"));
    let (rec, old_key) = r.backend.create_key(spec).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(
        chat(&c, &r.url, &old_key, r#"{"model":"gpt-4o"}"#).await.0,
        200
    );
    let notices = || r.fake.posted("/owner-hook");
    wait_for(Duration::from_secs(20), || {
        notices().iter().any(|n| n["kind"] == "key_rotated")
    })
    .await;
    let got = notices();
    assert_eq!(got.len(), 2, "one notice before, one after: {got:?}");
    assert_eq!(got[0]["kind"], "key_rotation_scheduled");
    assert_eq!(got[0]["key_id"], rec.id.as_str());
    assert!(
        got[0].get("key").is_none(),
        "the advance notice carries no key"
    );
    assert_eq!(got[1]["kind"], "key_rotated");
    let new_key = got[1]["key"].as_str().unwrap().to_string();
    assert!(new_key.starts_with("kw_prod_") && new_key != old_key);
    settle().await;
    assert_eq!(
        chat(&c, &r.url, &new_key, r#"{"model":"gpt-4o"}"#).await.0,
        200
    );
    // The old secret works for the grace period, then not.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        chat(&c, &r.url, &old_key, r#"{"model":"gpt-4o"}"#).await.0,
        401
    );
    assert_eq!(
        chat(&c, &r.url, &new_key, r#"{"model":"gpt-4o"}"#).await.0,
        200
    );
    let audit = r.backend.store.audit_entries(0, 1000).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "keys.rotate" && e.actor == "scheduler" && e.target == rec.id));
    let text = format!("{audit:?}");
    assert!(!text.contains(&new_key) && !text.contains(&old_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_refuses_at_once_and_resume_restores() {
    let r = start(None).await;
    let (rec, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    assert!(r
        .backend
        .suspend_key(&rec.id, "unusual spend")
        .await
        .unwrap());
    let (confirmed, behind) = r
        .backend
        .await_replicas(Duration::from_secs(2))
        .await
        .unwrap();
    assert!(confirmed >= 1 && behind.is_empty());
    let (s, body) = chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await;
    assert_eq!(s, 401);
    assert!(
        body.contains("suspended") && !body.contains("unusual spend"),
        "{body}"
    );
    assert!(r.backend.resume_key(&rec.id).await.unwrap());
    r.backend
        .await_replicas(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(chat(&c, &r.url, &key, r#"{"model":"gpt-4o"}"#).await.0, 200);
    // A revoked key stays revoked.
    assert!(r.backend.revoke_key(&rec.id, "leaked").await.unwrap());
    assert!(!r.backend.resume_key(&rec.id).await.unwrap());
    assert!(!r.backend.suspend_key("key_missing", "x").await.unwrap());
    let audit = r.backend.store.audit_entries(0, 1000).await.unwrap();
    for action in ["keys.suspend", "keys.resume"] {
        assert!(audit
            .iter()
            .any(|e| e.action == action && e.target == rec.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_request_paths_stay_out_of_the_audit_log_and_long_paths_get_414() {
    let r = start(None).await;
    let token =
        keyward_detect::checksum::github_style_seal("ghp_", "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa");
    let c = reqwest::Client::new();
    let s = c
        .post(format!("{}/v1beta/models/{token}:generateContent", r.url))
        .header("x-goog-api-key", "kw_prod_notakey")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401);
    let long = format!("{}/v1/chat/{}", r.url, "a".repeat(16 << 10));
    let resp = c.post(long).bearer_auth("kw_prod_x").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 414);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let audit = r.backend.store.audit_entries(0, 1000).await.unwrap();
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "request.refused")
        .collect();
    assert!(!refused.is_empty());
    for e in &audit {
        let row = format!("{e:?}");
        assert!(
            !row.contains(&token),
            "a token reached the audit log: {row}"
        );
    }
    assert!(refused
        .iter()
        .any(|e| e.target.contains("[REDACTED:github-classic-pat]")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_credentials_never_reach_clients_in_headers_encodings_or_compressed_bodies() {
    use base64::Engine;
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let leaked = |text: &str| {
        text.contains(PROD_CRED)
            || text.contains(&PROD_CRED[..12])
            || text.contains("\\u0073\\u006b")
            || text.contains(&b64(&format!("user:{PROD_CRED}"))[8..30])
    };
    for body in [
        r#"{"model":"gpt-4o-mini","messages":[],"x":"ECHO_IN_HEADERS"}"#,
        r#"{"model":"gpt-4o-mini","messages":[],"x":"ECHO_IN_HEADERS as401"}"#,
        r#"{"model":"gpt-4o-mini","messages":[],"x":"ECHO_ENCODED"}"#,
        r#"{"model":"gpt-4o-mini","messages":[],"x":"ECHO_ENCODED","stream":true}"#,
    ] {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let headers = format!("{:?}", resp.headers());
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(!leaked(&headers), "{body}: headers {headers}");
        assert!(!leaked(&text), "{body}: body {text}");
        assert!(
            text.contains("[REDACTED]") || headers.contains("[REDACTED]"),
            "{body}: {status} {text}"
        );
    }
    let asked = r.fake.seen.lock().unwrap().last().unwrap().headers.clone();
    assert!(
        asked
            .iter()
            .any(|(k, v)| k == "accept-encoding" && v == "identity"),
        "the gateway asks for an uncompressed answer: {asked:?}"
    );
    let (status, text) = chat(
        &c,
        &r.url,
        &key,
        r#"{"model":"gpt-4o-mini","messages":[],"x":"COMPRESSED"}"#,
    )
    .await;
    assert_eq!(
        status, 502,
        "a body that cannot be screened is not passed: {text}"
    );
    assert!(text.contains("compressed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_ends_within_a_second_of_its_key_being_revoked() {
    let r = start(None).await;
    let (rec, key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let mut resp = open_stream(&c, &r.url, &key).await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.chunk().await.unwrap().expect("the stream has started");
    assert!(r.backend.revoke_key(&rec.id, "stolen").await.unwrap());
    let revoked = Instant::now();
    // The provider would go on for about 5 s; the gateway must cut it off.
    let mut ended = None;
    while revoked.elapsed() < Duration::from_secs(4) {
        match resp.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => {
                ended = Some(revoked.elapsed());
                break;
            }
        }
    }
    let ended = ended.expect("the stream ended after the revocation");
    assert!(
        ended < Duration::from_secs(1),
        "stream ran {ended:?} past its revocation"
    );
    wait_for(Duration::from_secs(3), || {
        r.fake.stream_cancelled.lock().unwrap().is_some()
    })
    .await;
    assert!(
        r.fake.stream_cancelled.lock().unwrap().is_some(),
        "the provider stream was cancelled too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screening_large_bodies_does_not_stall_the_server() {
    let r = start(None).await;
    let (_, key) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    // Dense keyword text: slow to screen, and one screen per async worker.
    let text = "password = hunter2 token=abc https://u:p@h ".repeat(230_000);
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
    })
    .to_string();
    let started = Instant::now();
    let screens: Vec<_> = (0..2)
        .map(|_| {
            let (c, url, key, body) = (c.clone(), r.url.clone(), key.clone(), body.clone());
            tokio::spawn(async move { chat(&c, &url, &key, &body).await.0 })
        })
        .collect();
    // Probed from a thread of its own: the test's runtime is the server's, and a
    // stalled worker would stall a probe running on it too.
    let addr = r.url.trim_start_matches("http://").to_string();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = std::thread::spawn({
        let done = done.clone();
        move || {
            use std::io::{Read, Write};
            let mut slowest = Duration::ZERO;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                assert!(out.starts_with("HTTP/1.1 200"), "{out}");
                slowest = slowest.max(asked.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            slowest
        }
    });
    while screens.iter().any(|s| !s.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let slowest = prober.join().unwrap();
    let screened_in = started.elapsed();
    for s in screens {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert!(
        screened_in > Duration::from_secs(1),
        "the screens must be slow for this to test anything: {screened_in:?}"
    );
    assert!(
        slowest < Duration::from_millis(300),
        "/healthz took {slowest:?} while two bodies were screened ({screened_in:?})"
    );
}

#[tokio::test]
async fn owner_and_environment_limits_bind_every_key_they_cover() {
    let r = start_with(
        None,
        "[[limits]]\nowner = \"team-a\"\nrpm = 3\n[[limits]]\nenvironment = \"dev\"\nrpm = 1\n",
    )
    .await;
    let mut spec = new_key("prod", &["*"]);
    spec.owner = Some("team-a".into());
    let (_, a) = r.backend.create_key(spec.clone()).await.unwrap();
    let (_, b) = r.backend.create_key(spec).await.unwrap();
    let (_, other) = r.backend.create_key(new_key("prod", &["*"])).await.unwrap();
    let (_, dev) = r.backend.create_key(new_key("dev", &["*"])).await.unwrap();
    settle().await;
    let c = reqwest::Client::new();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    // Three requests between the owner's two keys, then neither gets a fourth.
    for key in [&a, &b, &a] {
        assert_eq!(chat(&c, &r.url, key, body).await.0, 200);
    }
    for key in [&a, &b] {
        let (status, text) = chat(&c, &r.url, key, body).await;
        assert_eq!(status, 429, "{text}");
        assert!(text.contains("owner `team-a`"), "{text}");
    }
    // A key of no owner is not bound by it.
    for _ in 0..4 {
        assert_eq!(chat(&c, &r.url, &other, body).await.0, 200);
    }
    // The environment's limit.
    assert_eq!(chat(&c, &r.url, &dev, body).await.0, 200);
    let (status, text) = chat(&c, &r.url, &dev, body).await;
    assert_eq!(status, 429);
    assert!(text.contains("environment `dev`"), "{text}");
}

/// Polls `done` every 20 ms for up to 5 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_applies_changed_keys_and_reloads_all_when_the_generation_goes_back() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let text = format!(
        "[store]\nurl = \"sqlite://{}\"\n[vault]\nmaster_key_file = \"master.key\"\n",
        db.display()
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let (backend, _) = Backend::open(&config).await.unwrap();
    let live = Arc::new(keyward_gateway::state::Live::new(
        backend.load_snapshot().await.unwrap(),
    ));
    tokio::spawn(live.clone().follow(backend.clone()));
    let (a, _) = backend.create_key(new_key("prod", &["*"])).await.unwrap();
    let (b, _) = backend.create_key(new_key("prod", &["*"])).await.unwrap();
    eventually("both keys served", || live.snapshot.load().keys.len() == 2).await;
    let entry = |hash: &str| live.snapshot.load().keys.get(hash).map(|m| m.entry.clone());
    backend.suspend_key(&a.id, "test").await.unwrap();
    eventually("the suspension applied", || {
        entry(&a.key_hash).is_some_and(|e| e.record.suspended_at.is_some())
    })
    .await;
    // The other key is the same entry as before: only the changed one was read.
    let before = entry(&b.key_hash).unwrap();
    backend.revoke_key(&a.id, "test").await.unwrap();
    eventually("the revocation applied", || {
        entry(&a.key_hash).is_some_and(|e| e.record.revoked_at.is_some())
    })
    .await;
    let after = entry(&b.key_hash).unwrap();
    assert!(
        Arc::ptr_eq(&before, &after),
        "an unchanged key is not re-read"
    );

    // The store restored from an older backup: a lower generation, and a key
    // this server never saw. Deltas cannot tell; everything is read again.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO client_keys (id, key_hash, hint, name, environment, models, providers, endpoints, source_cidrs, created_at) \
         VALUES ('key_restored', 'restored-hash', 'kw_prod_', 'restored', 'prod', '[\"*\"]', '[]', '[]', '[]', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE meta SET value = '1' WHERE name = 'generation'")
        .execute(&mut conn)
        .await
        .unwrap();
    eventually("the restored store read whole", || {
        let s = live.snapshot.load();
        s.generation == 1 && s.keys.get("restored-hash").is_some()
    })
    .await;
}
