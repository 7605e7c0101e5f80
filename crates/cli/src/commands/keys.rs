//! `keyward keys …`: client keys.

use super::applied;
use super::table::{self, safe};
use crate::home::{runtime, ConfigArg};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_gateway::NewKey;
use keyward_store::KeyRecord;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Issue a client key. The key is printed once and never stored; the command
    /// returns once every running server accepts it.
    Create(Box<CreateArgs>),
    /// Give a key a new secret under the same id. The old secret keeps working for
    /// the grace period, then fails.
    Rotate {
        id: String,
        /// How long the old secret stays valid: 24h, 30m, 0s…
        #[arg(long, default_value = "24h")]
        grace: String,
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id: returns once every running server refuses it.
    Revoke {
        id: String,
        #[arg(long, default_value = "revoked by an administrator")]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Refuse a key everywhere until `keys resume` (returns once every running
    /// server refuses it). For a leak, prefer `revoke`.
    Suspend {
        id: String,
        #[arg(long, default_value = "suspended by an administrator")]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// What a severe anomaly (a request, token or spend spike; a request from a
    /// new country) does to this key: `suspend` it, only `alert`, or `default`
    /// (the server's `[watch] on_anomaly`). Returns once every running server
    /// applies it.
    Policy {
        id: String,
        #[arg(long, value_parser = ["alert", "suspend", "default"])]
        on_anomaly: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Lift a suspension.
    Resume {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Set a key's owner and limits (returns once every running server applies
    /// them). Options left out keep their value; `none` removes one.
    Update(UpdateArgs),
    /// List keys: state, environment, owner, models, limits, expiry, last use
    /// (never a key or its hash).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
}

/// A limit option's value: a positive number, or no limit (`none`).
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<u64>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    if s == "none" {
        return Ok(Limit(None));
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Limit(Some(n))),
        _ => Err(format!("`{s}` is not a positive number or `none`")),
    }
}

/// The limits shared by `keys create` and `keys update`.
#[derive(Args)]
pub struct LimitArgs {
    /// Who the key belongs to: `[[limits]] owner = …` applies to all its keys, and
    /// usage reports group by it.
    #[arg(long)]
    owner: Option<String>,
    /// Requests per minute (any 60 s), or `none`.
    #[arg(long, value_parser = parse_limit, value_name = "N")]
    rpm: Option<Limit>,
    /// Tokens per minute, or `none`.
    #[arg(long, value_parser = parse_limit, value_name = "N")]
    tpm: Option<Limit>,
    /// Requests in flight at once, or `none`.
    #[arg(long, value_parser = parse_limit, value_name = "N")]
    concurrency: Option<Limit>,
    /// Spend per UTC day in US dollars (e.g. 5 or 0.50), or `none`.
    #[arg(long, value_parser = parse_dollars, value_name = "USD")]
    daily_budget: Option<Dollars>,
    /// Spend per UTC month in US dollars, or `none`.
    #[arg(long, value_parser = parse_dollars, value_name = "USD")]
    monthly_budget: Option<Dollars>,
}

/// A budget option's value, in pico-dollars, or no budget (`none`).
#[derive(Debug, Clone, Copy)]
pub struct Dollars(Option<i64>);

fn parse_dollars(s: &str) -> Result<Dollars, String> {
    if s == "none" {
        return Ok(Dollars(None));
    }
    s.trim_start_matches('$')
        .parse::<f64>()
        .ok()
        .and_then(keyward_gateway::config::budget_pico)
        .map(|p| Dollars(Some(p)))
        .ok_or_else(|| format!("`{s}` is not a positive amount of dollars or `none`"))
}

#[derive(Args)]
pub struct UpdateArgs {
    id: String,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    config: ConfigArg,
    /// Owner or purpose, for people reading `keys list`.
    #[arg(long)]
    name: String,
    /// Environment: selects which provider credentials the key reaches.
    #[arg(long = "env")]
    environment: String,
    /// Allowed model globs, comma-separated (`*` allows all).
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<String>,
    /// Allowed providers (config names), comma-separated; default: all.
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// Allowed endpoints (chat.completions, completions, embeddings, responses,
    /// models, messages, messages.count_tokens, generateContent,
    /// streamGenerateContent, countTokens, embedContent, batchEmbedContents);
    /// default: all.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Source addresses allowed (CIDR), comma-separated; default: any.
    #[arg(long = "cidrs", value_delimiter = ',')]
    cidrs: Vec<String>,
    /// Lifetime: 30d, 12h, 45m or `never`. Default 90d.
    #[arg(long, default_value = "90d")]
    expires: String,
    /// A decoy: looks like any key, reaches no provider, and any use raises a
    /// critical alert (source address, user agent, path, time).
    #[arg(long)]
    canary: bool,
    /// What to do with secrets in this key's requests: redact (default), block,
    /// alert or off. Unset: the provider's, then the server's `[redaction]`.
    #[arg(long, value_name = "ACTION")]
    redact_inbound: Option<keyward_gateway::redact::Action>,
    /// The same for responses (streamed ones included).
    #[arg(long, value_name = "ACTION")]
    redact_outbound: Option<keyward_gateway::redact::Action>,
    /// Rotate the key on a schedule (30d, 12h…): the owner's webhook is told
    /// beforehand and receives the new key; the old one works for --rotation-grace.
    #[arg(long, value_name = "PERIOD", requires = "notify")]
    rotate_every: Option<String>,
    /// How long the old secret keeps working after a scheduled rotation.
    #[arg(long, value_name = "DURATION", requires = "rotate_every")]
    rotation_grace: Option<String>,
    /// Vault secret holding the owner's webhook URL (https; store it with
    /// `keyward vault put NAME < url.txt`: such URLs are often credentials).
    #[arg(long, value_name = "VAULT_NAME", requires = "rotate_every")]
    notify: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn parse_lifetime(s: &str) -> anyhow::Result<Option<Duration>> {
    keyward_gateway::time::parse_lifetime(s).with_context(|| {
        format!("`{s}` is not a lifetime; use e.g. 30d, 12h, 45m or never (at most 36500d)")
    })
}

/// What a key's record says about whether it works now.
pub fn state(k: &KeyRecord, now: i64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.suspended_at.is_some() {
        "suspended"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

fn print_new_key(id: &str, key: &str, json: bool, note: &str) {
    if json {
        println!("{}", serde_json::json!({"id": id, "key": key}));
    } else {
        println!("id:  {id}\nkey: {key}\n\n{note}");
    }
}

pub fn run(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        KeysCmd::Create(a) => rt.block_on(create(*a))?,
        KeysCmd::Rotate {
            id,
            grace,
            config,
            json,
        } => {
            let grace = match grace.as_str() {
                "0" | "0s" | "none" => Duration::ZERO,
                g => parse_lifetime(g)?.context("a grace period cannot be `never`")?,
            };
            rt.block_on(async {
                let (_, b) = config.open().await?;
                let Some(key) = b.rotate_key(&id, grace).await? else {
                    bail!("no key with id `{id}` (see `keyward keys list`)");
                };
                applied::confirm(&b).await?;
                print_new_key(
                    &id,
                    &key,
                    json,
                    &format!(
                        "The previous secret works for {}s more. This is the only time the new key is shown.",
                        grace.as_secs()
                    ),
                );
                Ok(())
            })?;
        }
        KeysCmd::Revoke { id, reason, config } => rt.block_on(async {
            let (_, b) = config.open().await?;
            if !b.revoke_key(&id, &reason).await? {
                bail!("no key with id `{id}` (see `keyward keys list`)");
            }
            eprintln!("revoked {id}");
            applied::confirm(&b).await
        })?,
        KeysCmd::Suspend { id, reason, config } => rt.block_on(async {
            let (_, b) = config.open().await?;
            if !b.suspend_key(&id, &reason).await? {
                bail!(not_live(&b, &id).await?);
            }
            eprintln!("suspended {id}");
            applied::confirm(&b).await
        })?,
        KeysCmd::Policy {
            id,
            on_anomaly,
            config,
        } => rt.block_on(async {
            let (_, b) = config.open().await?;
            let policy = match on_anomaly.as_str() {
                "default" => None,
                p => Some(p.parse().map_err(anyhow::Error::msg)?),
            };
            if !b.set_key_anomaly_policy(&id, policy).await? {
                bail!(not_live(&b, &id).await?);
            }
            eprintln!("{id}: on anomaly, {on_anomaly}");
            applied::confirm(&b).await
        })?,
        KeysCmd::Resume { id, config } => rt.block_on(async {
            let (_, b) = config.open().await?;
            if !b.resume_key(&id).await? {
                bail!(not_live(&b, &id).await?);
            }
            eprintln!("resumed {id}");
            applied::confirm(&b).await
        })?,
        KeysCmd::Update(u) => rt.block_on(update(u))?,
        KeysCmd::List { config, json } => rt.block_on(async {
            let (_, b) = config.open().await?;
            list(&b, json).await
        })?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a suspend or resume found nothing to change: no such key, or a revoked one.
async fn not_live(b: &keyward_gateway::Backend, id: &str) -> anyhow::Result<String> {
    let keys = b.store.keys().await?;
    Ok(match keys.iter().find(|k| k.id == id) {
        Some(k) if k.revoked_at.is_some() => format!(
            "key `{id}` is revoked{}: a revoked key cannot be suspended or resumed; issue a new one with `keyward keys create`",
            k.revoke_reason
                .as_deref()
                .map(|r| format!(" ({})", safe(r)))
                .unwrap_or_default()
        ),
        _ => format!("no key with id `{id}` (see `keyward keys list`)"),
    })
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let cfg = a.config.load()?;
    for p in &a.providers {
        if !cfg.providers.iter().any(|c| &c.name == p) {
            bail!(
                "no provider named `{p}` in the config; it has: {}",
                provider_names(&cfg)
            );
        }
    }
    let spec = NewKey {
        name: a.name,
        environment: a.environment,
        models: a.models,
        providers: a.providers,
        endpoints: a.endpoints,
        source_cidrs: a.cidrs,
        expires_in: parse_lifetime(&a.expires)?,
        canary: a.canary,
        redaction: keyward_gateway::redact::PolicyConfig {
            inbound: a.redact_inbound,
            outbound: a.redact_outbound,
        },
        rotation: keyward_gateway::admin::rotation_schedule(
            a.rotate_every.as_deref(),
            a.rotation_grace.as_deref(),
            a.notify,
        )
        .map_err(anyhow::Error::msg)?,
        owner: a.limits.owner.filter(|o| o != "none"),
        limits: keyward_gateway::limits::Limits {
            rpm: a.limits.rpm.and_then(|l| l.0),
            tpm: a.limits.tpm.and_then(|l| l.0),
            concurrency: a.limits.concurrency.and_then(|l| l.0),
            daily_budget: a.limits.daily_budget.and_then(|d| d.0),
            monthly_budget: a.limits.monthly_budget.and_then(|d| d.0),
        },
    };
    let b = crate::home::open_existing(&cfg).await?;
    let (record, key) = b.create_key(spec).await?;
    applied::confirm(&b).await?;
    print_new_key(
        &record.id,
        &key,
        a.json,
        "This is the only time the key is shown: store it now.",
    );
    Ok(())
}

async fn update(u: UpdateArgs) -> anyhow::Result<()> {
    let (_, b) = u.config.open().await?;
    let keys = b.store.keys().await?;
    let Some(k) = keys.iter().find(|k| k.id == u.id) else {
        bail!("no key with id `{}` (see `keyward keys list`)", u.id);
    };
    let keep = |new: Option<Limit>, old: Option<i64>| match new {
        Some(Limit(v)) => v,
        None => old.map(|v| v.max(0) as u64),
    };
    let owner = match u.limits.owner.as_deref() {
        Some("none") => None,
        Some(o) => Some(o.to_string()),
        None => k.owner.clone(),
    };
    let limits = keyward_gateway::limits::Limits {
        rpm: keep(u.limits.rpm, k.rpm),
        tpm: keep(u.limits.tpm, k.tpm),
        concurrency: keep(u.limits.concurrency, k.max_concurrent),
        daily_budget: match u.limits.daily_budget {
            Some(Dollars(v)) => v,
            None => k.daily_budget_pico,
        },
        monthly_budget: match u.limits.monthly_budget {
            Some(Dollars(v)) => v,
            None => k.monthly_budget_pico,
        },
    };
    if !b.update_key_limits(&u.id, owner.as_deref(), limits).await? {
        bail!(not_live(&b, &u.id).await?);
    }
    eprintln!(
        "updated {}: owner {}, limits {}",
        u.id,
        owner.as_deref().unwrap_or("-"),
        limits_label(&limits)
    );
    applied::confirm(&b).await
}

/// Limits as `keys list` shows them.
fn limits_label(l: &keyward_gateway::limits::Limits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.rpm {
        parts.push(format!("{n} rpm"));
    }
    if let Some(n) = l.tpm {
        parts.push(format!("{n} tpm"));
    }
    if let Some(n) = l.concurrency {
        parts.push(format!("{n} at once"));
    }
    if let Some(p) = l.daily_budget {
        parts.push(format!("{}/day", keyward_gateway::prices::dollars(p)));
    }
    if let Some(p) = l.monthly_budget {
        parts.push(format!("{}/month", keyward_gateway::prices::dollars(p)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn provider_names(cfg: &keyward_gateway::Config) -> String {
    if cfg.providers.is_empty() {
        return "none".into();
    }
    cfg.providers
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn list(b: &keyward_gateway::Backend, json: bool) -> anyhow::Result<()> {
    let keys = b.store.keys().await?;
    let last_use = b.store.key_last_use().await?;
    let now = keyward_gateway::time::now();
    if json {
        let rows: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                let mut v = serde_json::to_value(k).expect("serialisable");
                v["state"] = state(k, now).into();
                v["last_used_at"] = last_use.get(&k.id).copied().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if keys.is_empty() {
        eprintln!("no keys yet: issue one with `keyward keys create`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let mut st = state(k, now).to_string();
            if k.canary {
                st.push_str(" (canary)");
            }
            let limits = keyward_gateway::limits::Limits {
                rpm: k.rpm.map(|v| v.max(0) as u64),
                tpm: k.tpm.map(|v| v.max(0) as u64),
                concurrency: k.max_concurrent.map(|v| v.max(0) as u64),
                daily_budget: k.daily_budget_pico,
                monthly_budget: k.monthly_budget_pico,
            };
            vec![
                k.id.clone(),
                st,
                k.environment.clone(),
                safe(&k.name).into_owned(),
                safe(k.owner.as_deref().unwrap_or("-")).into_owned(),
                safe(&k.models.join(",")).into_owned(),
                limits_label(&limits),
                k.expires_at.map_or_else(|| "never".into(), table::time),
                table::maybe_time(last_use.get(&k.id).copied()),
                k.hint.clone(),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "STATE",
            "ENV",
            "NAME",
            "MODELS",
            "EXPIRES",
            "LAST USED",
            "KEY",
        ],
        &rows,
    );
    Ok(())
}
