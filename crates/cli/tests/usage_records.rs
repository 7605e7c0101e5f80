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

#[test]
fn a_spent_budget_stays_spent_across_a_restart() {
    let mut s = start_server("", None);
    let list = run_in(
        s.dir.path(),
        &["keys", "list", "--json", "--config", &s.config],
        None,
    );
    let keys: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = keys[0]["id"].as_str().unwrap().to_string();
    let update = run_in(
        s.dir.path(),
        &[
            "keys",
            "update",
            &id,
            "--daily-budget",
            "0.00002",
            "--config",
            &s.config,
        ],
        None,
    );
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    // Each call costs 3 × $0.15/M + 1 × $0.60/M = $0.00000105.
    let mut served = 0;
    while chat(&s, Duration::from_secs(10)) == Some(200) {
        served += 1;
        assert!(served < 20, "the budget never ran out");
    }
    assert!(served >= 1 && served * 1_050_000 <= 20_000_000, "{served}");
    unsafe { kill(s.child.id() as i32, 15) };
    assert!(s.child.wait().unwrap().success());
    // A new server knows what was spent today.
    s.child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--config", &s.config])
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(s.addr).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(chat(&s, Duration::from_secs(10)), Some(429));
}
