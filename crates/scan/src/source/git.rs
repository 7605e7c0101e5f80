//! Git sources, read through the `git` command: the whole history (every blob of
//! every commit reachable from any ref, each blob scanned once and attributed to the
//! first commit that introduced it) and the index (`--staged`, for pre-commit).
//!
//! `git` itself is used rather than a library: it is already required for the hooks
//! this tool installs, it reads every repository format git can (packs, alternates,
//! partial clones), and `cat-file --batch` streams blobs as fast as they decompress.

use crate::finding::CommitInfo;
use crate::scanner::Scanner;
use crate::source::{archive, Sink};
use crate::Error;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// One blob to scan, where it was first seen, and every other path it had.
struct BlobRef {
    oid: String,
    path: String,
    commit: Option<usize>,
    other_paths: Vec<String>,
}

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(repo);
    // Never page, never prompt, never translate messages we parse.
    c.env("GIT_PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    c
}

fn run_git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, Error> {
    let out = git(repo)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            Error::Git(format!(
                "cannot run git ({e}); install git or put it on PATH"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Git(format!(
            "`git {}` failed in {}: {}",
            args.join(" "),
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The top-level directory of the work tree containing `repo`, if any.
pub fn toplevel(repo: &Path) -> Option<std::path::PathBuf> {
    let out = run_git(repo, &["rev-parse", "--show-toplevel"]).ok()?;
    let s = String::from_utf8(out).ok()?;
    let s = s.trim_end_matches(['\n', '\r']);
    (!s.is_empty()).then(|| std::path::PathBuf::from(s))
}

/// Fails in one line, naming `repo` and what to do, unless `repo` is inside a git
/// work tree or repository (git's own answer there is its usage text).
fn require_repository(repo: &Path, what: &str) -> Result<(), Error> {
    let inside = git(repo)
        .args(["rev-parse", "--git-dir"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| {
            Error::Git(format!(
                "cannot run git ({e}); install git or put it on PATH"
            ))
        })?;
    if inside.success() {
        return Ok(());
    }
    Err(Error::Git(format!(
        "{} is not in a git repository: {what} reads a repository (give one with --repo or `--git PATH`, \
         or scan files with `keyward scan PATH`)",
        repo.display()
    )))
}

/// Scans every blob in the history of the repository at `repo`. Returns the
/// commit order (oldest first) so callers can keep the earliest of duplicates.
pub fn scan_history(
    scanner: &Scanner,
    sink: &Sink,
    repo: &Path,
    since: Option<&str>,
    threads: usize,
    archives: bool,
) -> Result<Vec<CommitInfo>, Error> {
    require_repository(repo, "--git")?;
    // Every ref, or only the commits after `since` (`since..HEAD`, for CI on a pull
    // request). A revision is never taken as an option.
    let range = match since {
        Some(rev) if rev.is_empty() || rev.starts_with('-') => {
            return Err(Error::Git(format!(
                "`{rev}` is not a revision; give a commit, tag or branch (e.g. origin/main)"
            )))
        }
        Some(rev) => {
            run_git(
                repo,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{rev}^{{commit}}"),
                ],
            )
            .map_err(|_| {
                Error::Git(format!(
                    "`{rev}` names no commit in {}; fetch it first or check the name",
                    repo.display()
                ))
            })?;
            format!("{rev}..HEAD")
        }
        None => "--all".to_string(),
    };
    let log = run_git(
        repo,
        &[
            "log",
            &range,
            "--topo-order",
            "--reverse",
            "-m",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "-z",
            "--format=%x1eC%H%x1f%an%x1f%ae%x1f%aI",
        ],
    )?;
    let (commits, blobs) = parse_log(&log);
    let blobs: Vec<BlobRef> = blobs
        .into_iter()
        .filter(|b| !scanner.suppress.path_ignored(&b.path, false))
        .collect();
    stream_blobs(scanner, sink, repo, &blobs, &commits, threads, archives)?;
    Ok(commits)
}

/// Scans the staged content (the index) of every file added, copied, modified,
/// renamed or retyped in the index relative to HEAD.
pub fn scan_staged(
    scanner: &Scanner,
    sink: &Sink,
    repo: &Path,
    threads: usize,
    archives: bool,
) -> Result<(), Error> {
    require_repository(repo, "--staged")?;
    let names = run_git(
        repo,
        &[
            "diff",
            "--cached",
            "--name-only",
            "-z",
            "--diff-filter=ACMRT",
        ],
    )?;
    let mut blobs = Vec::new();
    for p in names.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(p).into_owned();
        if path.contains('\n') {
            sink.warn(format!("{path:?}: a path with a newline cannot be read from the index; scan it with `keyward scan <path>`"));
            continue;
        }
        if !scanner.suppress.path_ignored(&path, false) {
            blobs.push(BlobRef {
                oid: format!(":{path}"),
                path,
                commit: None,
                other_paths: Vec::new(),
            });
        }
    }
    stream_blobs(scanner, sink, repo, &blobs, &[], threads, archives)
}

fn parse_log(log: &[u8]) -> (Vec<CommitInfo>, Vec<BlobRef>) {
    let mut commits = Vec::new();
    let mut blobs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut tokens = log
        .split(|&b| b == 0)
        .map(|t| t.strip_prefix(b"\n").unwrap_or(t));
    while let Some(tok) = tokens.next() {
        if let Some(h) = tok.strip_prefix(b"\x1eC") {
            let h = String::from_utf8_lossy(h);
            let mut parts = h.split('\x1f');
            commits.push(CommitInfo {
                commit: parts.next().unwrap_or_default().to_string(),
                author: parts.next().unwrap_or_default().to_string(),
                email: parts.next().unwrap_or_default().to_string(),
                date: parts.next().unwrap_or_default().to_string(),
            });
        } else if tok.first() == Some(&b':') {
            // ":<old mode> <new mode> <old oid> <new oid> <status>" then the path.
            let Some(path) = tokens.next() else { break };
            let meta = String::from_utf8_lossy(tok);
            let fields: Vec<&str> = meta.split(' ').collect();
            if fields.len() < 5 {
                continue;
            }
            let (new_mode, new_oid, status) = (fields[1], fields[3], fields[4]);
            // Deleted files, submodules (160000) and symlinks (120000) hold no content to scan.
            if status.starts_with('D')
                || new_mode == "160000"
                || new_mode == "120000"
                || new_oid.bytes().all(|b| b == b'0')
            {
                continue;
            }
            let path = String::from_utf8_lossy(path).into_owned();
            match seen.get(new_oid) {
                Some(&i) => {
                    let b: &mut BlobRef = &mut blobs[i];
                    if b.path != path && !b.other_paths.contains(&path) {
                        b.other_paths.push(path);
                    }
                }
                None => {
                    seen.insert(new_oid.to_string(), blobs.len());
                    blobs.push(BlobRef {
                        oid: new_oid.to_string(),
                        path,
                        commit: commits.len().checked_sub(1),
                        other_paths: Vec::new(),
                    });
                }
            }
        }
    }
    (commits, blobs)
}

/// Feeds blob names to one `git cat-file --batch` and scans the contents on
/// `threads` workers; memory holds at most a few blobs at a time.
fn stream_blobs(
    scanner: &Scanner,
    sink: &Sink,
    repo: &Path,
    blobs: &[BlobRef],
    commits: &[CommitInfo],
    threads: usize,
    archives: bool,
) -> Result<(), Error> {
    if blobs.is_empty() {
        return Ok(());
    }
    let mut child = git(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Git(format!("cannot run git cat-file: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Vec<u8>)>(threads * 2);
    let result = std::thread::scope(|s| {
        s.spawn(move || {
            let mut w = std::io::BufWriter::new(&mut stdin);
            for b in blobs {
                if writeln!(w, "{}", b.oid).is_err() {
                    break;
                }
            }
            let _ = w.flush();
            drop(w);
            drop(stdin);
        });
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            s.spawn(move || {
                for (i, data) in rx {
                    let b = &blobs[i];
                    let commit = b.commit.map(|c| &commits[c]);
                    match archive::kind_of(&b.path) {
                        Some(kind) if archives => archive::scan(
                            scanner,
                            sink,
                            &b.path,
                            kind,
                            std::io::Cursor::new(&data[..]),
                            0,
                        ),
                        _ => {
                            let mut found = scanner.scan_blob(&b.path, &data, commit);
                            for f in &mut found {
                                f.paths.extend(b.other_paths.iter().cloned());
                            }
                            sink.push(found)
                        }
                    }
                }
            });
        }
        drop(rx);
        let r = read_batch(scanner, sink, stdout, blobs, &tx);
        drop(tx);
        r
    });
    let _ = child.wait();
    result
}

fn read_batch(
    scanner: &Scanner,
    sink: &Sink,
    stdout: impl Read,
    blobs: &[BlobRef],
    tx: &crossbeam_channel::Sender<(usize, Vec<u8>)>,
) -> Result<(), Error> {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut header = String::new();
    for (i, b) in blobs.iter().enumerate() {
        header.clear();
        if r.read_line(&mut header)
            .map_err(|e| Error::Git(e.to_string()))?
            == 0
        {
            return Err(Error::Git("git cat-file ended early".into()));
        }
        let parts: Vec<&str> = header.trim_end().split(' ').collect();
        if parts.len() != 3 {
            sink.warn(format!(
                "{}: cannot read from git ({})",
                b.path,
                header.trim_end()
            ));
            continue;
        }
        let size: u64 = parts[2]
            .parse()
            .map_err(|_| Error::Git(format!("bad cat-file header {header:?}")))?;
        if parts[1] != "blob" || !scanner.accept_size(size) {
            std::io::copy(&mut (&mut r).take(size + 1), &mut std::io::sink())
                .map_err(|e| Error::Git(e.to_string()))?;
            continue;
        }
        let mut data = vec![0u8; size as usize];
        r.read_exact(&mut data)
            .map_err(|e| Error::Git(e.to_string()))?;
        let mut nl = [0u8; 1];
        r.read_exact(&mut nl)
            .map_err(|e| Error::Git(e.to_string()))?;
        if tx.send((i, data)).is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_parsing_keeps_first_sighting_and_skips_deletions() {
        let oid1 = "1".repeat(40);
        let oid2 = "2".repeat(40);
        let zero = "0".repeat(40);
        let log = format!(
            "\x1eCaaa\x1fAnn\x1fann@x\x1f2024-01-01T00:00:00Z\0\n:000000 100644 {zero} {oid1} A\0a.txt\0\
             \x1eCbbb\x1fBob\x1fbob@x\x1f2024-01-02T00:00:00Z\0\n:100644 100644 {oid1} {oid2} M\0a.txt\0:000000 100644 {zero} {oid1} A\0copy.txt\0:100644 000000 {oid2} {zero} D\0gone.txt\0"
        );
        let (commits, blobs) = parse_log(log.as_bytes());
        assert_eq!(commits.len(), 2);
        assert_eq!(blobs.len(), 2);
        assert_eq!(
            (blobs[0].path.as_str(), blobs[0].commit),
            ("a.txt", Some(0))
        );
        assert_eq!(
            (blobs[1].oid.as_str(), blobs[1].commit),
            (oid2.as_str(), Some(1))
        );
        assert_eq!(
            blobs[0].other_paths,
            ["copy.txt"],
            "the same blob at a new path"
        );
    }
}
