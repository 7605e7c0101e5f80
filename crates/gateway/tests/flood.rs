//! A flood of requests with junk keys against a real listener on SQLite: refusals
//! are counted per source instead of written one by one, the security events in the
//! middle of the flood (a key revoked mid-flood and then used, a canary key) are all
//! in the audit log, revocation stays fast and valid requests keep succeeding.

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use keyward_gateway::{Backend, Config, NewKey};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn fake_provider() -> SocketAddr {
    let app = Router::new().fallback(|| async {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#,
            ))
            .unwrap()
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

fn key_spec(canary: bool) -> NewKey {
    NewKey {
        name: "flood".into(),
        environment: "prod".into(),
        models: vec!["*".into()],
        providers: vec![],
        endpoints: vec![],
        source_cidrs: vec![],
        expires_in: Some(Duration::from_secs(3600)),
        canary,
        redaction: Default::default(),
        rotation: None,
        owner: None,
        limits: Default::default(),
    }
}

async fn chat(client: &reqwest::Client, url: &str, key: &str) -> u16 {
    client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_key_floods_are_counted_and_security_events_are_never_lost() {
    let upstream = fake_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "sqlite://{}"
[vault]
master_key_file = "master.key"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{upstream}/v1"
credential = "openai-prod"
models = ["*"]
"#,
        dir.path().join("k.db").display()
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let (backend, _) = Backend::open(&config).await.unwrap();
    backend
        .vault_put("openai-prod", "sk-fakeprov-flood-1c2d3e4f5a6b7c8d9e0f")
        .await
        .unwrap();
    let (_, valid) = backend.create_key(key_spec(false)).await.unwrap();
    let (doomed_rec, doomed) = backend.create_key(key_spec(false)).await.unwrap();
    let (canary_rec, canary) = backend.create_key(key_spec(true)).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let served = config.clone();
    let server = tokio::spawn(async move {
        keyward_gateway::serve(
            served,
            async move {
                let _ = stopped.await;
            },
            |a, _| addr_tx.send(a).unwrap(),
        )
        .await
        .unwrap();
    });
    let url = format!("http://{}", addr_rx.await.unwrap());
    let client = reqwest::Client::new();
    assert_eq!(chat(&client, &url, &valid).await, 200);

    // 32 clients sending junk keys as fast as they can, until the checks below are done.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..32)
        .map(|c| {
            let (client, url, done) = (client.clone(), url.clone(), done.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || sent < 100 {
                    let status = chat(&client, &url, &format!("kw_prod_junk{c}x{sent}")).await;
                    assert_eq!(status, 401);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    assert!(backend
        .revoke_key(&doomed_rec.id, "flood test")
        .await
        .unwrap());
    let revoke_took = started.elapsed();
    assert!(
        revoke_took < Duration::from_secs(1),
        "revocation under the flood took {revoke_took:?}"
    );
    let applied = Instant::now();
    while chat(&client, &url, &doomed).await != 401 {
        assert!(
            applied.elapsed() < Duration::from_secs(5),
            "revocation applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat(&client, &url, &canary).await, 401);
    for _ in 0..5 {
        assert_eq!(
            chat(&client, &url, &valid).await,
            200,
            "valid keys still work"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut junk_sent = 0;
    for f in flooders {
        junk_sent += f.await.unwrap();
    }
    assert!(junk_sent > 3_000, "a flood: {junk_sent} requests");
    let _ = stop.send(());
    server.await.unwrap();

    let entries = backend.store.audit_entries(0, 100_000).await.unwrap();
    let refused: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("request.refused"))
        .collect();
    let details = |e: &&keyward_store::AuditRow| -> serde_json::Value {
        serde_json::from_str(&e.details).unwrap()
    };
    let junk_total: u64 = refused
        .iter()
        .filter(|e| details(e)["reason"] == "invalid_key")
        .map(|e| {
            if e.action == "request.refused.repeated" {
                details(e)["count"].as_u64().unwrap()
            } else {
                1
            }
        })
        .sum();
    assert_eq!(junk_total, junk_sent, "every refusal counted");
    assert!(
        refused.len() < 20,
        "refusals are aggregated, not written one by one: {} entries",
        refused.len()
    );
    let used = |actor: &str, reason: &str| {
        refused.iter().any(|e| {
            e.actor == actor && e.action == "request.refused" && details(e)["reason"] == reason
        })
    };
    assert!(
        used(&doomed_rec.id, "revoked"),
        "the revoked key's use is audited"
    );
    assert!(
        used(&canary_rec.id, "canary"),
        "the canary's use is audited"
    );
    assert!(entries.iter().any(|e| e.action == "keys.revoke"));
    let report = keyward_gateway::audit::verify(&backend.store, backend.audit_key())
        .await
        .unwrap();
    assert_eq!(report.first_broken, None);
}
