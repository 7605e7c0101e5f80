//! An issuer's signing keys: a static key set, or one fetched from its JWKS URL,
//! cached, fetched again on schedule and when a token names an unknown `kid`
//! (at most once per [`MIN_REFETCH`]), kept when a fetch fails.

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fetches prompted by tokens are at most this frequent per issuer: a flood of
/// tokens with made-up `kid`s cannot turn the gateway against the issuer.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A key set larger than this is refused (a real one is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// At most this many keys are kept from a set.
pub const MAX_KEYS: usize = 64;
/// A fetch that takes longer fails.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The algorithms it verifies: its `alg` when the set names one, else every
    /// algorithm of its type and curve.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// A parsed key set.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parses JWKS JSON, keeping the signature keys it can use (RSA, P-256,
    /// P-384, Ed25519) and skipping encryption keys and unknown types.
    pub fn parse(json: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document ({e})"))?;
        let mut keys = Vec::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let by_type: Vec<Algorithm> = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    vec![Algorithm::EdDSA]
                }
                // Symmetric keys never come from a published set.
                _ => continue,
            };
            let algorithms = match jwk.common.key_algorithm {
                Some(a) => match key_algorithm(a) {
                    Some(a) if by_type.contains(&a) => vec![a],
                    _ => continue,
                },
                None => by_type,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithms,
                key,
            });
        }
        Ok(KeySet { keys })
    }

    /// The keys that may have signed a token with `kid` and `alg`: the one with
    /// that `kid`, or, for a token without one, every key for `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid)
        })
    }
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Where an issuer's keys come from.
pub enum KeySource {
    /// Read once from `jwks_file` (or none: HS256 only).
    Static(Arc<KeySet>),
    Remote(Remote),
}

/// A key set fetched from a URL.
pub struct Remote {
    url: String,
    client: reqwest::Client,
    current: ArcSwapOption<KeySet>,
    /// When the last fetch started (successful or not).
    last_try: std::sync::Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Bumped whenever a fetch brings a different set (tokens verified under
    /// an older one are verified again).
    generation: std::sync::atomic::AtomicU64,
    /// A hash of the last set's bytes, to tell whether it changed.
    last_body: std::sync::atomic::AtomicU64,
}

impl KeySource {
    /// The generation of the keys tokens are verified with: 0 for a static set.
    pub fn generation(&self) -> u64 {
        match self {
            KeySource::Static(_) => 0,
            KeySource::Remote(r) => r.generation(),
        }
    }
}

/// What looking up a key found.
pub enum Lookup {
    /// The set, after a fetch when it had to be fetched.
    Set(Arc<KeySet>),
    /// No key set could be fetched and none is cached.
    Unavailable,
}

impl Remote {
    pub fn new(url: String, client: reqwest::Client) -> Remote {
        Remote {
            url,
            client,
            current: ArcSwapOption::empty(),
            last_try: std::sync::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
            last_body: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cached set, if any.
    pub fn cached(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Fetches the set now, replacing the cached one on success; on failure the
    /// cached one stays and the reason is returned (for the log).
    pub async fn fetch(&self) -> Result<Arc<KeySet>, String> {
        let _one = self.fetching.lock().await;
        self.fetch_holding_lock().await
    }

    async fn fetch_holding_lock(&self) -> Result<Arc<KeySet>, String> {
        use std::hash::{Hash, Hasher};
        use std::sync::atomic::Ordering;
        *self.last_try.lock().expect("never poisoned") = Some(Instant::now());
        let (set, body) = self.download().await?;
        let set = Arc::new(set);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        if self.last_body.swap(h.finish(), Ordering::AcqRel) != h.finish() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.current.store(Some(set.clone()));
        Ok(set)
    }

    /// Changes whenever the fetched set does.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn download(&self) -> Result<(KeySet, Vec<u8>), String> {
        let mut resp = self
            .client
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {}: {}", self.url, error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{} answered {}", self.url, resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading {}: {e}", self.url))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("{} sent over {MAX_JWKS_BYTES} bytes", self.url));
            }
        }
        let set = KeySet::parse(&body).map_err(|e| format!("{}: {e}", self.url))?;
        Ok((set, body))
    }

    /// The set to verify a token whose `kid` the cached set lacks: fetched
    /// again unless a fetch started within [`MIN_REFETCH`].
    pub async fn refetch_for_unknown_kid(&self) -> Lookup {
        // Tokens arriving together wait for one fetch, then all see its result.
        let _one = self.fetching.lock().await;
        let recent = self
            .last_try
            .lock()
            .expect("never poisoned")
            .is_some_and(|t| t.elapsed() < MIN_REFETCH);
        if !recent {
            if let Err(e) = self.fetch_holding_lock().await {
                tracing::warn!("identity: {e}; keeping the cached key set");
            }
        }
        match self.cached() {
            Some(set) => Lookup::Set(set),
            None => Lookup::Unavailable,
        }
    }
}

/// An error and its causes, `: `-joined (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_keep_signature_keys_they_can_use() {
        // RFC 7517's example keys (public parts), with one for encryption, one
        // symmetric and one of an unknown type.
        let json = br#"{"keys": [
          {"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"ec1"},
          {"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"rsa1"},
          {"kty":"RSA","use":"enc","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","kid":"enc1"},
          {"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow","kid":"hmac1"},
          {"kty":"XYZ","kid":"future1"}
        ]}"#;
        let set = KeySet::parse(json).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["ec1", "rsa1"]);
        assert_eq!(set.candidates(Some("rsa1"), Algorithm::RS256).count(), 1);
        // Its `alg` pins the RSA key to RS256.
        assert_eq!(set.candidates(Some("rsa1"), Algorithm::PS256).count(), 0);
        assert_eq!(set.candidates(Some("ec1"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 1);
        assert_eq!(set.candidates(Some("nope"), Algorithm::ES256).count(), 0);
        assert!(KeySet::parse(b"<html>").is_err());
    }
}
