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
use crate::master_file::{install_pending, pending_path};
use crate::state::{Backend, StateError};
use keyward_vault::{MasterKey, MasterKeySource};
use std::path::PathBuf;

/// What a rekey did.
#[derive(Debug)]
pub struct RekeyReport {
    /// Wrapped keys replaced.
    pub rewrapped: usize,
    /// The key file replaced, for a file source.
    pub key_file: Option<PathBuf>,
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
