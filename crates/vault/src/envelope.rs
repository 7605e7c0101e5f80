//! Sealing and opening secrets under per-secret data keys.

use crate::{random_bytes, Error, MasterKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::SecretString;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 24;

/// A sealed secret as stored: the data key sealed under the master key, and the
/// secret sealed under the data key. Each is `nonce || ciphertext+tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn aead_seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("encryption of in-memory data cannot fail");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn aead_open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

/// Seals `secret` for storage under `context` (name and version of the secret),
/// which must be given again to open it.
pub fn seal(master: &MasterKey, context: &str, secret: &[u8]) -> Sealed {
    let data_key: Zeroizing<[u8; 32]> = Zeroizing::new(random_bytes());
    Sealed {
        wrapped_key: aead_seal(master.bytes(), &data_key[..], context.as_bytes()),
        ciphertext: aead_seal(&data_key, secret, context.as_bytes()),
    }
}

fn unwrap_key(
    master: &MasterKey,
    context: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, Error> {
    let dk = aead_open(master.bytes(), wrapped, context.as_bytes())
        .ok_or_else(|| Error::Decrypt(context.to_string()))?;
    let arr: [u8; 32] = dk
        .as_slice()
        .try_into()
        .map_err(|_| Error::Malformed(context.to_string()))?;
    Ok(Zeroizing::new(arr))
}

/// Opens a sealed secret as bytes (zeroed on drop). Fails when the master key is
/// wrong, the context differs from the one it was sealed under, or a byte changed.
pub fn open_bytes(
    master: &MasterKey,
    context: &str,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let dk = unwrap_key(master, context, &sealed.wrapped_key)?;
    aead_open(&dk, &sealed.ciphertext, context.as_bytes())
        .ok_or_else(|| Error::Decrypt(context.to_string()))
}

/// Opens a sealed text secret; see [`open_bytes`].
pub fn open(master: &MasterKey, context: &str, sealed: &Sealed) -> Result<SecretString, Error> {
    let pt = open_bytes(master, context, sealed)?;
    let s = std::str::from_utf8(&pt).map_err(|_| Error::Malformed(context.to_string()))?;
    Ok(SecretString::from(s.to_string()))
}

/// Re-wraps the data key of a sealed secret from `old` to `new` master key. The
/// secret itself stays sealed under its data key and is never decrypted.
pub fn rewrap(
    old: &MasterKey,
    new: &MasterKey,
    context: &str,
    sealed: &Sealed,
) -> Result<Sealed, Error> {
    let dk = unwrap_key(old, context, &sealed.wrapped_key)?;
    Ok(Sealed {
        wrapped_key: aead_seal(new.bytes(), &dk[..], context.as_bytes()),
        ciphertext: sealed.ciphertext.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let m = MasterKey::generate();
        let s = seal(&m, "openai-prod#1", b"sk-real-value");
        assert!(!s.ciphertext.windows(13).any(|w| w == b"sk-real-value"));
        assert_eq!(
            open(&m, "openai-prod#1", &s).unwrap().expose_secret(),
            "sk-real-value"
        );
        assert!(open(&m, "openai-dev#1", &s).is_err(), "context is bound");
        assert!(
            open(&MasterKey::generate(), "openai-prod#1", &s).is_err(),
            "wrong master key"
        );
        let mut t = s.clone();
        let last = t.ciphertext.len() - 1;
        t.ciphertext[last] ^= 1;
        assert!(
            open(&m, "openai-prod#1", &t).is_err(),
            "tampering is detected"
        );
    }

    #[test]
    fn rewrap_moves_to_a_new_master_key_without_touching_the_ciphertext() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let s = seal(&old, "n#1", b"value");
        let r = rewrap(&old, &new, "n#1", &s).unwrap();
        assert_eq!(r.ciphertext, s.ciphertext);
        assert_eq!(open(&new, "n#1", &r).unwrap().expose_secret(), "value");
        assert!(open(&old, "n#1", &r).is_err());
    }
}
