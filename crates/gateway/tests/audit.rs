//! The audit log: what gets recorded, that it holds no secrets, and that changing,
//! removing, reordering or truncating entries by SQL is detected and located.

use keyward_gateway::audit::{self, Event};
use keyward_gateway::{Backend, Config, NewKey};
use sqlx::Connection;
use std::time::Duration;

async fn backend(dir: &std::path::Path) -> (Backend, String) {
    let db = dir.join("k.db");
    let text = format!(
        "[store]\nurl = \"sqlite://{}\"\n[vault]\nmaster_key_file = \"master.key\"\n",
        db.display()
    );
    let config = Config::parse(&text, dir).unwrap();
    (
        Backend::open(&config).await.unwrap().0,
        format!("sqlite://{}", db.display()),
    )
}

fn key_spec() -> NewKey {
    NewKey {
        name: "svc".into(),
        environment: "prod".into(),
        models: vec!["*".into()],
        providers: vec![],
        endpoints: vec![],
        source_cidrs: vec![],
        expires_in: Some(Duration::from_secs(60)),
        canary: false,
        redaction: Default::default(),
        rotation: None,
        owner: None,
        limits: Default::default(),
    }
}

/// A backend with six entries: vault put, key create, key revoke, three events.
async fn populated(dir: &std::path::Path) -> (Backend, String, String) {
    let (b, url) = backend(dir).await;
    b.vault_put("openai-prod", "sk-audit-test-credential-value-123")
        .await
        .unwrap();
    let (rec, key) = b.create_key(key_spec()).await.unwrap();
    b.as_actor("admin-api:adm_x")
        .revoke_key(&rec.id, "rotated")
        .await
        .unwrap();
    let events: Vec<Event> = (0..3)
        .map(|i| {
            Event::new(
                "anonymous",
                "request.refused",
                "/v1/chat/completions",
                "denied",
                serde_json::json!({"n": i}),
            )
        })
        .collect();
    b.audit(&events).await.unwrap();
    (b, url, key)
}

async fn exec(url: &str, sql: &str) {
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
}

#[tokio::test]
async fn entries_record_who_did_what_and_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _, key) = populated(dir.path()).await;
    let rows = b.store.audit_entries(0, 100).await.unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "vault.put",
            "keys.create",
            "keys.revoke",
            "request.refused",
            "request.refused",
            "request.refused"
        ]
    );
    assert!(rows[0].actor.starts_with("cli:"));
    assert_eq!(rows[2].actor, "admin-api:adm_x");
    assert_eq!(
        rows[1].target, rows[2].target,
        "entries reference keys by id"
    );
    let all = format!("{rows:?}");
    assert!(
        !all.contains(&key) && !all.contains("sk-audit-test-credential"),
        "no secret in the audit log"
    );
    let report = audit::verify(&b.store, b.audit_key()).await.unwrap();
    assert_eq!(
        report,
        audit::Report {
            entries: 6,
            first_broken: None
        }
    );
}

#[tokio::test]
async fn tampering_by_sql_is_detected_and_located() {
    let cases: &[(&str, i64)] = &[
        ("UPDATE audit_log SET target = 'key_someone_else' WHERE seq = 3", 3),
        ("UPDATE audit_log SET outcome = 'ok' WHERE seq = 5", 5),
        ("DELETE FROM audit_log WHERE seq = 4", 4),
        (
            "UPDATE audit_log SET seq = -4 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = -4",
            4,
        ),
        ("DELETE FROM audit_log WHERE seq = 6", 6),
        ("DELETE FROM audit_log", 1),
    ];
    for (sql, broken_at) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (b, url, _) = populated(dir.path()).await;
        exec(&url, sql).await;
        let report = audit::verify(&b.store, b.audit_key()).await.unwrap();
        let (seq, why) = report
            .first_broken
            .clone()
            .unwrap_or_else(|| panic!("not detected: {sql}"));
        assert_eq!(seq, *broken_at, "{sql}: {why}");
    }
}

#[tokio::test]
async fn concurrent_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = backend(dir.path()).await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let e = Event::new(
                    "t",
                    "test",
                    &format!("{t}-{i}"),
                    "ok",
                    serde_json::json!({}),
                );
                b.audit(&[e]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = audit::verify(&b.store, b.audit_key()).await.unwrap();
    assert_eq!(
        report,
        audit::Report {
            entries: 40,
            first_broken: None
        }
    );
}

#[tokio::test]
async fn a_change_whose_audit_entry_cannot_be_written_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let (b, url) = backend(dir.path()).await;
    let (kept, _) = b.create_key(key_spec()).await.unwrap();
    // From now on the audit log refuses every entry, as a crash between the two
    // writes would have left it.
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    assert!(b.create_key(key_spec()).await.is_err());
    assert_eq!(
        b.store.keys().await.unwrap().len(),
        1,
        "no key exists without its audit entry"
    );
    assert!(b.revoke_key(&kept.id, "test").await.is_err());
    assert!(b.suspend_key(&kept.id, "test").await.is_err());
    assert!(b.create_admin_key("ops").await.is_err());
    assert!(b
        .vault_put("openai-prod", "sk-never-stored-0123456789")
        .await
        .is_err());
    assert!(
        b.store
            .current_secret("openai-prod")
            .await
            .unwrap()
            .is_none(),
        "no credential is stored without its audit entry"
    );
    let k = &b.store.keys().await.unwrap()[0];
    assert_eq!(
        k.revoked_at, None,
        "an unaudited revocation was rolled back"
    );
    assert_eq!(
        k.suspended_at, None,
        "an unaudited suspension was rolled back"
    );
    assert!(b.store.admin_keys().await.unwrap().is_empty());
    sqlx::query("DROP TRIGGER refuse_audit")
        .execute(&mut db)
        .await
        .unwrap();
    assert!(b.revoke_key(&kept.id, "test").await.unwrap());
    let report = audit::verify(&b.store, b.audit_key()).await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(report.entries, 2, "create and revoke, nothing in between");
}
