//! The master key file's pending successor during a `vault rekey`: the new key
//! waits beside the old one as `<file>.new` until the store has committed to it,
//! then replaces it. A leaf module, used by the rekey and by every process that
//! opens the store (which finishes a rekey cut short).

use keyward_vault::{MasterKey, MasterKeySource};
use std::path::{Path, PathBuf};

/// Where a rekey puts the new key file before the store commits to it.
pub fn pending_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    key_file.with_file_name(name)
}

/// The pending key of an unfinished rekey, when the source is a file and its
/// pending file holds the key with `check`.
pub fn pending_key(
    source: &MasterKeySource,
    check: &str,
) -> Result<Option<(MasterKey, PathBuf)>, keyward_vault::Error> {
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
pub fn install_pending(
    source: &MasterKeySource,
    pending: &Path,
) -> Result<(), keyward_vault::Error> {
    let MasterKeySource::File(p) = source else {
        return Ok(());
    };
    let err = |e: std::io::Error| keyward_vault::Error::MasterKeyFile {
        path: p.display().to_string(),
        reason: format!("cannot move {} over it: {e}", pending.display()),
    };
    std::fs::rename(pending, p).map_err(err)?;
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
