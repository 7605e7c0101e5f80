//! `keyward scan`: sources, suppression and reporting around `keyward-detect`.
//!
//! [`run`] is the whole scan: it builds the detector from the built-in rules and the
//! user's config, reads every requested source on a thread pool, suppresses what the
//! user allowed (inline markers, ignore file, allowed secrets, baseline) and returns
//! the findings sorted by path and position. Reporters in [`report`] print them.

pub mod baseline;
pub mod config;
pub mod context;
pub mod finding;
pub mod report;
pub mod scanner;
pub mod source;
pub mod suppress;

pub use finding::{CommitInfo, Finding};

use keyward_detect::{Detector, DetectorBuilder};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Everything that can stop a scan. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Io {
        path: String,
        reason: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("git: {0}")]
    Git(String),
    #[error("rules: {0}")]
    Rules(#[from] keyward_detect::BuildError),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            reason: source,
        }
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub enum Source {
    /// Files and directories.
    Paths(Vec<PathBuf>),
    /// Every blob in the history of a repository: of every ref, or with `since`
    /// only of the commits after that revision (`since..HEAD`).
    GitHistory {
        repo: PathBuf,
        since: Option<String>,
    },
    /// The index of a repository (what `git commit` would record).
    Staged(PathBuf),
    /// Bytes read from standard input, reported as path `-`.
    Stdin,
}

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub source: Source,
    /// Config file; when `None`, `.keyward.toml` in the scan root is used if present.
    pub config: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    pub threads: usize,
    pub max_file_size: u64,
    pub include_binary: bool,
    pub respect_gitignore: bool,
    pub archives: bool,
    pub decode: bool,
    pub follow_links: bool,
    /// Findings below this confidence are left out (default: report all).
    pub min_confidence: keyward_detect::Confidence,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            source: Source::Paths(vec![PathBuf::from(".")]),
            config: None,
            baseline: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_file_size: 10 << 20,
            include_binary: false,
            respect_gitignore: true,
            archives: true,
            decode: true,
            follow_links: false,
            min_confidence: keyward_detect::Confidence::Low,
        }
    }
}

/// The result of a scan.
#[derive(Debug)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Problems that did not stop the scan (unreadable files, broken archives).
    pub warnings: Vec<String>,
    /// Files scanned; in a history scan, file versions (blobs), each once.
    pub files: u64,
    /// True for a history scan (`files` counts blobs).
    pub history: bool,
    /// The absolute directory relative finding paths are relative to: the
    /// repository's top level for git sources, the working directory otherwise.
    pub base: PathBuf,
    pub bytes: u64,
    pub skipped_binary: u64,
    pub skipped_large: u64,
    pub suppressed: u64,
    pub elapsed: Duration,
}

/// `p` made absolute against the working directory, `.` and `..` removed.
fn absolute(p: &Path) -> PathBuf {
    let joined = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The directory whose `.keyward.toml` and `.keywardignore` apply.
fn scan_root(source: &Source) -> PathBuf {
    match source {
        Source::Paths(p) if p.len() == 1 && p[0].is_dir() => p[0].clone(),
        Source::GitHistory { repo: r, .. } | Source::Staged(r) => r.clone(),
        _ => PathBuf::from("."),
    }
}

/// Runs a scan to completion. `stats` is updated as the scan goes, so another
/// thread may read it to show progress.
pub fn run(opts: &ScanOptions, stats: &scanner::Stats) -> Result<Outcome, Error> {
    let started = Instant::now();
    let root = scan_root(&opts.source);
    let config = match &opts.config {
        Some(p) => config::ScanConfig::load(p)?,
        None => {
            let p = root.join(config::DEFAULT_CONFIG_FILE);
            if p.is_file() {
                config::ScanConfig::load(&p)?
            } else {
                config::ScanConfig::default()
            }
        }
    };
    let mut builder = DetectorBuilder::default()
        .add_rules(config.rule)
        .disable(config.scan.disable_rules);
    if !opts.decode {
        builder = builder.without_decoding();
    }
    let detector: Detector = builder.build()?;
    let baseline = match &opts.baseline {
        Some(p) => baseline::read(p)?,
        None => Default::default(),
    };
    // The scan's own config holds rule examples that look like secrets by
    // design; it is not scanned.
    let mut allow_paths = config.scan.allow_paths.clone();
    allow_paths.push(format!("/{}", config::DEFAULT_CONFIG_FILE));
    let suppress =
        suppress::Suppressions::new(&root, &allow_paths, &config.scan.allow_secrets, baseline)?;
    let scanner = scanner::Scanner {
        detector: &detector,
        suppress: &suppress,
        stats,
        max_size: opts.max_file_size,
        include_binary: opts.include_binary,
        min_confidence: opts.min_confidence,
    };
    let sink = source::Sink::default();
    let threads = opts.threads.max(1);
    let mut commit_order = None;
    match &opts.source {
        Source::Paths(paths) => {
            for p in paths {
                if std::fs::symlink_metadata(p).is_err() {
                    return Err(Error::Io {
                        path: p.display().to_string(),
                        reason: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such file or directory; check the path",
                        ),
                    });
                }
            }
            let walk = source::fs::WalkOptions {
                threads,
                respect_gitignore: opts.respect_gitignore,
                archives: opts.archives,
                follow_links: opts.follow_links,
            };
            source::fs::scan_paths(&scanner, &sink, paths, &root, &walk);
        }
        Source::GitHistory { repo, since } => {
            commit_order = Some(source::git::scan_history(
                &scanner,
                &sink,
                repo,
                since.as_deref(),
                threads,
                opts.archives,
            )?);
        }
        Source::Staged(repo) => {
            source::git::scan_staged(&scanner, &sink, repo, threads, opts.archives)?
        }
        Source::Stdin => {
            let mut buf = Vec::new();
            use std::io::Read;
            std::io::stdin()
                .lock()
                .take(opts.max_file_size + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(Path::new("-"), e))?;
            if scanner.accept_size(buf.len() as u64) {
                sink.push(scanner.scan_blob("-", &buf, None));
            } else {
                sink.warn(format!(
                    "stdin is larger than --max-file-size ({} bytes): not scanned",
                    opts.max_file_size
                ));
            }
        }
    }
    let (mut findings, warnings) = sink.into_parts();
    if let Some(order) = commit_order {
        findings = earliest_per_secret(findings, &order);
    }
    findings.sort_by(|a, b| {
        (&a.path, a.line, a.column, &a.rule_id, &a.fingerprint).cmp(&(
            &b.path,
            b.line,
            b.column,
            &b.rule_id,
            &b.fingerprint,
        ))
    });
    // A file named twice (itself and through its directory) is reported once; two
    // different secrets at one place (two versions of a file) are not one finding.
    findings.dedup_by(|a, b| {
        (&a.path, a.line, a.column, &a.rule_id, &a.fingerprint)
            == (&b.path, b.line, b.column, &b.rule_id, &b.fingerprint)
    });
    let s = scanner.stats;
    Ok(Outcome {
        findings,
        warnings,
        files: s.files.load(Ordering::Relaxed),
        history: matches!(opts.source, Source::GitHistory { .. }),
        base: match &opts.source {
            Source::GitHistory { repo, .. } | Source::Staged(repo) => {
                source::git::toplevel(repo).unwrap_or_else(|| absolute(repo))
            }
            _ => absolute(Path::new(".")),
        },
        bytes: s.bytes.load(Ordering::Relaxed),
        skipped_binary: s.skipped_binary.load(Ordering::Relaxed),
        skipped_large: s.skipped_large.load(Ordering::Relaxed),
        suppressed: s.suppressed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// In history scans the same secret shows up in every later version of a file, and
/// often at other paths too: report each distinct secret (per rule) once, at the
/// commit that introduced it, with every other path it appeared at.
fn earliest_per_secret(findings: Vec<Finding>, order: &[CommitInfo]) -> Vec<Finding> {
    let pos: std::collections::HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, c)| (c.commit.as_str(), i))
        .collect();
    let rank = |f: &Finding| {
        f.commit
            .as_ref()
            .and_then(|c| pos.get(c.commit.as_str()).copied())
            .unwrap_or(usize::MAX)
    };
    let mut findings = findings;
    findings.sort_by_key(|f| (rank(f), f.path.clone(), f.line));
    let mut best: std::collections::HashMap<(String, String), Finding> =
        std::collections::HashMap::new();
    for f in findings {
        let key = (f.rule_id.clone(), f.raw_secret.clone());
        match best.get_mut(&key) {
            Some(first) => {
                for p in std::iter::once(&f.path).chain(&f.paths) {
                    if *p != first.path && !first.paths.contains(p) {
                        first.paths.push(p.clone());
                    }
                }
            }
            None => {
                best.insert(key, f);
            }
        }
    }
    best.into_values().collect()
}
