//! The Redis limiter and budget ledger, against a `redis-server` this test starts
//! on a free port: exact across several "replicas" (separate connections), and
//! failing closed while Redis is down, resuming by itself when it returns.

use keyward_gateway::budget::{Budget, BudgetError, BudgetLedger};
use keyward_gateway::cluster::{ledger::RedisLedger, limiter::RedisLimiter, Redis};
use keyward_gateway::limits::{LimitError, LimitKind, Limiter, Limits};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A `redis-server` of this test's own, stopped on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = RedisServer { port, child: None };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port, with nothing kept from before.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn redis(server: &RedisServer, prefix: &str) -> Redis {
    Redis::connect(&server.url(), prefix).await.unwrap()
}

fn key_scope(limits: Limits) -> Vec<(String, String, Limits)> {
    vec![("key:k1".into(), "key".into(), limits)]
}

async fn temp_store(dir: &tempfile::TempDir) -> keyward_store::Store {
    keyward_store::Store::open(&format!("sqlite://{}", dir.path().join("k.db").display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_limits_are_exact_across_replicas() {
    let server = RedisServer::start();
    let replicas: Vec<Arc<RedisLimiter>> = futures_util::future::join_all(
        (0..3).map(|_| async { Arc::new(RedisLimiter::new(redis(&server, "t1:").await)) }),
    )
    .await;
    let scopes = Arc::new(key_scope(Limits {
        rpm: Some(25),
        ..Default::default()
    }));
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (l, s, a) = (replicas[i % 3].clone(), scopes.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            match l.admit(&s).await {
                Ok(_) => {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                Err(LimitError::Exceeded(e)) => {
                    assert_eq!((e.kind, e.limit), (LimitKind::Requests, 25));
                    assert!(e.retry_after_ms > 50_000 && e.retry_after_ms <= 60_000);
                }
                Err(e) => panic!("{e:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 25);
    // The last admission left none, and says so for the rate-limit headers.
    let fresh = key_scope(Limits {
        rpm: Some(2),
        ..Default::default()
    });
    let mut fresh = fresh;
    fresh[0].0 = "key:k2".into();
    let p = replicas[0].admit(&fresh).await.unwrap();
    assert_eq!(p.requests.unwrap().remaining, 1);
    let p = replicas[1].admit(&fresh).await.unwrap();
    assert_eq!(p.requests.unwrap().remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_slots_are_shared_and_come_back() {
    let server = RedisServer::start();
    let a = RedisLimiter::new(redis(&server, "t2:").await);
    let b = RedisLimiter::new(redis(&server, "t2:").await);
    let s = key_scope(Limits {
        concurrency: Some(2),
        ..Default::default()
    });
    let p1 = a.admit(&s).await.unwrap();
    let _p2 = b.admit(&s).await.unwrap();
    match b.admit(&s).await {
        Err(LimitError::Exceeded(e)) => assert_eq!(e.kind, LimitKind::Concurrency),
        other => panic!("{:?}", other.err()),
    }
    drop(p1); // released in the background
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(p) = b.admit(&s).await {
            drop(p);
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the released slot came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_replicas_slot_is_freed_when_its_lease_ends() {
    let server = RedisServer::start();
    let short = redis(&server, "t3:")
        .await
        .with_lease(Duration::from_millis(300));
    let a = RedisLimiter::new(short.clone());
    let s = key_scope(Limits {
        concurrency: Some(1),
        ..Default::default()
    });
    let held = a.admit(&s).await.unwrap();
    std::mem::forget(held); // its server died: never released
    assert!(a.admit(&s).await.is_err());
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.admit(&s).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_per_minute_count_across_replicas() {
    let server = RedisServer::start();
    let a = RedisLimiter::new(redis(&server, "t4:").await);
    let b = RedisLimiter::new(redis(&server, "t4:").await);
    let s = key_scope(Limits {
        tpm: Some(100),
        ..Default::default()
    });
    drop(a.admit(&s).await.unwrap());
    a.charge_tokens(&["key:k1".into()], 60);
    drop(b.admit(&s).await.unwrap());
    b.charge_tokens(&["key:k1".into()], 50);
    let mut refused = None;
    for _ in 0..50 {
        if let Err(LimitError::Exceeded(e)) = a.admit(&s).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = refused.expect("110 tokens of 100 used: refused");
    assert_eq!((e.kind, e.limit), (LimitKind::Tokens, 100));
    assert!(e.retry_after_ms > 55_000, "{}", e.retry_after_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_are_exact_across_replicas() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(&dir).await;
    let ledgers: Vec<Arc<RedisLedger>> =
        futures_util::future::join_all((0..3).map(|_| async {
            Arc::new(RedisLedger::new(redis(&server, "t5:").await, store.clone()))
        }))
        .await;
    let budget = Arc::new(vec![(
        "key:k1".to_string(),
        "key".to_string(),
        Budget {
            daily: Some(1_000),
            monthly: None,
        },
    )]);
    let spent = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (l, b, s) = (ledgers[i % 3].clone(), budget.clone(), spent.clone());
        tasks.push(tokio::spawn(async move {
            match l.reserve(&b, 30).await {
                Ok(r) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    s.fetch_add(7, Ordering::SeqCst);
                    r.settle(7);
                }
                Err(BudgetError::Over(e)) => assert_eq!(e.period, "daily"),
                Err(e) => panic!("{e:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = spent.load(Ordering::SeqCst);
    assert!(total <= 1_000, "{total}");
    // Settlements land in the background: then the ledger knows the real spend.
    let mut seen = 0;
    for _ in 0..100 {
        seen = ledgers[2].spent("key:k1").await.unwrap().1;
        if seen == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, total);
    assert_eq!(
        ledgers[0].remaining(&budget).await.unwrap(),
        Some(1_000 - total)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_replicas_reservation_is_charged_in_full_when_its_lease_ends() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(&dir).await;
    let redis = redis(&server, "t6:")
        .await
        .with_lease(Duration::from_millis(300));
    let l = RedisLedger::new(redis, store);
    let b = vec![(
        "key:k1".to_string(),
        "key".to_string(),
        Budget {
            daily: Some(100),
            monthly: Some(1_000),
        },
    )];
    std::mem::forget(l.reserve(&b, 80).await.unwrap());
    assert!(matches!(l.reserve(&b, 30).await, Err(BudgetError::Over(_))));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Swept by the next reservation: charged 80 as spent, so 30 more is over.
    match l.reserve(&b, 30).await {
        Err(BudgetError::Over(e)) => assert_eq!(e.committed, 80),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(l.spent("key:k1").await.unwrap().1, 80);
    // A reservation reports the spend it saw, as the ledger does.
    let r = l.reserve(&b, 20).await.unwrap();
    assert_eq!(r.spent_of("key:k1").map(|s| (s.1, s.3)), Some((80, 80)));
    r.settle(20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_closed_and_service_resumes_with_the_spend_reseeded() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(&dir).await;
    // What the key spent today, as the store records it.
    store
        .insert_usage(&[keyward_store::UsageRow {
            at_ms: keyward_gateway::time::now_ms(),
            request_id: "req_1".into(),
            key_id: "k1".into(),
            environment: "prod".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            endpoint: "chat".into(),
            status: 200,
            input_tokens: 1,
            output_tokens: 1,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            cost_pico: Some(600),
            complete: true,
            subject: None,
            owner: None,
        }])
        .await
        .unwrap();
    let r = redis(&server, "t7:").await;
    let limiter = RedisLimiter::new(r.clone());
    let ledger = RedisLedger::new(r, store);
    let limited = key_scope(Limits {
        rpm: Some(1000),
        ..Default::default()
    });
    let budget = vec![(
        "key:k1".to_string(),
        "key".to_string(),
        Budget {
            daily: Some(1_000),
            monthly: None,
        },
    )];
    // Seeded from the store on first use: 600 of 1000 already spent.
    assert!(matches!(
        ledger.reserve(&budget, 500).await,
        Err(BudgetError::Over(_))
    ));
    ledger.reserve(&budget, 400).await.unwrap().settle(0);
    limiter.admit(&limited).await.unwrap();

    server.kill();
    let started = std::time::Instant::now();
    assert!(matches!(
        limiter.admit(&limited).await,
        Err(LimitError::Unavailable(_))
    ));
    assert!(matches!(
        ledger.reserve(&budget, 1).await,
        Err(BudgetError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals come quickly: {:?}",
        started.elapsed()
    );
    // Unlimited, unbudgeted requests need no counter and are not refused.
    let free = vec![("key:k9".to_string(), "key".to_string(), Limits::default())];
    limiter.admit(&free).await.unwrap();

    server.restart();
    let mut back = false;
    for _ in 0..100 {
        if limiter.admit(&limited).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "service resumed once Redis was back");
    // The restarted Redis lost the ledger; it is reseeded from the store.
    assert!(matches!(
        ledger.reserve(&budget, 500).await,
        Err(BudgetError::Over(_))
    ));
    ledger.reserve(&budget, 400).await.unwrap();
}
