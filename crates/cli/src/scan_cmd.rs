//! `keyward scan`.

use anyhow::Context;
use clap::{Args, ValueEnum};
use keyward_scan::{report, scanner::Stats, ScanOptions, Source};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

#[derive(Args)]
pub struct ScanArgs {
    /// Files and directories to scan; `-` reads standard input. Default: `.`
    paths: Vec<PathBuf>,
    /// Scan every blob in the git history of the repository at PATH (default `.`).
    #[arg(long, value_name = "REPO", num_args = 0..=1, default_missing_value = ".", conflicts_with_all = ["staged", "paths"])]
    git: Option<PathBuf>,
    /// With --git: scan only the commits after REV (`REV..HEAD`), for CI on a pull
    /// request (e.g. `--since-commit origin/main`).
    #[arg(long, value_name = "REV", requires = "git")]
    since_commit: Option<String>,
    /// Scan what is staged for the next commit (the index), for pre-commit hooks.
    #[arg(long, conflicts_with = "paths")]
    staged: bool,
    /// Repository for --staged (default: the current directory).
    #[arg(long, value_name = "REPO", requires = "staged")]
    repo: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print secrets in full. Reports are redacted by default.
    #[arg(long)]
    show_secrets: bool,
    /// Suppress findings recorded in this baseline file.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Record every finding of this scan in a baseline file and exit 0.
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,
    /// Config file (default: `.keyward.toml` in the scan root, if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Scanning threads (default: number of CPUs).
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// Skip files larger than this many bytes (suffixes K, M, G allowed).
    #[arg(long, value_name = "SIZE", default_value = "10M", value_parser = parse_size)]
    max_file_size: u64,
    /// Scan binary files too.
    #[arg(long)]
    include_binary: bool,
    /// Do not honour .gitignore and .ignore files.
    #[arg(long)]
    no_ignore: bool,
    /// Do not open zip and tar archives.
    #[arg(long)]
    no_archives: bool,
    /// Do not decode base64, percent-encoded or JSON-escaped text.
    #[arg(long)]
    no_decode: bool,
    /// Follow symbolic links.
    #[arg(long)]
    follow: bool,
    /// Report only findings at least this sure: `low` (everything, the default),
    /// `medium` or `high`. Findings in test and fixture paths count one level lower.
    #[arg(long, value_name = "LEVEL", default_value = "low", value_parser = parse_confidence)]
    min_confidence: keyward_detect::Confidence,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Send every Keyward client key found to this leak report endpoint
    /// (`https://gateway/admin/v1/leaks`), which revokes it. The admin key is read
    /// from the KEYWARD_ADMIN_KEY environment variable.
    #[arg(long, value_name = "URL")]
    report_to: Option<String>,
}

fn parse_confidence(s: &str) -> Result<keyward_detect::Confidence, String> {
    keyward_detect::Confidence::parse(s)
        .ok_or_else(|| format!("`{s}` is not a confidence level; use low, medium or high"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().map(|n| n * mult).map_err(|_| {
        format!("`{s}` is not a size; use a number of bytes, optionally with K, M or G")
    })
}

pub fn run(a: ScanArgs) -> anyhow::Result<ExitCode> {
    let source = if let Some(repo) = a.git {
        Source::GitHistory {
            repo,
            since: a.since_commit,
        }
    } else if a.staged {
        Source::Staged(a.repo.unwrap_or_else(|| PathBuf::from(".")))
    } else if a.paths.len() == 1 && a.paths[0].as_os_str() == "-" {
        Source::Stdin
    } else if a.paths.iter().any(|p| p.as_os_str() == "-") {
        anyhow::bail!(
            "`-` (stdin) cannot be combined with other paths; scan them in separate runs"
        );
    } else if a.paths.is_empty() {
        Source::Paths(vec![PathBuf::from(".")])
    } else {
        Source::Paths(a.paths)
    };
    let defaults = ScanOptions::default();
    let opts = ScanOptions {
        source,
        config: a.config,
        baseline: a.baseline,
        threads: a.threads.unwrap_or(defaults.threads),
        max_file_size: a.max_file_size,
        include_binary: a.include_binary,
        respect_gitignore: !a.no_ignore,
        archives: !a.no_archives,
        decode: !a.no_decode,
        follow_links: a.follow,
        min_confidence: a.min_confidence,
    };
    let stats = Stats::default();
    let show_progress = !a.no_progress
        && std::io::stderr().is_terminal()
        && matches!(opts.source, Source::Paths(_) | Source::GitHistory { .. });
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut outcome = std::thread::scope(|s| {
        let done_ref = &done;
        let stats_ref = &stats;
        if show_progress {
            s.spawn(move || progress(stats_ref, done_ref));
        }
        let r = keyward_scan::run(&opts, &stats);
        done.store(true, Ordering::Relaxed);
        r
    })?;
    if let Some(url) = &a.report_to {
        report_leaks(url, &mut outcome.findings)?;
    }
    for f in &mut outcome.findings {
        f.set_secret_visibility(a.show_secrets);
    }
    if let Some(path) = &a.write_baseline {
        keyward_scan::baseline::write(path, &outcome.findings)?;
        eprintln!(
            "wrote {} finding(s) to baseline {}",
            outcome.findings.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot create report file {}", p.display()))?,
        )),
        None => Box::new(anstream::AutoStream::auto(std::io::stdout().lock())),
    };
    match a.format {
        Format::Human => report::human::write(&mut out, &outcome)?,
        Format::Json => report::json::write(&mut out, &outcome)?,
        Format::Sarif => report::sarif::write(&mut out, &outcome)?,
    }
    out.flush()?;
    if !matches!(a.format, Format::Human) {
        for w in &outcome.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(if outcome.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A spinner with bytes and files scanned, shown only after the scan has run for a
/// moment (short scans stay quiet) and only on a terminal.
fn progress(stats: &Stats, done: &std::sync::atomic::AtomicBool) {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(700) {
        if done.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .expect("valid template"),
    );
    while !done.load(Ordering::Relaxed) {
        bar.set_message(format!(
            "scanned {} files, {:.1} MB",
            stats.files.load(Ordering::Relaxed),
            stats.bytes.load(Ordering::Relaxed) as f64 / 1e6
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

/// Reports each Keyward key found, with where it was found, to a gateway's leak
/// endpoint, and marks the findings the gateway revoked (or had revoked already).
/// Fails (exit 2) if the endpoint refuses, so CI notices.
fn report_leaks(url: &str, findings: &mut [keyward_scan::Finding]) -> anyhow::Result<()> {
    let admin_key = std::env::var("KEYWARD_ADMIN_KEY")
        .context("--report-to needs an admin key in the KEYWARD_ADMIN_KEY environment variable")?;
    let leaks: Vec<_> = findings
        .iter_mut()
        .filter(|f| f.rule_id == "keyward-client-key")
        .collect();
    if leaks.is_empty() {
        return Ok(());
    }
    let client = keyward_gateway::upstream_client()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for f in leaks {
            let location = match &f.commit {
                Some(c) => format!("{}:{} (commit {})", f.path, f.line, c.commit),
                None => format!("{}:{}", f.path, f.line),
            };
            let body = serde_json::json!({"tokens": [f.raw_secret()], "location": location});
            let resp = client
                .post(url)
                .bearer_auth(&admin_key)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach {url}: {}", e.without_url()))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                anyhow::bail!("{url} refused the leak report ({status}): {text}");
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let revoked = v["revoked"].as_array().map_or(0, Vec::len);
            let already = v["already_revoked"].as_array().map_or(0, Vec::len);
            f.revoked = revoked + already > 0;
            eprintln!("reported the Keyward key at {location}: {revoked} key(s) revoked");
        }
        Ok(())
    })
}
