//! Usage records are written in batches; a clean shutdown (SIGTERM) writes every
//! one still queued, so none is lost.

mod common;
use common::serve::*;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn every_request_is_recorded_even_when_the_server_stops_at_once() {
    let mut s = start_server("", None);
    const N: usize = 25;
    for _ in 0..N {
        assert_eq!(chat(&s, Duration::from_secs(10)), Some(200));
    }
    // Stop at once: the batch window (1 s) has not passed for the last requests.
    let stopped = Instant::now();
    unsafe { kill(s.child.id() as i32, 15) };
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(stopped.elapsed() < Duration::from_secs(10));
    let out = run_in(
        s.dir.path(),
        &[
            "usage", "--by", "key", "--format", "json", "--config", &s.config,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["requests"], N, "{row}");
    assert_eq!(row["input_tokens"], 3 * N, "{row}");
    assert_eq!(row["output_tokens"], N, "{row}");
    // gpt-4o-mini: $0.15 / $0.60 per million tokens.
    assert_eq!(row["cost_pico"], (3 * 150_000 + 600_000) * N, "{row}");
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
