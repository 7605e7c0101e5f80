//! Fuzz target: what the gateway reads from a request before it trusts it.
//!
//! Input layout: the first byte picks the method, then a path, header lines and a
//! body separated by the first two `\n\n`-free blocks: `path \n header lines… \n\n
//! body`. Classification must not panic on any of it; the audit form of the path
//! must hold no secret found in it; a body's redaction must keep valid JSON valid
//! and hold none of the secrets found in it; the echo scrubber must give the same
//! output whole and in pieces.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use keyward_detect::Detector;
use keyward_gateway::{api, audit, echo::EchoScrubber, redact};
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = &METHODS[m as usize % METHODS.len()];
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let path = lines.next().unwrap_or("/");
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim())) {
            headers.append(k, v);
        }
    }
    let _ = api::classify(method, path, &headers);
    let _ = api::guess_family(path, &headers);

    let d = Detector::builtin();
    let target = audit::safe_target(path);
    let cut = &path[..path.floor_char_boundary(audit::MAX_TARGET)];
    for f in d.find(cut.as_bytes()) {
        assert!(!target.as_bytes().windows(f.secret.len()).any(|w| w == f.secret), "{target}");
    }

    let found = d.find(body.as_bytes());
    if let Some((out, _)) = redact::redact_json(d, body.as_bytes()) {
        if serde_json::from_str::<serde_json::Value>(body).is_ok() {
            serde_json::from_slice::<serde_json::Value>(&out).expect("still JSON");
        }
        for f in found.iter().filter(|f| f.encoding.is_none() && f.secret.len() >= 8) {
            assert!(!out.windows(f.secret.len()).any(|w| w == f.secret));
        }
    }

    let secret = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("sk-fuzz-0123456789abcdef");
    let scrubber = EchoScrubber::new(&[secret]);
    let whole = scrubber.scrub(body.as_bytes()).into_owned();
    let mut stream = scrubber.stream();
    let mut pieces = Vec::new();
    for chunk in body.as_bytes().chunks(1 + m as usize % 7) {
        pieces.extend(stream.push(chunk));
    }
    pieces.extend(stream.finish());
    assert_eq!(pieces, whole);
});
