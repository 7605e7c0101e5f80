//! `keyward scan --report-to`: a Keyward key found in a file is revoked by a real
//! running `keyward serve`, and the location is recorded.

mod common;
use common::*;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn scan_report_to_revokes_found_keys() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("keyward.toml");
    fs::write(
        &cfg,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://k.db\"\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    init_store(dir.path(), c);
    let admin = json(&run_in(
        dir.path(),
        &[
            "admin", "create", "--config", c, "--name", "scanner", "--json",
        ],
        None,
    ));
    let key = json(&run_in(
        dir.path(),
        &[
            "keys", "create", "--config", c, "--name", "app", "--env", "prod", "--models", "*",
            "--json",
        ],
        None,
    ));
    let mut server = keyward()
        .args(["serve", "--config", c])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let repo = dir.path().join("repo");
    fs::create_dir(&repo).unwrap();
    fs::write(
        repo.join("settings.env"),
        format!("DEBUG=1\nKEYWARD_KEY={}\n", key["key"].as_str().unwrap()),
    )
    .unwrap();
    let out = keyward()
        .args([
            "scan",
            "--no-progress",
            "--report-to",
            &format!("http://127.0.0.1:{port}/admin/v1/leaks"),
            ".",
        ])
        .current_dir(&repo)
        .env("KEYWARD_ADMIN_KEY", admin["key"].as_str().unwrap())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings still fail the scan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 key(s) revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The report says what happened, not what is left to do.
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("revoked by the gateway"), "{report}");
    assert!(!report.contains("revoke it with"), "{report}");
    let keys = json(&run_in(
        dir.path(),
        &["keys", "list", "--config", c, "--json"],
        None,
    ));
    let k = &keys.as_array().unwrap()[0];
    assert!(k["revoked_at"].as_i64().is_some());
    assert!(
        k["revoke_reason"]
            .as_str()
            .unwrap()
            .contains("settings.env:2"),
        "{k}"
    );

    // Without the admin key the scan says what to do.
    let no_key = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "scan",
            "--no-progress",
            "--report-to",
            "http://127.0.0.1:9/admin/v1/leaks",
            ".",
        ])
        .current_dir(&repo)
        .env_remove("KEYWARD_ADMIN_KEY")
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("KEYWARD_ADMIN_KEY"));
}
