//! What verifying a user's token costs per request, by algorithm, the first
//! time and once it is remembered, against the key lookup a Keyward key needs
//! (one keyed hash).
//!
//! `cargo bench -p keyward-gateway --bench identity`
//!
//! Keys are made by the `openssl` command when the bench starts; nothing is
//! committed.

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use keyward_gateway::config::identity::{IdentitySection, TokenUse};
use keyward_gateway::identity::Identities;

/// A private key made by the `openssl` command, DER-encoded.
fn openssl(script: &str) -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("the openssl command makes the test keys");
    assert!(!out.stdout.is_empty(), "openssl made no key: {script}");
    out.stdout
}

fn keys() -> Vec<(Algorithm, EncodingKey)> {
    // PKCS#1 for RSA, PKCS#8 for the others, as EncodingKey takes them.
    let rsa = openssl(
        "openssl genrsa 2048 2>/dev/null | openssl rsa -traditional -outform DER 2>/dev/null",
    );
    let p256 = openssl(
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -outform DER",
    );
    let ed = openssl("openssl genpkey -algorithm ed25519 -outform DER 2>/dev/null");
    vec![
        (Algorithm::RS256, EncodingKey::from_rsa_der(&rsa)),
        (Algorithm::ES256, EncodingKey::from_ec_der(&p256)),
        (Algorithm::EdDSA, EncodingKey::from_ed_der(&ed)),
    ]
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let set = JwkSet {
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, (alg, k))| {
                let mut jwk = Jwk::from_encoding_key(k, *alg).unwrap();
                jwk.common.key_id = Some(format!("k{i}"));
                jwk
            })
            .collect(),
    };
    std::fs::write(&jwks, serde_json::to_vec(&set).unwrap()).unwrap();
    let section: IdentitySection = toml::from_str(&format!(
        r#"
[[issuers]]
name = "app"
issuer = "https://login.example.com/"
audience = ["keyward"]
jwks_file = "{}"
[[issuers.rules]]
claims = {{ plan = "pro" }}
environment = "prod"
models = ["*"]
"#,
        jwks.display()
    ))
    .unwrap();
    section.validate().unwrap();
    let ids = Identities::new(&section, &reqwest::Client::new()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let now = keyward_gateway::time::now();
    let claims = serde_json::json!({"iss": "https://login.example.com/", "aud": "keyward",
        "sub": "auth0|5f7c8ec7c33c6c004bbafe82", "plan": "pro", "iat": now, "exp": now + 3600,
        "email": "someone@example.com", "scope": "openid profile email"});
    let mut group = c.benchmark_group("verify");
    for (i, (alg, key)) in keys.iter().enumerate() {
        let mut header = Header::new(*alg);
        header.kid = Some(format!("k{i}"));
        let token = encode(&header, &claims, key).unwrap();
        let none = |_: &str| None;
        assert!(rt
            .block_on(ids.verify(&token, TokenUse::Requests, now, &none))
            .is_ok());
        group.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| {
                rt.block_on(ids.verify(&token, TokenUse::Requests, now, &none))
                    .is_ok()
            })
        });
        // What a request pays from the second use of a token on (`user`
        // remembers verified tokens).
        group.bench_function(format!("{alg:?}, token seen before"), |b| {
            b.iter(|| rt.block_on(ids.user(&token, now, &none)).is_ok())
        });
    }
    let hash = keyward_vault::HashKey::generate();
    let key = "kw_prod_0123456789abcdefghijklmnopqrstuvwxyzAB";
    group.bench_function("keyward key hash (for comparison)", |b| {
        b.iter(|| hash.hash_hex(key.as_bytes()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
