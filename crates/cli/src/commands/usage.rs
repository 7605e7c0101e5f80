//! `keyward usage` and `keyward prices`: what was used and what it cost.

use super::table;
use crate::home::{runtime, ConfigArg};
use clap::{Args, ValueEnum};
use keyward_gateway::prices::{dollars, PriceTable};
use keyward_store::{UsageGroup, UsageTotals};
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum By {
    Key,
    Owner,
    Env,
    Provider,
    Model,
    Day,
    /// The end user of identity-token requests (`issuer:subject`).
    User,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub struct UsageArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// What to sum by (days are UTC).
    #[arg(long, value_enum, default_value = "key")]
    by: By,
    /// From when: a duration back from now (1h, 7d), an RFC 3339 time or Unix
    /// seconds.
    #[arg(long, default_value = "30d", value_name = "WHEN")]
    since: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub struct PricesArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    json: bool,
}

fn group(by: By) -> UsageGroup {
    match by {
        By::Key => UsageGroup::Key,
        By::Owner => UsageGroup::Owner,
        By::Env => UsageGroup::Environment,
        By::Provider => UsageGroup::Provider,
        By::Model => UsageGroup::Model,
        By::Day => UsageGroup::Day,
        By::User => UsageGroup::User,
    }
}

/// One group's totals as JSON, spend in dollars as well as pico-dollars.
pub fn totals_json(t: &UsageTotals) -> serde_json::Value {
    let mut v = serde_json::to_value(t).expect("serialisable");
    v["cost_usd"] = dollars(t.cost_pico).trim_start_matches('$').into();
    v
}

pub fn usage(a: UsageArgs) -> anyhow::Result<ExitCode> {
    let since =
        table::parse_since(&a.since, keyward_gateway::time::now()).map_err(anyhow::Error::msg)?;
    let rt = runtime()?;
    let totals = rt.block_on(async {
        let (_, b) = a.config.open().await?;
        Ok::<_, anyhow::Error>(
            b.store
                .usage_totals(group(a.by), since.saturating_mul(1000))
                .await?,
        )
    })?;
    match a.format {
        Format::Json => {
            let rows: Vec<_> = totals.iter().map(totals_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Csv => {
            println!("group,requests,input_tokens,output_tokens,cached_input_tokens,cache_write_tokens,reasoning_tokens,cost_usd,unpriced,incomplete");
            for t in &totals {
                println!(
                    "{},{},{},{},{},{},{},{},{},{}",
                    csv_field(&t.group),
                    t.requests,
                    t.input_tokens,
                    t.output_tokens,
                    t.cached_input_tokens,
                    t.cache_write_tokens,
                    t.reasoning_tokens,
                    dollars(t.cost_pico).trim_start_matches('$'),
                    t.unpriced,
                    t.incomplete
                );
            }
        }
        Format::Table => {
            if totals.is_empty() {
                eprintln!("no usage since {}", table::time(since));
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = totals
                .iter()
                .map(|t| {
                    vec![
                        table::safe(&t.group).into_owned(),
                        t.requests.to_string(),
                        t.input_tokens.to_string(),
                        t.output_tokens.to_string(),
                        (t.cached_input_tokens + t.cache_write_tokens).to_string(),
                        dollars(t.cost_pico),
                        if t.unpriced > 0 {
                            format!("{} unpriced", t.unpriced)
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            let head = match a.by {
                By::Key => "KEY",
                By::Owner => "OWNER",
                By::Env => "ENV",
                By::Provider => "PROVIDER",
                By::Model => "MODEL",
                By::Day => "DAY (UTC)",
                By::User => "USER",
            };
            table::print(
                &[head, "REQUESTS", "INPUT", "OUTPUT", "CACHE", "SPEND", ""],
                &rows,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn prices(a: PricesArgs) -> anyhow::Result<ExitCode> {
    let cfg = a.config.load()?;
    let t = PriceTable::with_config(&cfg.prices).map_err(anyhow::Error::msg)?;
    let entries = t.entries();
    if a.json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "model": e.model, "provider": e.provider, "taken": e.taken,
                    "input": e.spec.input, "output": e.spec.output,
                    "cached_input": e.spec.cached_input, "cache_write": e.spec.cache_write,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let f = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x}"));
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.provider.clone(),
                e.model.clone(),
                format!("{}", e.spec.input),
                format!("{}", e.spec.output),
                f(e.spec.cached_input),
                f(e.spec.cache_write),
                e.taken.clone(),
            ]
        })
        .collect();
    table::print(
        &[
            "PROVIDER",
            "MODEL",
            "INPUT",
            "OUTPUT",
            "CACHED",
            "CACHE WRITE",
            "TAKEN",
        ],
        &rows,
    );
    println!("US$ per million tokens; {} models", entries.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(super::csv_field("gpt-4o"), "gpt-4o");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
