//! `keyward serve`, `keyward vault …` and `keyward keys …`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_gateway::{Backend, Config, NewKey};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where the embedded default keeps its store and master key.
fn embedded_home() -> PathBuf {
    std::env::var_os("KEYWARD_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("keyward-data"))
}

#[derive(Args, Clone)]
pub struct ConfigArg {
    /// Config file. Without one, the embedded default is used: SQLite and a master
    /// key in $KEYWARD_HOME (default ./keyward-data).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(p) => Ok(Config::load(p)?),
            None => {
                let home = embedded_home();
                std::fs::create_dir_all(&home)
                    .with_context(|| format!("cannot create {}", home.display()))?;
                let home = home.canonicalize()?;
                let file = home.join("keyward.toml");
                if file.is_file() {
                    Ok(Config::load(&file)?)
                } else {
                    Ok(Config::embedded(&home))
                }
            }
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen address, overriding [server] listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
pub enum VaultCmd {
    /// Store a provider credential (a new version if NAME exists). The value is
    /// read from standard input, never from the command line.
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

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Issue a client key. The key is printed once and never stored.
    Create(CreateArgs),
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
    /// Revoke a key by id: every running server refuses it within a second.
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
    /// Lift a suspension.
    Resume {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List keys (never a key or its hash).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Issue a key for the admin HTTP API (`kw_admin_…`), printed once.
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin key by id.
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

pub fn admin(cmd: AdminCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        AdminCmd::Create { name, config, json } => {
            let cfg = config.load()?;
            let (rec, key) = rt.block_on(async {
                open(&cfg)
                    .await?
                    .create_admin_key(&name)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            if json {
                println!("{}", serde_json::json!({"id": rec.id, "key": key}));
            } else {
                println!(
                    "id:  {}\nkey: {key}\n\nThis is the only time the key is shown: store it now.",
                    rec.id
                );
            }
        }
        AdminCmd::Revoke { id, config } => {
            let cfg = config.load()?;
            let found = rt.block_on(async {
                Ok::<_, anyhow::Error>(open(&cfg).await?.revoke_admin_key(&id).await?)
            })?;
            if !found {
                bail!("no admin key with id `{id}` (see `keyward admin list`)");
            }
            eprintln!("revoked {id}");
        }
        AdminCmd::List { config, json } => {
            let cfg = config.load()?;
            let keys = rt.block_on(async {
                Ok::<_, anyhow::Error>(open(&cfg).await?.store.admin_keys().await?)
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in &keys {
                    let state = state_label(k.revoked_at);
                    println!("{:<26} {:<8} {:<20} {}", k.id, state, safe(&k.name), k.hint);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
        #[arg(long)]
        json: bool,
    },
    /// Entries matching every filter given.
    Search {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        actor: Option<String>,
        /// Action, e.g. keys.create, keys.revoke, vault.put, request.refused.
        #[arg(long)]
        action: Option<String>,
        /// Target: a key id, secret name or path.
        #[arg(long)]
        target: Option<String>,
        /// Only entries at or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Every entry as JSON lines, oldest first.
    Export {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Reads the whole log in order, calling `f` for each entry.
async fn each_entry(
    backend: &Backend,
    mut f: impl FnMut(&keyward_store::AuditRow),
) -> anyhow::Result<()> {
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

/// A stored text as a terminal may show it: control and invisible formatting
/// characters escaped, so that no value can forge or hide a row.
fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    keyward_gateway::keys::escape_for_terminal(s)
}

fn print_entry(r: &keyward_store::AuditRow, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("serialisable"));
    } else {
        println!(
            "{:>6} {} {:<24} {:<20} {:<8} {:<28} {}",
            r.seq,
            r.at,
            safe(&r.actor),
            safe(&r.action),
            safe(&r.outcome),
            safe(&r.target),
            safe(&r.details)
        );
    }
}

pub fn audit(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        AuditCmd::Verify { config, json } => {
            let cfg = config.load()?;
            let report = rt.block_on(async {
                let b = open(&cfg).await?;
                Ok::<_, anyhow::Error>(
                    keyward_gateway::audit::verify(&b.store, b.audit_key()).await?,
                )
            })?;
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
        }
        AuditCmd::Tail {
            config,
            count,
            json,
        } => {
            let cfg = config.load()?;
            rt.block_on(async {
                let b = open(&cfg).await?;
                let last = b.store.audit_last_seq().await?;
                for r in b.store.audit_entries((last - count).max(0), count).await? {
                    print_entry(&r, json);
                }
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Search {
            config,
            actor,
            action,
            target,
            since,
            json,
        } => {
            let cfg = config.load()?;
            rt.block_on(async {
                let b = open(&cfg).await?;
                each_entry(&b, |r| {
                    let keep = actor.as_ref().is_none_or(|a| &r.actor == a)
                        && action.as_ref().is_none_or(|a| &r.action == a)
                        && target.as_ref().is_none_or(|t| &r.target == t)
                        && since.is_none_or(|s| r.at >= s);
                    if keep {
                        print_entry(r, json);
                    }
                })
                .await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export { config } => {
            let cfg = config.load()?;
            rt.block_on(async {
                let b = open(&cfg).await?;
                each_entry(&b, |r| print_entry(r, true)).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Args)]
pub struct CreateArgs {
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
    /// streamGenerateContent, countTokens, embedContent); default: all.
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

const ENDPOINT_NAMES: &[&str] = &[
    "chat.completions",
    "completions",
    "embeddings",
    "responses",
    "models",
    "messages",
    "messages.count_tokens",
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
];

fn parse_lifetime(s: &str) -> anyhow::Result<Option<Duration>> {
    keyward_gateway::admin::parse_lifetime(s).with_context(|| {
        format!("`{s}` is not a lifetime; use e.g. 30d, 12h, 45m or never (at most 36500d)")
    })
}

fn state_label(revoked_at: Option<i64>) -> &'static str {
    if revoked_at.is_some() {
        "revoked"
    } else {
        "active"
    }
}

/// Applies a change of state to key `id` (`apply` says whether such a key was
/// there to change), then waits up to 2 s for the running servers to confirm it
/// and says how many did, warning about any that have not yet.
fn change_key(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    id: &str,
    done: &str,
    which: &str,
    apply: impl AsyncFnOnce(&Backend) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let applied = rt.block_on(async {
        let b = open(cfg).await?;
        if !apply(&b).await? {
            return Ok::<_, anyhow::Error>(None);
        }
        Ok(Some(b.await_replicas(Duration::from_secs(2)).await?))
    })?;
    let Some((confirmed, behind)) = applied else {
        bail!("no {which}key with id `{id}` (see `keyward keys list`)");
    };
    eprintln!("{done} {id}; applied by {confirmed} running server(s)");
    if !behind.is_empty() {
        eprintln!(
            "warning: not yet confirmed by {}: they apply it once they reach the store",
            behind.join(", ")
        );
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn open(config: &Config) -> anyhow::Result<Backend> {
    let (backend, created) = Backend::open(config).await?;
    if created {
        if let keyward_vault_source::File(p) = config.master_key_source() {
            eprintln!("created a new master key at {} (mode 0600): back it up; without it the vault cannot be read", p.display());
        }
    }
    Ok(backend)
}

use keyward_vault::MasterKeySource as keyward_vault_source;

pub fn vault(cmd: VaultCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        VaultCmd::Rekey { config } => {
            let cfg = config.load()?;
            let supplied = match cfg.master_key_source() {
                keyward_vault::MasterKeySource::File(_) => None,
                _ => {
                    let mut text = zeroize::Zeroizing::new(String::new());
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("cannot read the new master key from standard input")?;
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
        }
        VaultCmd::Rollback { name, config } => {
            let cfg = config.load()?;
            let version = rt.block_on(async {
                open(&cfg)
                    .await?
                    .vault_rollback(&name)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            eprintln!("`{name}` now serves version {version}");
        }
        VaultCmd::Retire {
            name,
            number: version,
            config,
        } => {
            let cfg = config.load()?;
            rt.block_on(async {
                open(&cfg)
                    .await?
                    .vault_retire(&name, version)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            eprintln!(
                "`{name}` v{version} retired: no longer used for requests (kept for rollback)"
            );
        }
        VaultCmd::Put { name, config } => put_secret(&rt, &name, &config, false)?,
        VaultCmd::Rotate { name, pool, config } => put_secret(&rt, &name, &config, pool)?,
        VaultCmd::List { config, json } => {
            let cfg = config.load()?;
            let secrets = rt.block_on(async {
                Ok::<_, anyhow::Error>(open(&cfg).await?.store.current_secrets().await?)
            })?;
            let max_age = cfg.vault.max_age().map(|d| d.as_secs() as i64);
            let now = keyward_gateway::state::now();
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
            } else {
                for r in &rows {
                    let pooled = r["live_versions"].as_array().map_or(0, Vec::len);
                    let pool = if pooled > 1 {
                        format!(" (pool of {pooled})")
                    } else {
                        String::new()
                    };
                    let overdue = if r["overdue"] == true {
                        "  ROTATION OVERDUE"
                    } else {
                        ""
                    };
                    println!(
                        "{:<32} v{:<4}{pool} age {}{overdue}",
                        r["name"].as_str().unwrap_or_default(),
                        r["version"],
                        human_age(r["age_secs"].as_i64().unwrap_or(0)),
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `vault put` / `vault rotate`: the value comes from stdin, never argv.
fn put_secret(
    rt: &tokio::runtime::Runtime,
    name: &str,
    config: &ConfigArg,
    pooled: bool,
) -> anyhow::Result<()> {
    let cfg = config.load()?;
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("cannot read the secret from standard input")?;
    let value = zeroize::Zeroizing::new(value);
    let trimmed = value.trim_end_matches(['\n', '\r']);
    let version = rt.block_on(async {
        let backend = open(&cfg).await?;
        if pooled {
            backend.vault_pool_add(name, trimmed).await
        } else {
            backend.vault_put(name, trimmed).await
        }
        .map_err(anyhow::Error::from)
    })?;
    if pooled {
        eprintln!("stored `{name}` (version {version}), added to the live pool");
    } else {
        eprintln!("stored `{name}` (version {version})");
    }
    Ok(())
}

pub fn keys(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        KeysCmd::Create(a) => {
            let cfg = a.config.load()?;
            for e in &a.endpoints {
                if !ENDPOINT_NAMES.contains(&e.as_str()) {
                    bail!(
                        "unknown endpoint `{e}`; use one of: {}",
                        ENDPOINT_NAMES.join(", ")
                    );
                }
            }
            for p in &a.providers {
                if !cfg.providers.iter().any(|c| &c.name == p) {
                    bail!("no provider named `{p}` in the config");
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
            };
            let (record, key) = rt.block_on(async {
                open(&cfg)
                    .await?
                    .create_key(spec)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            if a.json {
                println!("{}", serde_json::json!({"id": record.id, "key": key}));
            } else {
                println!(
                    "id:  {}\nkey: {key}\n\nThis is the only time the key is shown: store it now.",
                    record.id
                );
            }
        }
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
            let cfg = config.load()?;
            let key = rt.block_on(async {
                open(&cfg)
                    .await?
                    .rotate_key(&id, grace)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            let Some(key) = key else {
                bail!("no key with id `{id}` (see `keyward keys list`)");
            };
            if json {
                println!("{}", serde_json::json!({"id": id, "key": key}));
            } else {
                println!(
                    "id:  {id}\nkey: {key}\n\nThe previous secret works for {}s more. This is the only time the new key is shown.",
                    grace.as_secs()
                );
            }
        }
        KeysCmd::Revoke { id, reason, config } => {
            change_key(&rt, &config.load()?, &id, "revoked", "", async |b| {
                Ok(b.revoke_key(&id, &reason).await?)
            })?;
        }
        KeysCmd::Suspend { id, reason, config } => {
            change_key(&rt, &config.load()?, &id, "suspended", "live ", async |b| {
                Ok(b.suspend_key(&id, &reason).await?)
            })?;
        }
        KeysCmd::Resume { id, config } => {
            change_key(&rt, &config.load()?, &id, "resumed", "live ", async |b| {
                Ok(b.resume_key(&id).await?)
            })?;
        }
        KeysCmd::List { config, json } => {
            let cfg = config.load()?;
            let keys = rt.block_on(async {
                Ok::<_, anyhow::Error>(open(&cfg).await?.store.keys().await?)
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in &keys {
                    let state = if k.revoked_at.is_none() && k.suspended_at.is_some() {
                        "suspended"
                    } else {
                        state_label(k.revoked_at)
                    };
                    println!(
                        "{:<26} {:<9} {:<6} {:<20} {}",
                        k.id,
                        state,
                        k.environment,
                        safe(&k.name),
                        k.hint
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| "info".into());
    // Log lines are written by a background thread, never on the request path.
    // Lines beyond its buffer are dropped (and counted by the appender) rather than
    // slowing requests. Every line is redacted on that thread.
    let (writer, _log_guard) =
        tracing_appender::non_blocking(crate::log_redact::RedactingWriter::new(
            std::io::stderr(),
            keyward_detect::Detector::builtin(),
        ));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let mut cfg = a.config.load()?;
    if let Some(l) = a.listen {
        cfg.server.listen = l;
    }
    let embedded = a.config.config.is_none();
    let home = cfg.base_dir.clone();
    let no_providers = cfg.providers.is_empty();
    runtime()?.block_on(async move {
        keyward_gateway::serve(cfg, shutdown_signal(), |addr, _| {
            tracing::info!("listening on http://{addr}");
            if embedded || no_providers {
                print_getting_started(&home, embedded);
            }
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_getting_started(home: &Path, embedded: bool) {
    let cfg = home.join("keyward.toml");
    let c = if embedded {
        String::new()
    } else {
        format!(" --config {}", cfg.display())
    };
    eprintln!(
        "\nKeyward is running{} with no providers configured. To broker calls:\n\
         1. describe a provider in {}:\n\
         \x20    [store]\n     url = \"sqlite://keyward.db\"\n     [[providers]]\n     name = \"openai\"\n     kind = \"openai\"\n     base_url = \"https://api.openai.com/v1\"\n     credential = \"openai-prod\"\n     models = [\"gpt-4o-mini\"]\n\
         2. store its key (read from stdin, never argv):  keyward vault put openai-prod{c} < openai.key\n\
         3. issue a client key:  keyward keys create{c} --name my-app --env prod --models 'gpt-4o*'\n\
         4. restart `keyward serve{c}` and point your SDK's base URL at this server.\n",
        if embedded { format!(" on the embedded store in {}", home.display()) } else { String::new() },
        cfg.display()
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
