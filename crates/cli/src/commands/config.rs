//! `keyward init` and `keyward config check`.

use crate::home::{runtime, ConfigArg};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Check a config without serving: it parses, its store exists and opens with
    /// the master key, and every credential it names is in the vault. Exits 1
    /// when something is missing, saying what to run.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub fn run(cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Check { config } => check(&config),
    }
}

fn check(config: &ConfigArg) -> anyhow::Result<ExitCode> {
    let cfg = config.load()?;
    match &cfg.source {
        Some(p) => println!("config {}: valid", p.display()),
        None => println!(
            "no config file: the embedded default in {}",
            cfg.base_dir.display()
        ),
    }
    println!(
        "listen {}{}",
        cfg.server.listen,
        if cfg.server.tls_cert.is_some() {
            " (TLS)"
        } else {
            ""
        }
    );
    if cfg.providers.is_empty() {
        println!("providers: none (add [[providers]] entries to broker calls)");
    }
    for p in &cfg.providers {
        println!(
            "provider {} ({:?}): models {}; credential {}",
            p.name,
            p.kind,
            p.models.join(", "),
            p.credential.names().join(", ")
        );
    }
    // The issuers' rules and static key sets, checked as `serve` checks them.
    keyward_gateway::identity::Identities::new(&cfg.identity, &reqwest::Client::new())
        .map_err(anyhow::Error::msg)?;
    for i in &cfg.identity.issuers {
        let keys = match (&i.jwks_url, &i.jwks_file) {
            (Some(u), _) => format!("keys from {u}"),
            (None, Some(f)) => format!("keys in {}", f.display()),
            (None, None) => "HS256 only".to_string(),
        };
        println!(
            "issuer {} ({}): {}; {keys}; {} rule(s){}",
            i.name,
            match i.token_use {
                keyward_gateway::config::identity::TokenUse::Requests => "tokens on API calls",
                keyward_gateway::config::identity::TokenUse::Exchange => "exchanged at /v1/token",
            },
            i.issuer,
            i.rules.len(),
            if i.allowed_origins.is_empty() {
                String::new()
            } else {
                format!("; browser origins {}", i.allowed_origins.join(", "))
            }
        );
    }
    let rt = runtime()?;
    let backend = rt.block_on(crate::home::open_existing(&cfg))?;
    println!("store {}: opens with the master key", cfg.store_location());
    let stored = rt.block_on(backend.store.current_secrets())?;
    let missing = cfg.missing_credentials(|n| stored.iter().any(|s| s.name == n));
    for m in &missing {
        println!(
            "MISSING credential `{}` (needed by {}): run `{}`",
            m.name,
            m.used_by.join(", "),
            cfg.command(&format!("vault put {} < key.txt", m.name))
        );
    }
    let missing_hmac: Vec<(&str, &str)> = cfg
        .identity
        .issuers
        .iter()
        .filter_map(|i| i.hs256_secret.as_deref().map(|s| (i.name.as_str(), s)))
        .filter(|(_, s)| !stored.iter().any(|x| x.name == *s))
        .collect();
    for (issuer, secret) in &missing_hmac {
        println!(
            "MISSING HS256 secret `{secret}` (issuer {issuer}; its tokens are refused until then): run `{}`",
            cfg.command(&format!("vault put {secret} < secret.txt"))
        );
    }
    Ok(if missing.is_empty() && missing_hmac.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `keyward init`: creates the store and master key for this config (or the
/// embedded default) if they do not exist, and says where they are.
pub fn init(config: &ConfigArg) -> anyhow::Result<ExitCode> {
    let cfg = config.load_creating_home()?;
    let rt = runtime()?;
    let existed = rt
        .block_on(keyward_gateway::Backend::open_existing(&cfg))
        .is_ok();
    rt.block_on(crate::home::open_creating(&cfg))?;
    let verb = if existed { "already exists" } else { "created" };
    println!("store {}: {verb}", cfg.store_location());
    println!(
        "next: store a provider key with `{}`",
        cfg.command("vault put NAME < key.txt")
    );
    Ok(ExitCode::SUCCESS)
}
