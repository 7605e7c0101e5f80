//! `keyward admin …`: keys for the admin HTTP API.

use super::applied;
use super::table::{self, safe};
use crate::home::{runtime, ConfigArg};
use anyhow::bail;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Issue a key for the admin HTTP API (`kw_admin_…`), printed once; returns
    /// once every running server accepts it.
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin key by id: returns once every running server refuses it.
    Revoke {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List admin keys (never a key or its hash).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AdminCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        AdminCmd::Create { name, config, json } => rt.block_on(async {
            let (_, b) = config.open().await?;
            let (rec, key) = b.create_admin_key(&name).await?;
            applied::confirm(&b).await?;
            if json {
                println!("{}", serde_json::json!({"id": rec.id, "key": key}));
            } else {
                println!(
                    "id:  {}\nkey: {key}\n\nThis is the only time the key is shown: store it now.",
                    rec.id
                );
            }
            Ok::<_, anyhow::Error>(())
        })?,
        AdminCmd::Revoke { id, config } => rt.block_on(async {
            let (_, b) = config.open().await?;
            if !b.revoke_admin_key(&id).await? {
                let known = b.store.admin_keys().await?;
                match known.iter().find(|k| k.id == id) {
                    Some(_) => bail!("admin key `{id}` is already revoked"),
                    None => bail!("no admin key with id `{id}` (see `keyward admin list`)"),
                }
            }
            eprintln!("revoked {id}");
            applied::confirm(&b).await
        })?,
        AdminCmd::List { config, json } => rt.block_on(async {
            let (_, b) = config.open().await?;
            let keys = b.store.admin_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                eprintln!("no admin keys yet: issue one with `keyward admin create --name NAME`");
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            if k.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                            .into(),
                            safe(&k.name).into_owned(),
                            table::time(k.created_at),
                            k.hint.clone(),
                        ]
                    })
                    .collect();
                table::print(&["ID", "STATE", "NAME", "CREATED", "KEY"], &rows);
            }
            Ok::<_, anyhow::Error>(())
        })?,
    }
    Ok(ExitCode::SUCCESS)
}
