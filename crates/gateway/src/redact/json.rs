//! Secrets in whole JSON bodies (requests, non-streamed responses).

use keyward_detect::Detector;

/// Redacts every secret in a JSON document. Returns `None` when there is none,
/// else the redacted document (still valid JSON) and the rule id of each secret.
///
/// The raw text is searched first, so that rules needing context across JSON
/// syntax (`"api_key": "…"`) and secrets hidden in JSON escapes are found. Markers
/// contain no quote or backslash, so replacing a secret inside a string keeps the
/// document valid; where a replacement would break it (a span crossing a string's
/// end or starting inside an escape), every string value is redacted on its own
/// instead.
pub fn redact_json(
    detector: &'static Detector,
    body: &[u8],
) -> Option<(Vec<u8>, Vec<&'static str>)> {
    let findings = detector.find(body);
    if findings.is_empty() {
        return None;
    }
    let rules = |fs: &[keyward_detect::Finding]| -> Vec<&'static str> {
        fs.iter().map(|f| detector.rule(f).id()).collect()
    };
    if let Ok(text) = std::str::from_utf8(body) {
        let out = detector.redact(text);
        if serde_json::from_str::<serde::de::IgnoredAny>(&out).is_ok() {
            return Some((out.into_owned().into_bytes(), rules(&findings)));
        }
    }
    let mut hits = Vec::new();
    let redacted = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) => {
            redact_strings(detector, &mut v, &mut hits);
            serde_json::to_vec(&v).expect("a JSON value serialises")
        }
        // Not JSON after all: redact it as text.
        Err(_) => detector
            .redact(&String::from_utf8_lossy(body))
            .into_owned()
            .into_bytes(),
    };
    if hits.is_empty() {
        hits = rules(&findings);
    }
    Some((redacted, hits))
}

/// Redacts every string (and object key) inside `v` in place.
pub(crate) fn redact_strings(
    detector: &'static Detector,
    v: &mut serde_json::Value,
    hits: &mut Vec<&'static str>,
) {
    use serde_json::Value;
    let one = |s: &str, hits: &mut Vec<&'static str>| -> Option<String> {
        let fs = detector.find_unescaped(s.as_bytes());
        if fs.is_empty() {
            return None;
        }
        hits.extend(fs.iter().map(|f| detector.rule(f).id()));
        Some(detector.redact_unescaped(s).into_owned())
    };
    match v {
        Value::String(s) => {
            if let Some(r) = one(s, hits) {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_strings(detector, x, hits)),
        Value::Object(o) => {
            let entries = std::mem::take(o);
            for (k, mut x) in entries {
                redact_strings(detector, &mut x, hits);
                let k = one(&k, hits).unwrap_or(k);
                o.insert(k, x);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_detect::checksum;

    fn gh() -> String {
        let seed = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
        checksum::github_style_seal("ghp_", seed)
    }

    #[test]
    fn secrets_in_strings_are_replaced_and_the_document_stays_valid() {
        let d = Detector::builtin();
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": format!("my token is {} ok", gh())}],
        })
        .to_string();
        let (out, hits) = redact_json(d, body.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["messages"][0]["content"],
            "my token is [REDACTED:github-classic-pat] ok"
        );
        assert_eq!(hits, vec!["github-classic-pat"]);
        assert!(redact_json(d, br#"{"model":"m","messages":[]}"#).is_none());
    }

    #[test]
    fn a_secret_written_with_json_escapes_is_found_and_the_result_parses() {
        let d = Detector::builtin();
        let t = gh();
        // Every character of the token escaped: only decoding finds it.
        let escaped: String = t.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        let body = format!(r#"{{"model":"m","input":"x {escaped} y"}}"#);
        let (out, hits) = redact_json(d, body.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let s = v["input"].as_str().unwrap();
        assert!(!s.contains(&t) && s.contains("[REDACTED:"), "{s}");
        assert!(!hits.is_empty());
    }
}
