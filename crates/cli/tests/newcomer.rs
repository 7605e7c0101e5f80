//! What a newcomer ran into (issue 11): commands that silently created stores,
//! hints that named the wrong config, listings without headers or states, audit
//! output, secrets echoed from the command line, and a server that died on SIGHUP.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// A config with one provider whose credential is not stored yet.
fn config(dir: &Path, port: u16) -> String {
    let cfg = dir.join("gw.toml");
    fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[[providers]]\nname = \"openai\"\nkind = \"openai\"\n\
             base_url = \"http://127.0.0.1:9/v1\"\ncredential = \"openai-prod\"\nmodels = [\"gpt-4o-mini\"]\n"
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

#[test]
fn only_init_and_serve_create_a_store_and_other_commands_say_where_they_looked() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["audit", "verify"][..],
        &["keys", "list"],
        &["vault", "list"],
        &["admin", "list"],
        &["config", "check"],
    ] {
        let out = run_in(dir.path(), args, Some(b"sk-never-read"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let t = text(&out);
        assert!(t.contains("no Keyward store at"), "{args:?}: {t}");
        assert!(t.contains("keyward-data"), "{args:?} names the place: {t}");
        assert!(t.contains("KEYWARD_HOME") && t.contains("--config"), "{t}");
        assert!(
            !dir.path().join("keyward-data").exists(),
            "{args:?} created a store"
        );
    }
    // The same with a config file whose store does not exist.
    let c = config(dir.path(), 9);
    let out = run_in(
        dir.path(),
        &["vault", "put", "openai-prod", "--config", &c],
        Some(b"x"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("keyward init --config"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("keyward.db").exists());

    let out = ok(run_in(dir.path(), &["init", "--config", &c], None));
    assert!(text(&out).contains("created"), "{}", text(&out));
    assert!(dir.path().join("keyward.db").exists());
    assert!(dir.path().join("master.key").exists());
    // Config check: the missing credential, with a command that reaches this store.
    let out = run_in(dir.path(), &["config", "check", "--config", &c], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("provider openai") && t.contains("gpt-4o-mini"),
        "{t}"
    );
    assert!(
        t.contains(&format!("vault put openai-prod < key.txt --config {c}")),
        "{t}"
    );
    ok(run_in(
        dir.path(),
        &["vault", "put", "openai-prod", "--config", &c],
        Some(b"sk-test-value\n"),
    ));
    let out = ok(run_in(
        dir.path(),
        &["config", "check", "--config", &c],
        None,
    ));
    assert!(text(&out).ends_with("ok\n"), "{}", text(&out));
}

#[test]
fn a_secret_typed_on_the_command_line_is_never_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ["sk-proj-", "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0FaQ"].concat();
    let out = run_in(dir.path(), &["vault", "put", "openai-prod", &secret], None);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(!t.contains(&secret) && !t.contains("Zr4vT9"), "{t}");
    assert!(t.contains("standard input"), "{t}");
}

#[test]
fn listings_have_headers_states_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 9);
    init_store(dir.path(), &c);
    let create = |name: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "keys", "create", "--config", &c, "--name", name, "--env", "prod", "--models",
            "gpt-4o*", "--json",
        ];
        args.extend_from_slice(extra);
        let out = ok(run_in(dir.path(), &args, None));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let live = create("live", &[]);
    let short = create("short", &["--expires", "1s"]);
    let decoy = create("decoy", &["--canary"]);
    let gone = create("gone", &[]);
    ok(run_in(
        dir.path(),
        &["keys", "revoke", &gone, "--config", &c],
        None,
    ));
    std::thread::sleep(Duration::from_millis(2100));
    let out = ok(run_in(dir.path(), &["keys", "list", "--config", &c], None));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let header = t.lines().next().unwrap();
    for col in ["ID", "STATE", "ENV", "MODELS", "EXPIRES", "LAST USED"] {
        assert!(header.contains(col), "{header}");
    }
    let row = |id: &str| t.lines().find(|l| l.starts_with(id)).unwrap().to_string();
    assert!(
        row(&live).contains("active") && row(&live).contains("gpt-4o*"),
        "{t}"
    );
    assert!(row(&short).contains("expired"), "{t}");
    assert!(row(&decoy).contains("(canary)"), "{t}");
    assert!(row(&gone).contains("revoked"), "{t}");
    assert!(
        row(&live).contains("T") && row(&live).contains("Z"),
        "RFC 3339 expiry: {t}"
    );
    let json = ok(run_in(
        dir.path(),
        &["keys", "list", "--config", &c, "--json"],
        None,
    ));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == short.as_str() && k["state"] == "expired"));
    // Resuming a revoked key says so.
    let out = run_in(dir.path(), &["keys", "resume", &gone, "--config", &c], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is revoked"), "{}", text(&out));

    // Audit: RFC 3339 in tables, --since as a duration, details as an object,
    // vault rotate as vault.rotate, export --json.
    ok(run_in(
        dir.path(),
        &["vault", "put", "openai-prod", "--config", &c],
        Some(b"v1\n"),
    ));
    ok(run_in(
        dir.path(),
        &["vault", "rotate", "openai-prod", "--config", &c],
        Some(b"v2\n"),
    ));
    let out = ok(run_in(
        dir.path(),
        &["audit", "search", "--config", &c, "--since", "1h"],
        None,
    ));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(t.lines().next().unwrap().contains("TIME"), "{t}");
    assert!(
        t.contains("vault.rotate") && t.contains("keys.revoke"),
        "{t}"
    );
    let out = ok(run_in(
        dir.path(),
        &["audit", "export", "--json", "--config", &c],
        None,
    ));
    let rotate = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["action"] == "vault.rotate")
        .expect("vault rotate is recorded as vault.rotate");
    assert_eq!(rotate["details"]["version"], 2, "{rotate}");
    assert!(rotate["time"].as_str().unwrap().ends_with('Z'));
    let bad = run_in(
        dir.path(),
        &["audit", "search", "--config", &c, "--since", "yesterday"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("30m, 1h, 7d"), "{}", text(&bad));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_lists_providers_warns_about_credentials_survives_sighup_and_explains_a_busy_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let c = config(dir.path(), port);
    let log = dir.path().join("serve.log");
    let mut child = keyward()
        .current_dir(dir.path())
        .args(["serve", "--config", &c])
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGHUP: logged and ignored.
    unsafe {
        libc_kill(child.id() as i32, 1);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // A second server on the same port says what to do.
    let second = run_in(dir.path(), &["serve", "--config", &c], None);
    assert_eq!(second.status.code(), Some(2));
    assert!(text(&second).contains("--listen"), "{}", text(&second));
    child.kill().unwrap();
    child.wait().unwrap();
    let t = fs::read_to_string(&log).unwrap();
    assert!(
        t.contains("provider `openai`") && t.contains("gpt-4o-mini"),
        "{t}"
    );
    assert!(!t.contains("no providers configured"), "{t}");
    assert!(
        t.contains(&format!("vault put openai-prod < key.txt --config {c}")),
        "the hint names the config in use: {t}"
    );
    assert!(t.contains("SIGHUP ignored"), "{t}");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn config_check_lists_the_issuers_and_a_missing_hmac_secret() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 9);
    let issuers = "\n[[identity.issuers]]\nname = \"app\"\nissuer = \"https://login.example.com/\"\n\
        audience = [\"keyward\"]\njwks_url = \"https://login.example.com/jwks.json\"\n\
        allowed_origins = [\"https://app.example.com\"]\n\
        [[identity.issuers.rules]]\nenvironment = \"prod\"\nmodels = [\"*\"]\n\
        \n[[identity.issuers]]\nname = \"svc\"\nissuer = \"https://svc.example\"\naudience = [\"keyward\"]\n\
        hs256_secret = \"svc-hmac\"\nalgorithms = [\"HS256\"]\nuse = \"exchange\"\n\
        [[identity.issuers.rules]]\nenvironment = \"ci\"\nmodels = [\"gpt-4o-mini\"]\n";
    let base = fs::read_to_string(&c).unwrap();
    fs::write(&c, format!("{base}{issuers}")).unwrap();
    ok(run_in(dir.path(), &["init", "--config", &c], None));
    ok(run_in(
        dir.path(),
        &["vault", "put", "openai-prod", "--config", &c],
        Some(b"sk-test-value\n"),
    ));
    let out = run_in(dir.path(), &["config", "check", "--config", &c], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("issuer app (tokens on API calls): https://login.example.com/; keys from https://login.example.com/jwks.json; 1 rule(s); browser origins https://app.example.com"),
        "{t}"
    );
    assert!(t.contains("issuer svc (exchanged at /v1/token)"), "{t}");
    assert!(
        t.contains("MISSING HS256 secret `svc-hmac`")
            && t.contains(&format!("vault put svc-hmac < secret.txt --config {c}")),
        "{t}"
    );
    // A rule the key checks refuse stops the check with the rule named.
    fs::write(
        &c,
        format!("{base}{}", issuers.replace("\"ci\"", "\"Prod!\"")),
    )
    .unwrap();
    let out = run_in(dir.path(), &["config", "check", "--config", &c], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("`svc`, rule 1: environment `Prod!`"),
        "{}",
        text(&out)
    );
}
