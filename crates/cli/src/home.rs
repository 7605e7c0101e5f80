//! Which config and store a command works on, and opening them.
//!
//! Only `keyward serve` and `keyward init` may create a store and master key;
//! every other command opens an existing one and, when there is none, fails with
//! the place it looked and how to point it elsewhere.

use anyhow::Context;
use clap::Args;
use keyward_gateway::state::{OpenMode, StateError};
use keyward_gateway::{Backend, Config};
use std::path::PathBuf;

/// Where the embedded default keeps its store and master key.
pub fn embedded_home() -> PathBuf {
    std::env::var_os("KEYWARD_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("keyward-data"))
}

#[derive(Args, Clone)]
pub struct ConfigArg {
    /// Config file. Without one, the embedded default is used: SQLite and a master
    /// key in $KEYWARD_HOME (default ./keyward-data).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The config named on the command line, or the embedded default's (its
    /// `keyward.toml` when it has one). Creates nothing.
    pub fn load(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(p) => Ok(Config::load(p)?),
            None => {
                let home = std::path::absolute(embedded_home())
                    .context("cannot resolve the current directory")?;
                let file = home.join("keyward.toml");
                if file.is_file() {
                    Ok(Config::load(&file)?)
                } else {
                    Ok(Config::embedded(&home))
                }
            }
        }
    }

    /// [`ConfigArg::load`], creating the embedded default's directory (for
    /// `serve` and `init`).
    pub fn load_creating_home(&self) -> anyhow::Result<Config> {
        if self.config.is_none() {
            let home = embedded_home();
            std::fs::create_dir_all(&home)
                .with_context(|| format!("cannot create {}", home.display()))?;
        }
        self.load()
    }

    /// Opens the existing store of this config.
    pub async fn open(&self) -> anyhow::Result<(Config, Backend)> {
        let cfg = self.load()?;
        let backend = open_existing(&cfg).await?;
        Ok((cfg, backend))
    }
}

/// Opens `cfg`'s store, which must exist; when it does not, the error names where
/// it looked and the ways to fix that.
pub async fn open_existing(cfg: &Config) -> anyhow::Result<Backend> {
    match Backend::open_existing(cfg).await {
        Ok(b) => Ok(b),
        Err(StateError::NoStore(at)) => {
            let how = match &cfg.source {
                Some(file) => format!(
                    "the config {} points there. Fix its [store] url, or create the store with `keyward init --config {}`",
                    file.display(),
                    keyward_gateway::config::shell_quote(file)
                ),
                None => format!(
                    "run the command where `keyward serve` keeps its data, set KEYWARD_HOME to that directory \
                     (default ./keyward-data, here {}) or pass --config FILE; to start a new store, run `keyward init`",
                    cfg.base_dir.display()
                ),
            };
            anyhow::bail!("no Keyward store at {at}: {how}")
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `cfg`'s store, creating the store and a master key file when missing, and
/// says so when a key file was created.
pub async fn open_creating(cfg: &Config) -> anyhow::Result<Backend> {
    let (backend, created) = Backend::open_with(cfg, OpenMode::CreateMissing).await?;
    if created {
        if let keyward_vault::MasterKeySource::File(p) = cfg.master_key_source() {
            eprintln!(
                "created a new master key at {} (mode 0600): back it up; without it the vault cannot be read",
                p.display()
            );
        }
    }
    Ok(backend)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
