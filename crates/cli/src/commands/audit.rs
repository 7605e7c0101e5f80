//! `keyward audit …`: read and verify the tamper-evident audit log.

use super::table::{self, safe};
use crate::home::{runtime, ConfigArg};
use clap::Subcommand;
use keyward_gateway::Backend;
use keyward_store::AuditRow;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the whole log: exits 1 and names the first entry that was changed,
    /// removed or reordered.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
    /// The newest entries.
    Tail {
        #[command(flatten)]
        config: ConfigArg,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: i64,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Entries matching every filter given.
    Search {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        actor: Option<String>,
        /// Action, e.g. keys.create, keys.revoke, vault.put, vault.rotate,
        /// request.refused.
        #[arg(long)]
        action: Option<String>,
        /// Target: a key id, secret name or path.
        #[arg(long)]
        target: Option<String>,
        /// Only entries at or after this time: a duration back from now (30m,
        /// 1h, 7d), an RFC 3339 time or Unix seconds.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every entry as JSON lines, oldest first.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON lines (the only format; accepted for symmetry with the other
        /// commands).
        #[arg(long)]
        json: bool,
    },
}

/// Reads the whole log in order, calling `f` for each entry.
async fn each_entry(backend: &Backend, mut f: impl FnMut(&AuditRow)) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let batch = backend.store.audit_entries(after, 1000).await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = last.seq;
        batch.iter().for_each(&mut f);
    }
}

/// One entry as a JSON object, `details` as an object (not a string holding
/// JSON) and the time both as Unix seconds (`at`) and RFC 3339 (`time`).
pub fn entry_json(r: &AuditRow) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("serialisable");
    v["details"] = serde_json::from_str(&r.details)
        .unwrap_or_else(|_| serde_json::Value::String(r.details.clone()));
    v["time"] = table::time(r.at).into();
    v
}

/// Prints entries as JSON lines, or as a table with a header row.
struct Printer {
    json: bool,
    header_done: bool,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            header_done: false,
        }
    }

    fn print(&mut self, r: &AuditRow) {
        if self.json {
            println!("{}", entry_json(r));
            return;
        }
        if !self.header_done {
            self.header_done = true;
            println!(
                "{:>6}  {:<20}  {:<24}  {:<22}  {:<8}  {:<28}  DETAILS",
                "SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "TARGET"
            );
        }
        println!(
            "{:>6}  {:<20}  {:<24}  {:<22}  {:<8}  {:<28}  {}",
            r.seq,
            table::time(r.at),
            safe(&r.actor),
            safe(&r.action),
            safe(&r.outcome),
            safe(&r.target),
            safe(&r.details)
        );
    }

    fn finish(&self) {
        if !self.json && !self.header_done {
            eprintln!("no matching entries");
        }
    }
}

pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        AuditCmd::Verify { config, json } => rt.block_on(async {
            let (_, b) = config.open().await?;
            let report = keyward_gateway::audit::verify(&b.store, b.audit_key()).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            }
            match &report.first_broken {
                None => {
                    if !json {
                        println!("audit log intact: {} entries verified", report.entries);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some((seq, why)) => {
                    eprintln!(
                        "audit log BROKEN at entry {seq}: {why} ({} entries before it verify)",
                        report.entries
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }),
        AuditCmd::Tail {
            config,
            count,
            json,
        } => rt.block_on(async {
            let (_, b) = config.open().await?;
            let last = b.store.audit_last_seq().await?;
            let mut p = Printer::new(json);
            for r in b.store.audit_entries((last - count).max(0), count).await? {
                p.print(&r);
            }
            p.finish();
            Ok(ExitCode::SUCCESS)
        }),
        AuditCmd::Search {
            config,
            actor,
            action,
            target,
            since,
            json,
        } => {
            let since = since
                .map(|s| table::parse_since(&s, keyward_gateway::time::now()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            rt.block_on(async {
                let (_, b) = config.open().await?;
                let mut p = Printer::new(json);
                each_entry(&b, |r| {
                    let keep = actor.as_ref().is_none_or(|a| &r.actor == a)
                        && action.as_ref().is_none_or(|a| &r.action == a)
                        && target.as_ref().is_none_or(|t| &r.target == t)
                        && since.is_none_or(|s| r.at >= s);
                    if keep {
                        p.print(r);
                    }
                })
                .await?;
                p.finish();
                Ok(ExitCode::SUCCESS)
            })
        }
        AuditCmd::Export { config, json: _ } => rt.block_on(async {
            let (_, b) = config.open().await?;
            each_entry(&b, |r| println!("{}", entry_json(r))).await?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}
