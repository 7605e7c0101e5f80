//! The master key and where it comes from.

use crate::{random_bytes, Error};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The 256-bit key that wraps every data key. Zeroed on drop; `Debug` prints no bytes.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(check={})", &self.check_value()[..8])
    }
}

/// Where the master key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A file holding the key in base64; refused when group or others may read it.
    File(PathBuf),
    /// An environment variable holding the key in base64.
    Env(String),
    /// A shell command whose standard output is the key in base64 (KMS, HSM, pass…).
    Command(String),
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> MasterKey {
        MasterKey(Zeroizing::new(random_bytes()))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses base64 (standard alphabet, padding optional) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<MasterKey, Error> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim().trim_end_matches('='))
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim().trim_end_matches('=')))
                .map_err(|_| Error::MasterKey("not base64; a master key is 32 random bytes in base64 (`openssl rand -base64 32`)".into()))?,
        );
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::MasterKey(format!(
                "{} bytes; a master key is exactly 32 bytes",
                bytes.len()
            ))
        })?;
        Ok(MasterKey(Zeroizing::new(arr)))
    }

    /// Base64 form, for writing a new key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&self.0[..]))
    }

    /// A public value that identifies this key without revealing it, stored beside
    /// the data so a wrong master key is caught at start-up, not at first use.
    pub fn check_value(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..]).expect("any key length");
        mac.update(b"keyward master key check v1");
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Loads the key from its source.
    pub fn load(source: &MasterKeySource) -> Result<MasterKey, Error> {
        match source {
            MasterKeySource::File(p) => read_key_file(p),
            MasterKeySource::Env(var) => {
                let v = Zeroizing::new(std::env::var(var).map_err(|_| {
                    Error::MasterKey(format!("environment variable {var} is not set"))
                })?);
                MasterKey::from_base64(&v).map_err(|e| Error::MasterKey(format!("from {var}: {e}")))
            }
            MasterKeySource::Command(cmd) => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| Error::MasterKey(format!("cannot run master key command: {e}")))?;
                if !out.status.success() {
                    return Err(Error::MasterKey(format!(
                        "master key command exited with {}",
                        out.status
                    )));
                }
                let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
                MasterKey::from_base64(&text)
                    .map_err(|e| Error::MasterKey(format!("from master key command: {e}")))
            }
        }
    }

    /// Loads the key file, or creates it with a fresh key (mode 0600) when it does
    /// not exist. Returns the key and whether it was created.
    pub fn load_or_create_file(path: &Path) -> Result<(MasterKey, bool), Error> {
        if path.exists() {
            return read_key_file(path).map(|k| (k, false));
        }
        let key = MasterKey::generate();
        key.write_new_file(path)?;
        Ok((key, true))
    }

    /// Writes this key to a file that must not exist yet, readable by its owner
    /// only (mode 0600), and syncs it to disk.
    pub fn write_new_file(&self, path: &Path) -> Result<(), Error> {
        let err = |reason: String| Error::MasterKeyFile {
            path: path.display().to_string(),
            reason,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(path)
            .map_err(|e| err(format!("cannot create: {e}")))?;
        use std::io::Write;
        f.write_all(format!("{}\n", self.to_base64().as_str()).as_bytes())
            .map_err(|e| err(format!("cannot write: {e}")))?;
        f.sync_all()
            .map_err(|e| err(format!("cannot write: {e}")))?;
        Ok(())
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, Error> {
    let err = |reason: String| Error::MasterKeyFile {
        path: path.display().to_string(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets other users read it; run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    MasterKey::from_base64(&text).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let (k1, created) = MasterKey::load_or_create_file(&p).unwrap();
        assert!(created);
        let (k2, created) = MasterKey::load_or_create_file(&p).unwrap();
        assert!(!created);
        assert_eq!(k1.check_value(), k2.check_value());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = MasterKey::load(&MasterKeySource::File(p.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn env_and_command_sources() {
        let k = MasterKey::generate();
        std::env::set_var("KW_TEST_MASTER", k.to_base64().as_str());
        let from_env = MasterKey::load(&MasterKeySource::Env("KW_TEST_MASTER".into())).unwrap();
        assert_eq!(from_env.check_value(), k.check_value());
        let from_cmd = MasterKey::load(&MasterKeySource::Command(
            "printf %s \"$KW_TEST_MASTER\"".into(),
        ))
        .unwrap();
        assert_eq!(from_cmd.check_value(), k.check_value());
        assert!(MasterKey::load(&MasterKeySource::Command("exit 3".into())).is_err());
        let short = MasterKey::from_base64("AAAA").unwrap_err().to_string();
        assert!(short.contains("32 bytes"));
        assert!(!format!("{k:?}").contains(k.to_base64().as_str()));
    }
}
