//! Keyward's vault: provider credentials encrypted at rest, and keyed hashes for
//! client keys.
//!
//! Envelope encryption: every secret gets its own random 256-bit data key; the
//! secret is sealed with XChaCha20-Poly1305 under that data key, and the data key is
//! sealed under the master key. Both seals bind the secret's name and version as
//! associated data, so a ciphertext moved to another row fails to open. Rotating the
//! master key only re-wraps data keys ([`rewrap`]); secrets are never decrypted to
//! disk.
//!
//! The master key comes from a file (refused when group or others can read it), an
//! environment variable, or a command's output (a KMS or HSM client), and is held in
//! memory in zeroizing types whose `Debug` prints nothing secret.

mod envelope;
mod master;
mod random;

pub use envelope::{open, open_bytes, rewrap, seal, Sealed};
pub use master::{MasterKey, MasterKeySource};
pub use random::{random_base62, random_bytes};
pub use secrecy::{ExposeSecret, SecretString};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Everything that can go wrong in the vault. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("master key file {path}: {reason}")]
    MasterKeyFile { path: String, reason: String },
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("cannot decrypt `{0}`: wrong master key, or the stored value was altered")]
    Decrypt(String),
    #[error("stored secret `{0}` is malformed")]
    Malformed(String),
}

/// A 256-bit key used to hash client keys (HMAC-SHA-256), so the store alone is
/// not enough to test guesses of a key. Kept sealed in the store under the master key.
#[derive(Clone, zeroize::ZeroizeOnDrop)]
pub struct HashKey([u8; 32]);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    /// A fresh random key.
    pub fn generate() -> HashKey {
        HashKey(random_bytes())
    }

    pub fn from_bytes(b: &[u8]) -> Option<HashKey> {
        b.try_into().ok().map(HashKey)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex HMAC-SHA-256 of `data`.
    pub fn hash_hex(&self, data: &[u8]) -> String {
        hmac_sha256_hex(&self.0, data)
    }
}

/// Hex HMAC-SHA-256 of `data` under an arbitrary `key` (webhook signatures,
/// where the receiver holds the same key).
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(data);
    // One allocation: this runs on every request (the key lookup, the echo
    // scrubber), where formatting byte by byte cost 33 allocations.
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_keyed_and_debug_is_opaque() {
        let a = HashKey::generate();
        let b = HashKey::generate();
        assert_eq!(a.hash_hex(b"k"), a.hash_hex(b"k"));
        assert_ne!(a.hash_hex(b"k"), b.hash_hex(b"k"));
        assert_eq!(format!("{a:?}"), "HashKey(..)");
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }
}
