//! `keyward vault …`: provider credentials, encrypted at rest.

use super::applied;
use super::table::human_age;
use crate::home::{runtime, ConfigArg};
use anyhow::Context;
use clap::Subcommand;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum VaultCmd {
    /// Store a provider credential (a new version if NAME exists). The value is
    /// read from standard input (prompted for, without echo, on a terminal),
    /// never from the command line.
    Put {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Store a new version of NAME (value on stdin) and switch traffic to it at
    /// once; earlier versions are kept for `vault rollback`.
    Rotate {
        name: String,
        /// Add the new version to the live pool instead of replacing: requests
        /// use every live version in turn (see `vault retire`).
        #[arg(long)]
        pool: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Take one live version of a pooled credential out of service (kept for
    /// rollback). The last live version cannot be retired.
    Retire {
        name: String,
        /// The version to retire (see `vault list`).
        #[arg(value_name = "VERSION")]
        number: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Switch NAME back to its previous version.
    Rollback {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Rotate the master key: every stored data key is re-wrapped under a new
    /// master key in one transaction, while servers keep running (they switch
    /// within a second). With a key file, the new key is generated and replaces
    /// the file; with `master_key_env` / `master_key_command`, give the new key
    /// (base64) on stdin, then update that source.
    Rekey {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List stored credentials (names and versions, never values).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
}

/// Reads a secret from standard input: prompted for without echo on a terminal,
/// otherwise read to the end. One trailing line break is dropped.
fn read_secret(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut value = zeroize::Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        *value = rpassword::prompt_password(format!("{what} (input hidden): "))
            .context("cannot read the secret from the terminal")?;
    } else {
        std::io::stdin()
            .read_to_string(&mut value)
            .context("cannot read the secret from standard input")?;
    }
    let trimmed = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(trimmed);
    Ok(value)
}

pub fn run(cmd: VaultCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        VaultCmd::Rekey { config } => rekey(&rt, &config)?,
        VaultCmd::Rollback { name, config } => rt.block_on(async {
            let (_, b) = config.open().await?;
            let version = b.vault_rollback(&name).await?;
            eprintln!("`{name}` now serves version {version}");
            applied::confirm(&b).await
        })?,
        VaultCmd::Retire {
            name,
            number: version,
            config,
        } => rt.block_on(async {
            let (_, b) = config.open().await?;
            b.vault_retire(&name, version).await?;
            eprintln!(
                "`{name}` v{version} retired: no longer used for requests (kept for rollback)"
            );
            applied::confirm(&b).await
        })?,
        VaultCmd::Put { name, config } => put(&rt, &name, &config, Write::Put)?,
        VaultCmd::Rotate { name, pool, config } => {
            let how = if pool { Write::PoolAdd } else { Write::Rotate };
            put(&rt, &name, &config, how)?
        }
        VaultCmd::List { config, json } => rt.block_on(list(&config, json))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, PartialEq)]
enum Write {
    Put,
    Rotate,
    PoolAdd,
}

/// `vault put` / `vault rotate`: the value comes from stdin, never argv.
fn put(
    rt: &tokio::runtime::Runtime,
    name: &str,
    config: &ConfigArg,
    how: Write,
) -> anyhow::Result<()> {
    // Open first: a missing store fails before anyone types a secret.
    let (cfg, b) = rt.block_on(config.open())?;
    let value = read_secret(&format!("value for `{name}`"))?;
    rt.block_on(async {
        let version = match how {
            Write::Put => b.vault_put(name, &value).await?,
            Write::Rotate => b.vault_rotate(name, &value).await?,
            Write::PoolAdd => b.vault_pool_add(name, &value).await?,
        };
        if how == Write::PoolAdd {
            eprintln!("stored `{name}` (version {version}), added to the live pool");
        } else {
            eprintln!("stored `{name}` (version {version})");
        }
        if !cfg
            .providers
            .iter()
            .any(|p| p.credential.names().contains(&name))
        {
            eprintln!(
                "note: no provider in {} uses `{name}` yet (set `credential = \"{name}\"` in its [[providers]] entry)",
                cfg.source
                    .as_ref()
                    .map_or_else(|| "the embedded default".to_string(), |p| p.display().to_string())
            );
        }
        applied::confirm(&b).await
    })
}

fn rekey(rt: &tokio::runtime::Runtime, config: &ConfigArg) -> anyhow::Result<()> {
    let cfg = config.load()?;
    // Fails on a missing store before anything is generated or read.
    let b = rt.block_on(crate::home::open_existing(&cfg))?;
    let supplied = match cfg.master_key_source() {
        keyward_vault::MasterKeySource::File(_) => None,
        _ => {
            let text = read_secret("new master key (base64)")?;
            Some(keyward_vault::MasterKey::from_base64(text.trim()).context(
                "the new master key on stdin must be base64 of 32 random bytes (e.g. `head -c32 /dev/urandom | base64`)",
            )?)
        }
    };
    let report = rt
        .block_on(keyward_gateway::rekey::rotate_master_key(&cfg, supplied))
        .map_err(anyhow::Error::from)?;
    match &report.key_file {
        Some(p) => eprintln!(
            "re-wrapped {} data keys under a new master key, now in {} (the old key is gone: \
             keep a copy elsewhere only if you must restore older database backups); \
             running servers switch within a second",
            report.rewrapped,
            p.display()
        ),
        None => eprintln!(
            "re-wrapped {} data keys under the new master key; update the master key \
             variable or command to return it (servers using a command switch by \
             themselves; servers reading an environment variable need a restart)",
            report.rewrapped
        ),
    }
    rt.block_on(applied::confirm(&b))
}

async fn list(config: &ConfigArg, json: bool) -> anyhow::Result<()> {
    let (cfg, b) = config.open().await?;
    let secrets = b.store.current_secrets().await?;
    let max_age = cfg.vault.max_age().map(|d| d.as_secs() as i64);
    let now = keyward_gateway::time::now();
    // Live versions per name, oldest first (the store orders them).
    let mut names: Vec<(String, Vec<(i64, i64)>)> = Vec::new();
    for s in &secrets {
        match names.last_mut() {
            Some((n, v)) if *n == s.name => v.push((s.version, s.created_at)),
            _ => names.push((s.name.clone(), vec![(s.version, s.created_at)])),
        }
    }
    let rows: Vec<_> = names
        .iter()
        .map(|(name, live)| {
            let (version, created_at) = *live.last().expect("at least one version");
            let age = now - created_at;
            serde_json::json!({
                "name": name, "version": version,
                "live_versions": live.iter().map(|v| v.0).collect::<Vec<_>>(),
                "created_at": created_at, "age_secs": age,
                "overdue": max_age.is_some_and(|m| age > m),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!(
            "no credentials yet: store one with `{}`",
            cfg.command("vault put NAME < key.txt")
        );
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let live = r["live_versions"].as_array().map_or(0, Vec::len);
            vec![
                r["name"].as_str().unwrap_or_default().to_string(),
                format!("v{}", r["version"]),
                if live > 1 {
                    format!("pool of {live}")
                } else {
                    "-".into()
                },
                super::table::time(r["created_at"].as_i64().unwrap_or(0)),
                human_age(r["age_secs"].as_i64().unwrap_or(0)),
                if r["overdue"] == true {
                    "ROTATION OVERDUE".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    super::table::print(&["NAME", "VERSION", "POOL", "CREATED", "AGE", ""], &table);
    Ok(())
}
