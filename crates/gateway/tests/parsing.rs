//! What the gateway reads from a request before it trusts it, on generated input
//! (the same properties as `fuzz/fuzz_targets/request_parsing.rs`, run by CI):
//! classification never panics, the audit form of a path holds no secret found in
//! it, body redaction keeps valid JSON valid and removes what it found, and the echo
//! scrubber gives the same output whole and in pieces.

use axum::http::{HeaderMap, HeaderValue, Method};
use keyward_detect::Detector;
use keyward_gateway::{api, audit, echo::EchoScrubber, redact};
use proptest::prelude::*;

fn token() -> String {
    keyward_detect::checksum::github_style_seal("ghp_", "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa")
}

/// Path-like text built from provider path pieces, tokens and noise.
fn paths() -> impl Strategy<Value = String> {
    let token = token();
    proptest::collection::vec(
        prop_oneof![
            Just("/v1".to_string()),
            Just("/v1beta/models/".to_string()),
            Just(":generateContent".to_string()),
            Just("/chat/completions".to_string()),
            Just("/messages".to_string()),
            Just("%2F".to_string()),
            Just("..".to_string()),
            Just(token),
            "[a-zA-Z0-9_/:.%-]{0,12}",
            "\\PC{0,4}",
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn request_paths_and_headers_classify_without_panic_and_audit_without_secrets(
        path in paths(),
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::DELETE)],
        header_values in proptest::collection::vec("[ -~]{0,40}", 0..4),
    ) {
        let mut headers = HeaderMap::new();
        for (name, v) in ["x-api-key", "x-goog-api-key", "anthropic-version", "content-type"]
            .iter()
            .zip(&header_values)
        {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.insert(*name, v);
            }
        }
        let _ = api::classify(&method, &path, &headers);
        let _ = api::guess_family(&path, &headers);
        let target = audit::safe_target(&path);
        prop_assert!(!target.contains(&token()), "{target}");
    }

    #[test]
    fn redacted_bodies_stay_json_and_hold_none_of_what_was_found(
        words in proptest::collection::vec(
            prop_oneof![Just(token()), Just("\\n".to_string()), "[a-z =:\"]{0,10}"],
            0..10,
        ),
    ) {
        let d = Detector::builtin();
        let content = words.concat();
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": content}]})
            .to_string();
        if let Some((out, rules)) = redact::redact_json(d, body.as_bytes()) {
            prop_assert!(!rules.is_empty());
            let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
            prop_assert!(!v.to_string().contains(&token()));
        } else {
            prop_assert!(!body.contains(&token()), "a token was missed in {body}");
        }
    }

    #[test]
    fn echo_scrubbing_in_pieces_equals_scrubbing_whole(
        text in proptest::collection::vec(
            prop_oneof![
                Just("sk-echo-7f3a9c1e5b2d4f6a".to_string()),
                Just("sk-echo-7f3a".to_string()),
                Just("\\u0073\\u006b".to_string()),
                "[ -~]{0,12}",
            ],
            0..10,
        ).prop_map(|v| v.concat()),
        piece in 1usize..9,
    ) {
        let scrubber = std::sync::Arc::new(EchoScrubber::new(&["sk-echo-7f3a9c1e5b2d4f6a"]));
        let whole = scrubber.scrub(text.as_bytes()).into_owned();
        let mut stream = scrubber.stream();
        let mut pieces = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            pieces.extend(stream.push(chunk));
        }
        pieces.extend(stream.finish());
        prop_assert_eq!(&pieces, &whole);
        prop_assert!(!String::from_utf8_lossy(&pieces).contains("sk-echo-7f3a9c1e5b2d4f6a"));
    }
}
