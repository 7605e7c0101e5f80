//! Git history, the index (`--staged`) and the pre-commit hook, in real repositories.

mod common;
use common::*;
use std::fs;
use std::process::Command;

const SEED_A: &str = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
const SEED_B: &str = "Qm8Wn3Rb7Tc2Vd6Xe1Yf5Zg9Ah4Bj0";

#[test]
fn history_reports_the_commit_that_introduced_a_secret_removed_since() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git_init(d);
    fs::write(d.join("README.md"), "hello\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "init"]);
    let tok = github_pat(SEED_A);
    fs::write(
        d.join("deploy.sh"),
        format!("#!/bin/sh\nexport GH_TOKEN={tok}\n"),
    )
    .unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "add deploy"]);
    let leak_commit = git(d, &["rev-parse", "HEAD"]);
    // Edit the file (new blob with the same secret), rename it, then delete it.
    fs::write(
        d.join("deploy.sh"),
        format!("#!/bin/sh\nset -e\nexport GH_TOKEN={tok}\n"),
    )
    .unwrap();
    git(d, &["commit", "-qam", "edit"]);
    git(d, &["mv", "deploy.sh", "ops.sh"]);
    git(d, &["commit", "-qm", "rename"]);
    git(d, &["rm", "-q", "ops.sh"]);
    git(d, &["commit", "-qm", "remove"]);
    // A secret only on another branch.
    git(d, &["checkout", "-qb", "side"]);
    fs::write(
        d.join("side.env"),
        format!(
            "KW={}\n",
            keyward_key("test", "Q7mZx2Lp9Vt4Rk8Nw3Hs6Bc1Df5Gj0Ya")
        ),
    )
    .unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "side"]);
    git(d, &["checkout", "-q", "main"]);

    let working_tree = run_in(d, &["scan", "-f", "json"], None);
    assert!(
        findings(&working_tree).is_empty(),
        "the working tree is clean"
    );

    let out = run_in(d, &["scan", "--git", "-f", "json"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = findings(&out);
    let gh: Vec<_> = f
        .iter()
        .filter(|f| f["rule_id"] == "github-classic-pat")
        .collect();
    // deploy.sh (introduced in "add deploy"); ops.sh has the same blob as deploy.sh's
    // last version, which was already scanned once.
    assert_eq!(gh.len(), 1, "{f:#?}");
    assert_eq!(gh[0]["path"], "deploy.sh");
    assert_eq!(gh[0]["commit"], leak_commit.as_str());
    assert_eq!(gh[0]["author"], "Ada Lovelace");
    assert_eq!(gh[0]["email"], "ada@example.org");
    assert_eq!(gh[0]["line"], 2);
    assert!(gh[0]["date"].as_str().unwrap().len() >= 20);
    assert!(f.iter().any(|f| f["rule_id"] == "keyward-client-key"
        && f["path"] == "side.env"
        && f["environment"] == "test"));

    let not_repo = tempfile::tempdir().unwrap();
    let bad = run_in(not_repo.path(), &["scan", "--git"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("git"));
}

#[test]
fn history_reports_every_distinct_secret_once_with_its_first_commit_and_every_path() {
    const SEED_C: &str = "Hx5Kp2Qm9Rt4Vw7Yz1Bc3Df6Gj8Ln0";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git_init(d);
    // Three commits, each putting a different token at the same place.
    let mut commits = Vec::new();
    for (i, seed) in [SEED_A, SEED_B, SEED_C].iter().enumerate() {
        fs::write(d.join("k.txt"), format!("{}\n", github_pat(seed))).unwrap();
        git(d, &["add", "."]);
        git(d, &["commit", "-qm", &format!("key {i}")]);
        commits.push(git(d, &["rev-parse", "HEAD"]));
    }
    // The last token copied into another file (a new blob) two commits later.
    fs::write(d.join("notes.md"), "todo\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "notes"]);
    fs::write(
        d.join("deploy.env"),
        format!("# copied\nGH={}\n", github_pat(SEED_C)),
    )
    .unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "copy"]);

    let out = run_in(d, &["scan", "--git", "-f", "json"], None);
    assert_eq!(out.status.code(), Some(1));
    let f = findings(&out);
    let gh: Vec<_> = f
        .iter()
        .filter(|f| f["rule_id"] == "github-classic-pat")
        .collect();
    assert_eq!(gh.len(), 3, "one finding per distinct token: {f:#?}");
    for (i, c) in commits.iter().enumerate() {
        assert!(
            gh.iter()
                .any(|f| f["path"] == "k.txt" && f["commit"] == c.as_str()),
            "token {i} reported at its own commit: {gh:#?}"
        );
    }
    let copied: Vec<_> = gh
        .iter()
        .filter(|f| f["commit"] == commits[2].as_str())
        .collect();
    assert_eq!(copied.len(), 1);
    assert_eq!(
        copied[0]["paths"],
        serde_json::json!(["deploy.env"]),
        "{copied:#?}"
    );

    // Only the commits after the second one: the third token, at both paths.
    let out = run_in(
        d,
        &["scan", "--git", "--since-commit", &commits[1], "-f", "json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["commit"], commits[2].as_str());
    // Nothing after HEAD itself.
    let out = run_in(d, &["scan", "--git", "--since-commit", "HEAD"], None);
    assert_eq!(out.status.code(), Some(0));
    // A name that is no commit, or looks like an option, is refused with the reason.
    for bad in ["no-such-branch", "--all"] {
        let out = run_in(
            d,
            &["scan", "--git", &format!("--since-commit={bad}")],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad), "{err}");
    }
}

#[test]
fn staged_scans_the_index_not_the_working_tree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git_init(d);
    fs::write(d.join("a.txt"), "clean\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "init"]);
    // Staged: a secret. Working tree: the secret removed again (not staged).
    fs::write(d.join("a.txt"), format!("clean\n{}\n", github_pat(SEED_A))).unwrap();
    git(d, &["add", "a.txt"]);
    fs::write(d.join("a.txt"), "clean\n").unwrap();
    // Working tree only: an unstaged secret is not the hook's business.
    fs::write(d.join("b.txt"), github_pat(SEED_B)).unwrap();
    let out = run_in(d, &["scan", "--staged", "-f", "json"], None);
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0]["path"].as_str(), f[0]["line"].as_i64()),
        (Some("a.txt"), Some(2))
    );
}

#[test]
fn installed_hook_blocks_a_real_commit_and_allows_a_clean_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git_init(d);
    let out = run_in(d, &["hook", "install"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fs::write(d.join("ok.txt"), "fine\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "clean commit"]);

    fs::write(d.join("leak.env"), format!("T={}\n", github_pat(SEED_A))).unwrap();
    git(d, &["add", "."]);
    let commit = Command::new("git")
        .current_dir(d)
        .args(["commit", "-qm", "leak"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!commit.status.success(), "the hook must block the commit");
    let msg = String::from_utf8_lossy(&commit.stdout).to_string()
        + &String::from_utf8_lossy(&commit.stderr);
    assert!(msg.contains("leak.env:1:3"), "the hook says where: {msg}");
    for next in ["keyward:allow", "--write-baseline", "--no-verify"] {
        assert!(
            msg.contains(next),
            "the hook says what to do next ({next}): {msg}"
        );
    }
    assert_eq!(
        git(d, &["rev-list", "--count", "HEAD"]),
        "1",
        "nothing was committed"
    );

    // A foreign hook is not overwritten without --force.
    let hooks = d.join(".git/hooks/pre-commit");
    fs::write(&hooks, "#!/bin/sh\nexit 0\n").unwrap();
    let refused = run_in(d, &["hook", "install"], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    // With --force it is kept as a backup, and a second --force keeps both.
    for (n, backup) in ["pre-commit.keyward-backup", "pre-commit.keyward-backup.1"]
        .iter()
        .enumerate()
    {
        let custom = format!("#!/bin/sh\necho custom {n}\n");
        fs::write(&hooks, &custom).unwrap();
        let forced = run_in(d, &["hook", "install", "--force"], None);
        assert!(forced.status.success());
        assert!(String::from_utf8_lossy(&forced.stdout).contains(backup));
        assert_eq!(
            fs::read_to_string(d.join(".git/hooks").join(backup)).unwrap(),
            custom
        );
        assert!(fs::read_to_string(&hooks).unwrap().contains("keyward"));
    }
}

#[test]
fn git_modes_outside_a_repository_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["scan", "--staged"][..], &["scan", "--git"]] {
        let out = run_in(dir.path(), args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("is not in a git repository"), "{err}");
        assert!(!err.contains("usage: git"), "{err}");
    }
}

#[test]
fn history_summaries_count_files_and_file_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git_init(d);
    // One file, two versions, two different secrets.
    fs::write(d.join("app.env"), format!("A={}\n", github_pat(SEED_A))).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "one"]);
    fs::write(
        d.join("app.env"),
        format!("A={}\nB={}\n", github_pat(SEED_A), github_pat(SEED_B)),
    )
    .unwrap();
    git(d, &["commit", "-qam", "two"]);
    let out = run_in(d, &["scan", "--git", "--no-progress"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 secrets found in 1 file;"), "{text}");
    assert!(text.contains("scanned 2 file versions"), "{text}");
}
