//! `keyward scan` over files, directories, stdin and archives, through the real binary.

mod common;
use common::*;
use std::fs;

const SEED_A: &str = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
const SEED_B: &str = "Qm8Wn3Rb7Tc2Vd6Xe1Yf5Zg9Ah4Bj0";

#[test]
fn finds_a_token_in_a_file_with_position_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let tok = github_pat(SEED_A);
    fs::write(
        dir.path().join("config.py"),
        format!("import os\n\nTOKEN = \"{tok}\"\n"),
    )
    .unwrap();
    let out = run_in(dir.path(), &["scan", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(1), "findings exit 1");
    let f = findings(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["rule_id"], "github-classic-pat");
    assert_eq!(f[0]["path"], "config.py");
    assert_eq!(f[0]["line"], 3);
    assert_eq!(f[0]["column"], 10);
    assert_eq!(f[0]["fingerprint"].as_str().unwrap().len(), 32);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(&tok), "the secret must be redacted");
    assert!(!stdout.contains(SEED_A));

    let shown = run_in(
        dir.path(),
        &["scan", "--format", "json", "--show-secrets"],
        None,
    );
    assert_eq!(findings(&shown)[0]["secret"], tok.as_str());
}

#[test]
fn clean_tree_exits_zero_and_missing_path_exits_two_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.txt"), "nothing to see\n").unwrap();
    let out = run_in(dir.path(), &["scan"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no secrets found"));
    let missing = run_in(dir.path(), &["scan", "does-not-exist"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("check the path"));
    let bad_flag = run_in(dir.path(), &["scan", "--frobnicate"], None);
    assert_eq!(bad_flag.status.code(), Some(2));
}

#[test]
fn stdin_is_scanned_as_dash() {
    let dir = tempfile::tempdir().unwrap();
    let key = keyward_key("prod", "Q7mZx2Lp9Vt4Rk8Nw3Hs6Bc1Df5Gj0Ya");
    let out = run_in(
        dir.path(),
        &["scan", "-", "-f", "json"],
        Some(format!("export KW={key}\n").as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    let f = findings(&out);
    assert_eq!(f[0]["path"], "-");
    assert_eq!(f[0]["rule_id"], "keyward-client-key");
    assert_eq!(f[0]["environment"], "prod");
}

#[test]
fn gitignored_binary_and_oversized_files_are_skipped_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let tok = github_pat(SEED_A);
    git_init(dir.path());
    fs::write(dir.path().join(".gitignore"), "ignored.txt\n").unwrap();
    fs::write(dir.path().join("ignored.txt"), &tok).unwrap();
    let mut bin = b"\0\x01\x02binary\n".to_vec();
    bin.extend_from_slice(tok.as_bytes());
    fs::write(dir.path().join("blob.bin"), &bin).unwrap();
    fs::write(
        dir.path().join("big.txt"),
        format!("{}\n{tok}\n", "a".repeat(4096)),
    )
    .unwrap();
    fs::write(
        dir.path().join(".env"),
        format!("GH={}\n", github_pat(SEED_B)),
    )
    .unwrap();

    let out = run_in(
        dir.path(),
        &["scan", "-f", "json", "--max-file-size", "2K"],
        None,
    );
    let paths: Vec<String> = findings(&out)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        vec![".env"],
        "hidden files are scanned; ignored, binary, oversized are not"
    );

    let all = run_in(
        dir.path(),
        &["scan", "-f", "json", "--no-ignore", "--include-binary"],
        None,
    );
    let mut paths: Vec<String> = findings(&all)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, vec![".env", "big.txt", "blob.bin", "ignored.txt"]);
}

#[test]
fn archives_are_opened_and_members_named() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let tok = github_pat(SEED_A);
    let zip_path = dir.path().join("bundle.zip");
    let mut zw = zip::ZipWriter::new(fs::File::create(&zip_path).unwrap());
    zw.start_file("app/settings.ini", zip::write::SimpleFileOptions::default())
        .unwrap();
    zw.write_all(format!("[gh]\ntoken = {tok}\n").as_bytes())
        .unwrap();
    zw.finish().unwrap();

    let tgz = fs::File::create(dir.path().join("src.tar.gz")).unwrap();
    let mut tb = tar::Builder::new(flate2::write::GzEncoder::new(
        tgz,
        flate2::Compression::default(),
    ));
    let body = format!(
        "KW={}\n",
        keyward_key("dev", "Q7mZx2Lp9Vt4Rk8Nw3Hs6Bc1Df5Gj0Ya")
    );
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tb.append_data(&mut h, "pkg/.env", body.as_bytes()).unwrap();
    tb.into_inner().unwrap().finish().unwrap();

    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    let f = findings(&out);
    let got: Vec<(String, i64)> = f
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["line"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("bundle.zip!app/settings.ini".to_string(), 2),
            ("src.tar.gz!pkg/.env".to_string(), 1)
        ]
    );

    let off = run_in(dir.path(), &["scan", "-f", "json", "--no-archives"], None);
    assert!(
        findings(&off).is_empty(),
        "archives are binary when not opened"
    );
}

#[test]
fn encoded_secrets_are_decoded_and_point_at_the_original() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let tok = github_pat(SEED_A);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("GITHUB_TOKEN={tok}"));
    fs::write(
        dir.path().join("secret.yaml"),
        format!("apiVersion: v1\nkind: Secret\ndata:\n  env: {b64}\n"),
    )
    .unwrap();
    let out = run_in(dir.path(), &["scan", "-f", "json"], None);
    let f = findings(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["encoding"], "base64");
    assert_eq!(
        (f[0]["line"].as_i64(), f[0]["column"].as_i64()),
        (Some(4), Some(8))
    );
    let none = run_in(dir.path(), &["scan", "-f", "json", "--no-decode"], None);
    assert!(findings(&none).is_empty());
}

#[test]
fn absolute_paths_outside_the_working_directory_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = dir.path().join("creds.txt");
    fs::write(&file, github_pat(SEED_A)).unwrap();
    fs::write(elsewhere.path().join(".keywardignore"), "*.txt\n").unwrap();
    let out = run_in(
        elsewhere.path(),
        &[
            "scan",
            "-f",
            "json",
            file.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = findings(&out);
    assert!(!f.is_empty());
    assert!(f.iter().all(|f| f["path"] == file.to_str().unwrap()));
}

#[test]
fn rules_command_lists_every_rule() {
    let out = keyward().args(["rules", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 90);
    for id in [
        "github-classic-pat",
        "keyward-client-key",
        "openai-project-key",
        "anthropic-api-key",
        "aws-access-key-id",
    ] {
        assert!(ids.contains(&id), "missing {id}");
    }
}
