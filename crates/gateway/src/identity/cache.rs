//! Tokens already verified, so that a browser app sending the same token for an
//! hour pays for its signature once (RS256 costs ~80 µs, ES256 ~190 µs, a
//! cache hit ~2 µs: `cargo bench -p keyward-gateway --bench identity`).
//!
//! Entries are keyed by a keyed hash of the token (never the token), hold only
//! what a request needs (issuer, rule, subject, validity window) and are
//! trusted only while the issuer's key set is the one they were verified
//! against: a set that changes (a key withdrawn) sends every token of that
//! issuer through full verification again.

use keyward_vault::HashKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most tokens remembered; when full, expired ones go, then all.
pub const MAX_ENTRIES: usize = 65_536;

/// What a verified token let through.
#[derive(Clone)]
pub struct Entry {
    pub issuer: usize,
    pub rule: usize,
    pub subject: String,
    /// `exp` and `nbf`, Unix seconds (the skew is added when they are read).
    pub expires_at: f64,
    pub not_before: Option<f64>,
    /// The issuer's key-set generation it was verified under.
    pub keys_generation: u64,
}

pub struct VerifiedCache {
    hash: HashKey,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        VerifiedCache {
            hash: HashKey::generate(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl VerifiedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keyed hash a token is remembered by.
    pub fn id(&self, token: &str) -> String {
        self.hash.hash_hex(token.as_bytes())
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    pub fn put(&self, id: String, entry: Entry, now: f64) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.expires_at > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(id, entry);
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: f64) -> Entry {
        Entry {
            issuer: 0,
            rule: 0,
            subject: "u".into(),
            expires_at: exp,
            not_before: None,
            keys_generation: 0,
        }
    }

    #[test]
    fn bounded_and_keyed_by_a_hash_of_the_token() {
        let c = VerifiedCache::default();
        let id = c.id("eyJ.token.sig");
        assert!(!id.contains("token") && id.len() == 64);
        c.put(id.clone(), entry(100.0), 0.0);
        assert_eq!(c.get(&id).map(|e| e.subject), Some("u".into()));
        c.forget(&id);
        assert!(c.get(&id).is_none());
        for i in 0..MAX_ENTRIES {
            c.put(
                format!("{i}"),
                entry(if i % 2 == 0 { 10.0 } else { 1e12 }),
                0.0,
            );
        }
        // Full: the expired half goes when the next one arrives.
        c.put("new".into(), entry(1e12), 50.0);
        assert_eq!(c.len(), MAX_ENTRIES / 2 + 1);
    }
}
