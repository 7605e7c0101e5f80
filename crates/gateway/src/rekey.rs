//! `keyward vault rekey`: master key rotation while servers run.
//!
//! With a master key file, the new key is generated and written beside the old
//! one as `<file>.new` (mode 0600) before the store is re-wrapped in one
//! transaction; then it replaces the old file. A process that finds the store
//! re-wrapped but the file not yet replaced (a running server polling, or a rekey
//! cut short) uses `<file>.new`. With a key from an environment variable or a
//! command, the new key is given on standard input and the operator updates the
//! source; servers whose command then returns the new key switch by themselves.

use crate::config::Config;
use crate::state::{Backend, StateError};
use keyward_vault::{MasterKey, MasterKeySource};
use std::path::{Path, PathBuf};

/// What a rekey did.
#[derive(Debug)]
pub struct RekeyReport {
    /// Wrapped keys replaced.
    pub rewrapped: usize,
    /// The key file replaced, for a file source.
    pub key_file: Option<PathBuf>,
}

/// Where a rekey puts the new key file before the store commits to it.
pub fn pending_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    key_file.with_file_name(name)
}

/// The pending key of an unfinished rekey, when the source is a file and its
/// pending file holds the key with `check`.
pub(crate) fn pending_key(
    source: &MasterKeySource,
    check: &str,
) -> Result<Option<(MasterKey, PathBuf)>, StateError> {
    let MasterKeySource::File(p) = source else {
        return Ok(None);
    };
    let pending = pending_path(p);
    if !pending.exists() {
        return Ok(None);
    }
    let key = MasterKey::load(&MasterKeySource::File(pending.clone()))?;
    Ok((key.check_value() == check).then_some((key, pending)))
}

/// Moves a pending key file over the key file (atomic rename, then a directory
/// sync so the rename survives a crash).
pub(crate) fn install_pending(source: &MasterKeySource, pending: &Path) -> Result<(), StateError> {
    let MasterKeySource::File(p) = source else {
        return Ok(());
    };
    let err = |e: std::io::Error| {
        StateError::Invalid(format!(
            "cannot move {} to {}: {e}",
            pending.display(),
            p.display()
        ))
    };
    std::fs::rename(pending, p).map_err(err)?;
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Rotates the master key of the store `config` points at. `supplied` is the new
/// key for environment and command sources (and must be `None` for a file source,
/// where the key is generated).
pub async fn rotate_master_key(
    config: &Config,
    supplied: Option<MasterKey>,
) -> Result<RekeyReport, StateError> {
    let (backend, _) = Backend::open(config).await?;
    match config.master_key_source() {
        source @ MasterKeySource::File(_) => {
            if supplied.is_some() {
                return Err(StateError::Invalid(
                    "the master key is a file: `vault rekey` generates the new key itself; give nothing on stdin".into(),
                ));
            }
            let MasterKeySource::File(path) = &source else {
                unreachable!("matched above")
            };
            let pending = pending_path(path);
            if pending.exists() {
                // Left by a rekey that never committed (Backend::open would have
                // used it otherwise): it protects nothing.
                std::fs::remove_file(&pending).map_err(|e| {
                    StateError::Invalid(format!("cannot remove {}: {e}", pending.display()))
                })?;
            }
            let new = MasterKey::generate();
            new.write_new_file(&pending)?;
            let rewrapped = match backend.rekey(new).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&pending);
                    return Err(e);
                }
            };
            install_pending(&source, &pending)?;
            Ok(RekeyReport {
                rewrapped,
                key_file: Some(path.clone()),
            })
        }
        MasterKeySource::Env(_) | MasterKeySource::Command(_) => {
            let new = supplied.ok_or_else(|| {
                StateError::Invalid(
                    "the master key comes from an environment variable or a command: give the new key (base64 of 32 bytes) on stdin".into(),
                )
            })?;
            let rewrapped = backend.rekey(new).await?;
            Ok(RekeyReport {
                rewrapped,
                key_file: None,
            })
        }
    }
}
