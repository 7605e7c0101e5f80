//! The same store behaviour on SQLite and on a real PostgreSQL server
//! (127.0.0.1:5432; `KEYWARD_TEST_POSTGRES` overrides the admin URL).

use base64::Engine as _;
use keyward_store::{Backend, KeyRecord, Store};
use sqlx::Connection;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn pg_admin_url() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty PostgreSQL database for one test; its URL.
async fn fresh_pg_db() -> String {
    let admin = pg_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL must run at {admin} for these tests (.ci/run starts it): {e}")
        });
    let name = format!("keyward_test_{}_{}", std::process::id(), rand_suffix());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() % 1_000_000_000
}

fn sealed<'a>(
    wk: &'a [u8],
    ct: &'a [u8],
    at: i64,
    check: &'a str,
) -> keyward_store::SealedVersion<'a> {
    keyward_store::SealedVersion {
        wrapped_key: wk,
        ciphertext: ct,
        created_at: at,
        master_check: check,
    }
}

fn record(id: &str, hash: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        key_hash: hash.into(),
        hint: "kw_dev_Ab".into(),
        name: "ci".into(),
        environment: "dev".into(),
        models: vec!["gpt-4o*".into()],
        providers: vec![],
        endpoints: vec![],
        source_cidrs: vec!["10.0.0.0/8".into()],
        created_at: 100,
        expires_at: Some(200),
        ..Default::default()
    }
}

async fn exercise(store: Store) {
    // The gateway audits these changes; nothing to append here.
    let mut no_audit_n = |_: i64, _: i64, _: Option<&str>| (Vec::new(), String::new());
    let g0 = store.generation().await.unwrap();
    // Secrets: versions, one current.
    assert_eq!(
        store
            .put_secret(
                "openai-prod",
                sealed(b"wk1", b"ct1", 10, "check"),
                false,
                &mut no_audit_n
            )
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_secret(
                "openai-prod",
                sealed(b"wk2", b"ct2", 11, "check"),
                false,
                &mut no_audit_n
            )
            .await
            .unwrap(),
        2
    );
    let cur = store.current_secret("openai-prod").await.unwrap().unwrap();
    assert_eq!((cur.version, cur.ciphertext.as_slice()), (2, &b"ct2"[..]));
    assert!(store.current_secret("nope").await.unwrap().is_none());
    assert_eq!(
        store
            .rollback_secret("openai-prod", &mut no_audit_n)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .current_secret("openai-prod")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        store
            .rollback_secret("openai-prod", &mut no_audit_n)
            .await
            .unwrap(),
        None,
        "nothing older to roll back to"
    );
    let states: Vec<String> = store
        .secret_versions("openai-prod")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.1)
        .collect();
    assert_eq!(states, ["current", "rolled_back"]);
    assert_eq!(
        store
            .put_secret(
                "openai-prod",
                sealed(b"wk3", b"ct3", 12, "check"),
                false,
                &mut no_audit_n
            )
            .await
            .unwrap(),
        3,
        "versions keep counting up"
    );
    assert_eq!(
        store
            .current_secret("openai-prod")
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(store.current_secrets().await.unwrap().len(), 1);
    // Keys.
    let mut no_audit = |_: i64, _: Option<&str>| (Vec::new(), String::new());
    store
        .insert_key(&record("key_a", "h1"), &mut no_audit)
        .await
        .unwrap();
    assert!(
        store
            .insert_key(&record("key_b", "h1"), &mut no_audit)
            .await
            .is_err(),
        "hashes are unique"
    );
    let keys = store.keys().await.unwrap();
    assert_eq!(keys, vec![record("key_a", "h1")]);
    assert!(store
        .rotate_key("key_a", "h2", "kw_dev_Cd", 180, &mut no_audit)
        .await
        .unwrap());
    assert!(!store
        .rotate_key("missing", "h3", "x", 180, &mut no_audit)
        .await
        .unwrap());
    let k = &store.keys().await.unwrap()[0];
    assert_eq!(
        (
            k.key_hash.as_str(),
            k.prev_key_hash.as_deref(),
            k.prev_valid_until
        ),
        ("h2", Some("h1"), Some(180))
    );
    assert!(store
        .revoke_key("key_a", "leaked", 150, &mut no_audit)
        .await
        .unwrap());
    assert!(!store
        .revoke_key("missing", "x", 150, &mut no_audit)
        .await
        .unwrap());
    let k = &store.keys().await.unwrap()[0];
    assert_eq!(
        (k.revoked_at, k.revoke_reason.as_deref()),
        (Some(150), Some("leaked"))
    );
    assert!(
        store.generation().await.unwrap() >= g0 + 4,
        "every mutation bumps the generation"
    );
    let admin = keyward_store::AdminKeyRecord {
        id: "adm_1".into(),
        key_hash: "ah".into(),
        hint: "kw_admin_…".into(),
        name: "ops".into(),
        created_at: 5,
        revoked_at: None,
    };
    store.insert_admin_key(&admin, &mut no_audit).await.unwrap();
    assert_eq!(store.admin_keys().await.unwrap(), vec![admin]);
    assert!(store
        .revoke_admin_key("adm_1", 9, &mut no_audit)
        .await
        .unwrap());
    assert_eq!(store.admin_keys().await.unwrap()[0].revoked_at, Some(9));
    assert!(!store
        .revoke_admin_key("adm_x", 9, &mut no_audit)
        .await
        .unwrap());
    assert_eq!(store.meta_init("check", "abc").await.unwrap(), "abc");
    assert_eq!(
        store.meta_init("check", "zzz").await.unwrap(),
        "abc",
        "first writer wins"
    );
    // Master key rotation: every wrapped key changes, ciphertexts do not, and a
    // writer still holding the old key is refused afterwards.
    store.meta_init("master_key_check", "old").await.unwrap();
    store
        .meta_init("audit_key", &format!("{}.Y3Q", B64.encode(b"wk")))
        .await
        .unwrap();
    let before = store.current_secret("openai-prod").await.unwrap().unwrap();
    let failing = store
        .rekey(
            "old",
            "new",
            &["audit_key"],
            |kind, _, _| {
                if kind == "meta" {
                    Err("cannot unwrap".into())
                } else {
                    Ok(b"x".to_vec())
                }
            },
            &mut no_audit_n,
        )
        .await;
    assert!(failing.is_err());
    assert_eq!(
        store
            .current_secret("openai-prod")
            .await
            .unwrap()
            .unwrap()
            .wrapped_key,
        before.wrapped_key,
        "a failed rekey changes nothing"
    );
    let n = store
        .rekey(
            "old",
            "new",
            &["audit_key", "absent"],
            |kind, name, wk| Ok([kind.as_bytes(), b":", name.as_bytes(), b":", wk].concat()),
            &mut no_audit_n,
        )
        .await
        .unwrap();
    assert_eq!(n, 4, "three secret versions and one meta key");
    let after = store.current_secret("openai-prod").await.unwrap().unwrap();
    assert_eq!(after.wrapped_key, b"secret:openai-prod:wk3");
    assert_eq!(after.ciphertext, before.ciphertext);
    assert_eq!(
        store.meta("audit_key").await.unwrap().unwrap(),
        format!("{}.Y3Q", B64.encode(b"meta:audit_key:wk"))
    );
    assert_eq!(
        store.meta("master_key_check").await.unwrap().unwrap(),
        "new"
    );
    assert!(matches!(
        store
            .put_secret(
                "openai-prod",
                sealed(b"w", b"c", 20, "old"),
                false,
                &mut no_audit_n
            )
            .await,
        Err(keyward_store::Error::StaleMasterKey)
    ));
    assert!(matches!(
        store
            .rekey(
                "old",
                "newer",
                &[],
                |_, _, w| Ok(w.to_vec()),
                &mut no_audit_n
            )
            .await,
        Err(keyward_store::Error::StaleMasterKey)
    ));
    // Pools: a pooled version joins the live ones; retiring and rolling back take
    // versions out, never the last one.
    let v4 = store
        .put_secret(
            "openai-prod",
            sealed(b"wk4", b"ct4", 30, "new"),
            true,
            &mut no_audit_n,
        )
        .await
        .unwrap();
    let live = |s: Vec<keyward_store::StoredSecret>| -> Vec<i64> {
        s.into_iter()
            .filter(|s| s.name == "openai-prod")
            .map(|s| s.version)
            .collect()
    };
    assert_eq!(live(store.current_secrets().await.unwrap()), [3, v4]);
    assert_eq!(
        store
            .current_secret("openai-prod")
            .await
            .unwrap()
            .unwrap()
            .version,
        v4
    );
    assert!(store
        .retire_secret_version("openai-prod", 3, &mut no_audit)
        .await
        .unwrap());
    assert!(
        !store
            .retire_secret_version("openai-prod", v4, &mut no_audit)
            .await
            .unwrap(),
        "the last live version stays"
    );
    store
        .put_secret(
            "openai-prod",
            sealed(b"wk5", b"ct5", 31, "new"),
            true,
            &mut no_audit_n,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .rollback_secret("openai-prod", &mut no_audit_n)
            .await
            .unwrap(),
        Some(v4),
        "the pooled newest goes, v4 stays"
    );
    assert_eq!(live(store.current_secrets().await.unwrap()), [v4]);
}

/// Usage records: batches append, totals group by model and by UTC day, and
/// unpriced and incomplete requests are counted apart.
/// Keys changed since a generation, and job leases.
async fn exercise_changes_and_leases(store: &Store) {
    let mut no_audit = |_: i64, _: Option<&str>| (Vec::new(), String::new());
    let ids = |v: Vec<KeyRecord>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    let g0 = store.generation().await.unwrap();
    store
        .insert_key(&record("chg_a", "hash_a"), &mut no_audit)
        .await
        .unwrap();
    store
        .insert_key(&record("chg_b", "hash_b"), &mut no_audit)
        .await
        .unwrap();
    let g1 = store.generation().await.unwrap();
    assert_eq!(
        ids(store.keys_changed_since(g0).await.unwrap()),
        ["chg_a", "chg_b"]
    );
    assert!(store.keys_changed_since(g1).await.unwrap().is_empty());
    store
        .set_key_suspension("chg_b", Some((5, "test")), &mut no_audit)
        .await
        .unwrap();
    let changed = store.keys_changed_since(g1).await.unwrap();
    assert_eq!(ids(changed.clone()), ["chg_b"]);
    assert_eq!(changed[0].suspended_at, Some(5));
    let g2 = store.generation().await.unwrap();
    store
        .rotate_key("chg_a", "hash_a2", "kw_dev_Cd", 99, &mut no_audit)
        .await
        .unwrap();
    store
        .revoke_key("chg_b", "gone", 7, &mut no_audit)
        .await
        .unwrap();
    assert_eq!(
        ids(store.keys_changed_since(g2).await.unwrap()),
        ["chg_a", "chg_b"]
    );
    store
        .update_key_limits(
            "chg_a",
            Some("team"),
            [Some(5), None, None, None, None],
            &mut no_audit,
        )
        .await
        .unwrap();
    let g3 = store.generation().await.unwrap();
    assert_eq!(
        ids(store.keys_changed_since(g3 - 1).await.unwrap()),
        ["chg_a"]
    );

    // Leases: one holder at a time; renewed by its holder; taken once run out.
    assert!(store.hold_lease("job", "rep_1", 1_000, 100).await.unwrap());
    assert!(!store.hold_lease("job", "rep_2", 1_050, 100).await.unwrap());
    assert!(store.hold_lease("job", "rep_1", 1_090, 100).await.unwrap());
    assert!(!store.hold_lease("job", "rep_2", 1_180, 100).await.unwrap());
    assert!(store.hold_lease("job", "rep_2", 1_191, 100).await.unwrap());
    assert!(!store.hold_lease("job", "rep_1", 1_200, 100).await.unwrap());
    store.release_lease("job", "rep_2").await.unwrap();
    assert!(store.hold_lease("job", "rep_1", 1_201, 100).await.unwrap());
    // Another job's lease is its own.
    assert!(store
        .hold_lease("other", "rep_2", 1_201, 100)
        .await
        .unwrap());
}

async fn exercise_usage(store: &Store) {
    use keyward_store::{UsageGroup, UsageRow};
    let row = |at_ms: i64, model: &str, input: i64, cost: Option<i64>, complete: bool| UsageRow {
        at_ms,
        request_id: format!("req_{at_ms}"),
        key_id: "key_a".into(),
        environment: "prod".into(),
        provider: "openai".into(),
        model: model.into(),
        endpoint: "chat.completions".into(),
        status: 200,
        input_tokens: input,
        output_tokens: 2 * input,
        cached_input_tokens: 1,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        cost_pico: cost,
        complete,
        subject: None,
        owner: None,
    };
    // 2026-12-01T23:59:59Z and 2026-12-02T00:00:01Z: two UTC days.
    let (late, early) = (1_796_169_599_000, 1_796_169_601_000);
    store
        .insert_usage(&[
            row(late, "gpt-4o-mini", 10, Some(1_000), true),
            row(early, "gpt-4o-mini", 5, Some(500), false),
            row(early, "house-model", 7, None, true),
        ])
        .await
        .unwrap();
    let by_model = store.usage_totals(UsageGroup::Model, 0).await.unwrap();
    assert_eq!(by_model.len(), 2);
    assert_eq!(by_model[0].group, "gpt-4o-mini");
    assert_eq!(
        (
            by_model[0].requests,
            by_model[0].input_tokens,
            by_model[0].output_tokens
        ),
        (2, 15, 30)
    );
    assert_eq!((by_model[0].cost_pico, by_model[0].incomplete), (1_500, 1));
    assert_eq!((by_model[1].cost_pico, by_model[1].unpriced), (0, 1));
    let by_day = store.usage_totals(UsageGroup::Day, 0).await.unwrap();
    let days: Vec<(&str, i64)> = by_day
        .iter()
        .map(|t| (t.group.as_str(), t.requests))
        .collect();
    assert_eq!(days, [("2026-12-01", 1), ("2026-12-02", 2)]);
    let by_owner = store.usage_totals(UsageGroup::Owner, 0).await.unwrap();
    assert_eq!(
        by_owner.len(),
        1,
        "key_a is in no client_keys row: owner `-`"
    );
    assert_eq!((by_owner[0].group.as_str(), by_owner[0].requests), ("-", 3));
    let since = store.usage_totals(UsageGroup::Key, early).await.unwrap();
    assert_eq!(
        since[0].requests, 2,
        "`since` is inclusive and excludes older rows"
    );
    // A batch longer than one statement takes: every row lands, in order of the
    // statements, and the hourly view counts them.
    let batch: Vec<UsageRow> = (0..150)
        .map(|i| UsageRow {
            key_id: "key_batch".into(),
            request_id: format!("req_batch_{i}"),
            ..row(early + i, "gpt-4o-mini", 1, Some(10), true)
        })
        .collect();
    store.insert_usage(&batch).await.unwrap();
    let batch_totals = store.usage_totals(UsageGroup::Key, 0).await.unwrap();
    let b = batch_totals
        .iter()
        .find(|t| t.group == "key_batch")
        .unwrap();
    assert_eq!((b.requests, b.cost_pico), (150, 1_500));
    let hourly = store.usage_hourly(0).await.unwrap();
    assert!(
        hourly.contains(&(
            "key_batch".to_string(),
            early / 3_600_000,
            150,
            150 * 4,
            1_500
        )),
        "{hourly:?}"
    );
}

#[tokio::test]
async fn sqlite_store_works_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    exercise(store.clone()).await;
    exercise_usage(&store).await;
    exercise_changes_and_leases(&store).await;
    exercise_console(&store).await;
    assert!(
        store.change_listener().await.unwrap().is_none(),
        "SQLite has no change notices (servers poll it)"
    );
    store.close().await;
    let again = Store::open(&url).await.unwrap();
    assert_eq!(
        again.keys().await.unwrap().len(),
        3,
        "data and migrations persist"
    );
}

#[tokio::test]
async fn postgres_store_works() {
    let url = fresh_pg_db().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    exercise(store.clone()).await;
    exercise_usage(&store).await;
    exercise_changes_and_leases(&store).await;
    exercise_console(&store).await;
    // Every committed change is announced to listeners; nothing before it.
    let mut listener = store.change_listener().await.unwrap().unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(200), listener.next()).await;
    assert!(quiet.is_err(), "no notice without a change");
    let mut no_audit = |_: i64, _: Option<&str>| (Vec::new(), String::new());
    store
        .set_key_suspension("chg_a", Some((9, "notice")), &mut no_audit)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
        .await
        .expect("a notice within 5 s of the commit")
        .unwrap();
    store.close().await;
    // Reopening runs no migration twice.
    Store::open(&url).await.unwrap();
}

#[tokio::test]
async fn bad_urls_are_explained() {
    let e = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(e.contains("sqlite://") && e.contains("postgres://"), "{e}");
    let e = Store::open("postgres://nobody:hunter2@127.0.0.1:1/x") // keyward:allow (test fixture)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !e.contains("hunter2"),
        "passwords never reach error messages: {e}"
    );
}

/// Console sessions, alert acknowledgements, audit search and daily usage.
async fn exercise_console(store: &Store) {
    use keyward_store::{AlertRow, AuditFilter, AuditRow, SessionRow, UsageGroup};
    let session = SessionRow {
        id_hash: "h_session".into(),
        admin_key_id: "adm_1".into(),
        created_ms: 1_000,
        seen_ms: 1_000,
        expires_ms: 10_000,
    };
    store.insert_session(&session).await.unwrap();
    assert_eq!(
        store.session("h_session").await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.session("h_other").await.unwrap(), None);
    store.touch_session("h_session", 5_000).await.unwrap();
    assert_eq!(
        store.session("h_session").await.unwrap().unwrap().seen_ms,
        5_000
    );
    store
        .insert_session(&SessionRow {
            id_hash: "h_idle".into(),
            seen_ms: 2_000,
            ..session.clone()
        })
        .await
        .unwrap();
    // At 6 s with a 2 s idle limit: the one seen at 2 s goes, the one at 5 s stays.
    assert_eq!(store.delete_stale_sessions(6_000, 4_000).await.unwrap(), 1);
    assert!(store.session("h_session").await.unwrap().is_some());
    assert_eq!(
        store.delete_stale_sessions(10_000, 0).await.unwrap(),
        1,
        "past its end"
    );
    assert!(!store.delete_session("h_session").await.unwrap());

    store
        .insert_alert(&AlertRow {
            id: "alrt_1".into(),
            at_ms: 1,
            kind: "spike".into(),
            severity: "high".into(),
            key_id: None,
            body: "{}".into(),
            delivery: "log_only".into(),
            attempts: 0,
            last_error: None,
            acked_ms: None,
            acked_by: None,
        })
        .await
        .unwrap();
    assert!(store
        .acknowledge_alert("alrt_1", "console:adm_1", 7)
        .await
        .unwrap());
    assert!(
        !store
            .acknowledge_alert("alrt_1", "console:adm_2", 8)
            .await
            .unwrap(),
        "the first acknowledgement stands"
    );
    assert!(!store.acknowledge_alert("alrt_none", "x", 8).await.unwrap());
    let (open, count) = store.open_alerts(0, 10).await.unwrap();
    assert!(open.iter().all(|a| a.id != "alrt_1") && count == open.len() as i64);
    let a = &store.alerts(0, false, 10).await.unwrap()[0];
    assert_eq!(
        (a.acked_ms, a.acked_by.as_deref()),
        (Some(7), Some("console:adm_1"))
    );

    let first = store.keys().await.unwrap().remove(0);
    assert_eq!(store.key(&first.id).await.unwrap(), Some(first));
    assert_eq!(store.key("key_none").await.unwrap(), None);

    let before = store.audit_last_seq().await.unwrap();
    let entries = [
        ("admin-api:adm_1", "keys.create", "key_a", 100),
        ("console:adm_1", "keys.revoke", "key_a", 200),
        ("key_a", "request.refused", "/v1/chat", 300),
        ("console:adm_1", "vault.put", "openai_%", 400),
    ];
    store
        .append_audit(|last, _| {
            let rows = entries
                .iter()
                .enumerate()
                .map(|(i, (actor, action, target, at))| AuditRow {
                    seq: last + 1 + i as i64,
                    at: *at,
                    actor: actor.to_string(),
                    action: action.to_string(),
                    target: target.to_string(),
                    outcome: "ok".into(),
                    details: "{}".into(),
                    prev_mac: "p".into(),
                    mac: "m".into(),
                })
                .collect();
            (rows, "head".into())
        })
        .await
        .unwrap();
    let search = |f: AuditFilter| async move {
        store
            .audit_search(&f, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.seq > before)
            .map(|r| r.at)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        search(AuditFilter::default()).await,
        [400, 300, 200, 100],
        "newest first"
    );
    let f = |actor: Option<&str>, action: Option<&str>, key: Option<&str>| AuditFilter {
        actor: actor.map(Into::into),
        action: action.map(Into::into),
        key: key.map(Into::into),
        ..Default::default()
    };
    assert_eq!(search(f(Some("console:"), None, None)).await, [400, 200]);
    assert_eq!(search(f(None, Some("keys."), None)).await, [200, 100]);
    assert_eq!(search(f(None, None, Some("key_a"))).await, [300, 200, 100]);
    assert_eq!(
        search(f(Some("console:"), Some("keys."), Some("key_a"))).await,
        [200]
    );
    assert_eq!(
        search(f(Some("%"), None, None)).await,
        Vec::<i64>::new(),
        "no LIKE wildcards"
    );
    assert_eq!(
        search(f(None, Some("vault.put_"), None)).await,
        Vec::<i64>::new()
    );
    let window = AuditFilter {
        since: Some(200),
        until: Some(400),
        ..Default::default()
    };
    assert_eq!(
        search(window).await,
        [300, 200],
        "since inclusive, until exclusive"
    );
    assert_eq!(
        store
            .audit_search(&AuditFilter::default(), 2)
            .await
            .unwrap()
            .len(),
        2
    );

    // exercise_usage stored 2026-12-01 and 2026-12-02 rows.
    let daily = store.usage_daily(UsageGroup::Model, 0).await.unwrap();
    let got: Vec<(&str, &str, i64)> = daily
        .iter()
        .filter(|d| d.group != "house-model")
        .map(|d| (d.day.as_str(), d.group.as_str(), d.requests))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-12-01", "gpt-4o-mini", 1),
            ("2026-12-02", "gpt-4o-mini", 151)
        ]
    );
    let first = &daily[0];
    assert_eq!((first.tokens, first.cost_pico), (10 + 20 + 1, 1_000));
}
