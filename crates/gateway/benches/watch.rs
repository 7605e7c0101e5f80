//! What the anomaly detectors cost per request: one authenticated request
//! (key and owner habits, source network, client family), its model and its
//! usage record, for a key with a week of history, against the same with the
//! detectors off.
//!
//! `cargo bench -p keyward-gateway --bench watch`

use criterion::{criterion_group, criterion_main, Criterion};
use keyward_gateway::watch::{habits::PastHour, Known, Seen, Watch, WatchSettings};
use std::sync::Arc;

struct Nowhere;
impl keyward_gateway::watch::AlertSink for Nowhere {
    fn raise(&self, _alert: serde_json::Value) {}
}

fn watch(on: bool) -> Watch {
    let now_hour = keyward_gateway::time::now_ms() / 3_600_000;
    let hours = (1..=24 * 7)
        .flat_map(|h| {
            let past = PastHour {
                hour: now_hour - h,
                requests: 3_000,
                tokens: 600_000,
                spend_pico: 1_000_000,
            };
            [
                ("key_bench".to_string(), past),
                ("owner:team-a".to_string(), past),
            ]
        })
        .collect();
    let sources = ["198.51.100.0/24", "ua:OpenAI/Python", "model:gpt-4o-mini"]
        .map(|s| ("key_bench".to_string(), s.to_string(), 0))
        .to_vec();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::mem::forget(rx);
    let w = Watch::new(
        Arc::new(keyward_gateway::limits::SystemClock),
        Arc::new(Nowhere),
        WatchSettings {
            warmup_ms: 0,
            failed_auth_burst: 20,
        },
        Known { sources, hours },
        tx,
    );
    if on {
        w
    } else {
        w.disabled()
    }
}

fn bench(c: &mut Criterion) {
    let seen = Seen {
        key_id: "key_bench",
        owner: Some("team-a"),
        ip: "198.51.100.7".parse().unwrap(),
        user_agent: Some("OpenAI/Python 1.57.0"),
        request_id: "req_bench",
    };
    let record = keyward_gateway::usage::UsageRecord {
        at_ms: 0,
        request_id: "req_bench".into(),
        key_id: "key_bench".into(),
        environment: "prod".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        endpoint: "chat.completions".into(),
        status: 200,
        usage: keyward_gateway::usage::Usage {
            input: 120,
            output: 80,
            ..Default::default()
        },
        cost_pico: Some(66_000_000),
        complete: true,
        subject: None,
        owner: Some("team-a".into()),
    };
    let mut group = c.benchmark_group("watch per request");
    for (name, on) in [("detectors on", true), ("detectors off", false)] {
        let w = watch(on);
        group.bench_function(name, |b| {
            b.iter(|| {
                w.request(&seen);
                w.model("key_bench", "gpt-4o-mini", "req_bench");
                w.usage(&record);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
