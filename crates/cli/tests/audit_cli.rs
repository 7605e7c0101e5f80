//! `keyward audit` against a real store changed behind its back with SQL.

mod common;
use common::*;
use std::fs;
use std::process::Command;

#[test]
fn audit_verify_passes_then_names_the_entry_changed_by_sql() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("keyward.toml");
    fs::write(
        &cfg,
        "[store]\nurl = \"sqlite://k.db\"\n[vault]\nmaster_key_file = \"master.key\"\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    init_store(dir.path(), c);
    for name in ["a", "b", "c"] {
        let out = run_in(
            dir.path(),
            &[
                "keys", "create", "--config", c, "--name", name, "--env", "dev", "--models", "*",
                "--json",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ok = run_in(dir.path(), &["audit", "verify", "--config", c], None);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("3 entries verified"));
    let tail = run_in(
        dir.path(),
        &[
            "audit",
            "search",
            "--config",
            c,
            "--action",
            "keys.create",
            "--json",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&tail.stdout).lines().count(), 3);

    // Rewrite who did it in entry 2, as someone with database access might.
    let db = dir.path().join("k.db");
    let py = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET actor = 'cli:nobody' WHERE seq = 2\"); c.commit()",
        db.to_str().unwrap()
    );
    let st = Command::new("python3").args(["-c", &py]).status().unwrap();
    assert!(st.success());
    let bad = run_in(dir.path(), &["audit", "verify", "--config", c], None);
    assert_eq!(bad.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("entry 2"), "{msg}");
}

#[test]
fn every_admin_command_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("keyward.toml");
    fs::write(
        &cfg,
        "[store]\nurl = \"sqlite://k.db\"\n[vault]\nmaster_key_file = \"master.key\"\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    init_store(dir.path(), c);
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let admin = json(&run_in(
        dir.path(),
        &["admin", "create", "--config", c, "--name", "ops", "--json"],
        None,
    ));
    let key = json(&run_in(
        dir.path(),
        &[
            "keys", "create", "--config", c, "--name", "k", "--env", "dev", "--models", "*",
            "--json",
        ],
        None,
    ));
    assert!(run_in(
        dir.path(),
        &["vault", "put", "cred", "--config", c],
        Some(b"s3cr3t-value-for-audit\n")
    )
    .status
    .success());
    assert!(run_in(
        dir.path(),
        &["keys", "revoke", key["id"].as_str().unwrap(), "--config", c],
        None
    )
    .status
    .success());
    assert!(run_in(
        dir.path(),
        &[
            "admin",
            "revoke",
            admin["id"].as_str().unwrap(),
            "--config",
            c
        ],
        None
    )
    .status
    .success());
    let out = run_in(dir.path(), &["audit", "export", "--config", c], None);
    let actions: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "admin_keys.create",
            "keys.create",
            "vault.put",
            "keys.revoke",
            "admin_keys.revoke"
        ]
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("s3cr3t")
            && !text.contains(key["key"].as_str().unwrap())
            && !text.contains(admin["key"].as_str().unwrap())
    );
}
