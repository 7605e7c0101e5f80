//! Shared helpers: secrets are built at run time (so the repository holds none) and
//! the real binary is driven as a user would.

#![allow(dead_code)]

pub mod serve;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A GitHub classic PAT with a valid checksum, made from `seed` (30 base62 chars).
pub fn github_pat(seed: &str) -> String {
    assert_eq!(seed.len(), 30);
    keyward_detect::checksum::github_style_seal("ghp_", seed)
}

/// A Keyward client key for `env` with a valid checksum.
pub fn keyward_key(env: &str, random32: &str) -> String {
    keyward_detect::checksum::keyward_key_seal(&format!("kw_{env}_{random32}"))
}

pub fn keyward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyward"));
    c.env("NO_COLOR", "1");
    c
}

/// Runs `keyward` with `args` in `dir`, optional stdin.
pub fn run_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = keyward();
    c.current_dir(dir).args(args).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("keyward runs");
    if let Some(data) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Parses a JSON report and returns its findings.
pub fn findings(out: &Output) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["findings"].as_array().unwrap().clone()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn git_init(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Ada Lovelace"]);
    git(dir, &["config", "user.email", "ada@example.org"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
}

/// `keyward init --config CONFIG` in `dir`: only `init` and `serve` create a store.
pub fn init_store(dir: &Path, config: &str) {
    let out = run_in(dir, &["init", "--config", config], None);
    assert!(
        out.status.success(),
        "keyward init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
