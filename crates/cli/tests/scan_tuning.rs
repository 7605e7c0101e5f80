//! Suppression without forking: baselines, inline allows, the ignore file, config.

mod common;
use common::*;
use std::fs;

const SEED_A: &str = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
const SEED_B: &str = "Qm8Wn3Rb7Tc2Vd6Xe1Yf5Zg9Ah4Bj0";

#[test]
fn baseline_suppresses_known_findings_even_after_lines_move() {
    let dir = tempfile::tempdir().unwrap();
    let a = github_pat(SEED_A);
    fs::write(dir.path().join("app.env"), format!("A={a}\n")).unwrap();
    let w = run_in(
        dir.path(),
        &["scan", "--write-baseline", "baseline.json"],
        None,
    );
    assert_eq!(
        w.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&w.stderr)
    );
    let baseline = fs::read_to_string(dir.path().join("baseline.json")).unwrap();
    assert!(
        !baseline.contains(&a) && !baseline.contains(SEED_A),
        "a baseline never holds the secret"
    );

    // The known secret moves down; a new one appears.
    fs::write(
        dir.path().join("app.env"),
        format!("# moved\n\nA={a}\nB={}\n", github_pat(SEED_B)),
    )
    .unwrap();
    let out = run_in(
        dir.path(),
        &["scan", "-f", "json", "--baseline", "baseline.json"],
        None,
    );
    let f = findings(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["line"], 4);

    fs::write(dir.path().join("broken.json"), "{nope").unwrap();
    let bad = run_in(dir.path(), &["scan", "--baseline", "broken.json"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--write-baseline"));
}

#[test]
fn inline_allow_ignore_file_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let a = github_pat(SEED_A);
    let b = github_pat(SEED_B);
    fs::create_dir_all(dir.path().join("fixtures")).unwrap();
    fs::write(
        dir.path().join("allowed.py"),
        format!("T = '{a}'  # keyward:allow\n"),
    )
    .unwrap();
    fs::write(dir.path().join("fixtures/data.txt"), &b).unwrap();
    fs::write(dir.path().join("real.txt"), &b).unwrap();
    fs::write(dir.path().join(".keywardignore"), "fixtures/\n").unwrap();
    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    let paths: Vec<_> = findings(&out)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, vec!["real.txt"]);

    // Config: disable the rule entirely.
    fs::write(
        dir.path().join(".keyward.toml"),
        "[scan]\ndisable_rules = [\"github-classic-pat\"]\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    assert!(findings(&out).is_empty());

    // Config: allow a secret by regex, and add a custom rule.
    fs::write(
        dir.path().join(".keyward.toml"),
        format!(
            "[scan]\nallow_secrets = ['^ghp_{}']\n\n[[rule]]\nid = \"acme-token\"\nname = \"ACME token\"\nprovider = \"ACME\"\nkeywords = [\"acme_\"]\npattern = '''\\b(acme_[a-z0-9]{{20}})\\b'''\n",
            &SEED_B[..6]
        ),
    )
    .unwrap();
    fs::write(
        dir.path().join("acme.txt"),
        "x = acme_k3j5h7g9f1d2s4a6q8w0\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    let ids: Vec<_> = findings(&out)
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["acme-token"]);

    fs::write(
        dir.path().join(".keyward.toml"),
        "[scan]\ndisable_rules = [\"no-such-rule\"]\n",
    )
    .unwrap();
    let bad = run_in(dir.path(), &["scan"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-rule"));
}

#[test]
fn the_readme_config_example_pasted_as_is_scans_clean() {
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("```toml\n[scan]")
        .expect("README has the scan config example")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".keyward.toml"), &readme[start..end]).unwrap();
    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The custom rule it defines still works on other files.
    fs::write(
        dir.path().join("app.env"),
        "ACME=acme_9f2k4m6p8r1t3v5x7z0b2d4f6h8j1l3n\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    let ids: Vec<_> = findings(&out)
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["acme-internal-token"]);
}
