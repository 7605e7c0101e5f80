//! `keyward alerts list`: the alerts raised, with whether a webhook took them.

use super::table;
use crate::home::{runtime, ConfigArg};
use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AlertsCmd {
    /// Alerts raised, newest first, with their delivery state.
    List(ListArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// From when: a duration back from now (1h, 7d), an RFC 3339 time or Unix
    /// seconds.
    #[arg(long, default_value = "7d", value_name = "WHEN")]
    since: String,
    /// Only alerts no webhook took (still pending or undeliverable).
    #[arg(long)]
    undelivered: bool,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AlertsCmd) -> anyhow::Result<ExitCode> {
    let AlertsCmd::List(a) = cmd;
    let since =
        table::parse_since(&a.since, keyward_gateway::time::now()).map_err(anyhow::Error::msg)?;
    let rows = runtime()?.block_on(async {
        let (_, b) = a.config.open().await?;
        Ok::<_, anyhow::Error>(
            b.store
                .alerts(since.saturating_mul(1000), a.undelivered, a.limit.max(1))
                .await?,
        )
    })?;
    if a.json {
        let out: Vec<_> = rows
            .iter()
            .map(keyward_gateway::admin::alert_json)
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no alerts since {}", table::time(since));
        return Ok(ExitCode::SUCCESS);
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            let summary = body
                .get("summary")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string();
            vec![
                table::time(r.at_ms / 1000),
                table::safe(&r.severity).into_owned(),
                table::safe(&r.kind).into_owned(),
                table::safe(r.key_id.as_deref().unwrap_or("-")).into_owned(),
                match &r.last_error {
                    Some(e) => format!(
                        "{} ({} attempts: {})",
                        r.delivery,
                        r.attempts,
                        table::safe(e)
                    ),
                    None => r.delivery.clone(),
                },
                table::safe(&summary).into_owned(),
            ]
        })
        .collect();
    table::print(
        &["AT", "SEVERITY", "KIND", "KEY", "DELIVERY", "SUMMARY"],
        &lines,
    );
    Ok(ExitCode::SUCCESS)
}
