//! Redaction throughput (`cargo bench -p keyward-detect --bench redact`).
//!
//! - `whole/chat-request`: a typical chat request body (system prompt, a few turns,
//!   a pasted config file), as the gateway screens it before forwarding;
//! - `whole/with-secret`: the same with one GitHub token in it;
//! - `stream/model-output`: 64 KiB of model prose fed to the streaming redactor in
//!   the 4-to-16-byte pieces a model streams;
//! - `hostile/*`: 256 KiB of one keyword fragment repeated (`host= `, `azure `,
//!   `PuTTY-User-Key-File-`, `password = `, `pwd=`, …) beside `hostile/prose`: the
//!   per-byte cost of the worst inputs, to compare with ordinary text;
//!   `hostile/found-*` repeat a fragment that is a finding every dozen bytes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keyward_detect::{checksum, Detector, StreamRedactor};

mod common;
use common::{chat_request, HOSTILE};

fn token() -> String {
    let seed = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
    checksum::github_style_seal("ghp_", seed)
}

fn bench(c: &mut Criterion) {
    let d = Detector::builtin();
    d.prepare_streaming();
    let clean = chat_request();
    let dirty = clean.replacen("pool: 20", &format!("pool: 20\\ntoken: {}", token()), 1);
    assert!(d.find(dirty.as_bytes()).len() == 1 && d.find(clean.as_bytes()).is_empty());

    let mut g = c.benchmark_group("whole");
    for (name, body) in [("chat-request", &clean), ("with-secret", &dirty)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| d.redact(body).len())
        });
    }
    g.finish();

    let prose = "The rollout failed because the readiness probe targets /healthz on port 8080 \
                 while the container listens on 9090; align the two and redeploy. "
        .repeat(512);
    let text = &prose[..64 << 10];
    let pieces: Vec<&str> = {
        let mut v = Vec::new();
        let mut i = 0;
        let mut n = 4;
        while i < text.len() {
            let end = (i + n).min(text.len());
            v.push(&text[i..end]);
            i = end;
            n = 4 + (n * 7) % 13;
        }
        v
    };
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("model-output", |b| {
        b.iter(|| {
            let mut r = StreamRedactor::new(d);
            let mut out = String::with_capacity(text.len());
            for p in &pieces {
                r.push_into(p, &mut out);
            }
            out.push_str(&r.finish());
            out.len()
        })
    });
    g.finish();
}

fn hostile(c: &mut Criterion) {
    let d = Detector::builtin();
    let len = 256 << 10;
    let prose = "The rollout failed because the readiness probe targets /healthz on port 8080 \
                 while the container listens on 9090; align the two and redeploy. "
        .repeat(len / 100 + 1);
    let mut g = c.benchmark_group("hostile");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("prose", |b| {
        b.iter(|| d.find(&prose.as_bytes()[..len]).len())
    });
    for (name, fragment) in HOSTILE {
        let text = fragment.repeat(len / fragment.len());
        g.bench_function(*name, |b| b.iter(|| d.find(text.as_bytes()).len()));
    }
    g.finish();
}

criterion_group!(benches, bench, hostile);
criterion_main!(benches);
