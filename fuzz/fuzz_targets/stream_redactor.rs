//! Fuzz target: the streaming redactor against whole-text redaction.
//!
//! Input layout: the first byte is the number of cut points `k`, the next `k` bytes
//! are chunk lengths, the rest is the text (lossily UTF-8). Streaming the text in
//! those chunks must give exactly the whole-text redaction, and no secret the
//! whole-text search finds may still be detectable in the output.
#![no_main]

use keyward_detect::{Detector, StreamRedactor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = (k as usize % 32).min(rest.len());
    let (lens, text) = rest.split_at(k);
    let text = String::from_utf8_lossy(text);
    let d = Detector::builtin();
    let mut r = StreamRedactor::new(d);
    let mut out = String::new();
    let mut pos = 0;
    for &l in lens {
        let mut end = (pos + l as usize).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        r.push_into(&text[pos..end], &mut out);
        pos = end;
    }
    r.push_into(&text[pos..], &mut out);
    out.push_str(&r.finish());
    assert_eq!(out, d.redact_unescaped(&text));
    // No secret the search reported survives detectably. A secret whose same
    // characters also stand where the search did not report them (inside another
    // match's context, or without the boundary a rule needs) may remain there, as
    // in whole-text redaction; those are skipped.
    let found = d.find_unescaped(text.as_bytes());
    let reported_everywhere = |secret: &[u8]| {
        let occurrences = text
            .as_bytes()
            .windows(secret.len())
            .filter(|w| *w == secret)
            .count();
        let reported = found.iter().filter(|f| f.secret == secret).count();
        occurrences <= reported
    };
    for f in d.find_unescaped(out.as_bytes()) {
        let was_found = found.iter().any(|g| g.secret == f.secret);
        assert!(
            !(was_found && reported_everywhere(&f.secret)),
            "a redacted secret is still detectable"
        );
    }
});
