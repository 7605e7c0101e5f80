//! The credentials of one request, found in what the provider sends back in every
//! form a provider is known to echo them: as sent, with `/` escaped as `\/` (PHP's
//! JSON default), with every character `\u`-escaped, percent-encoded, in base64
//! (standard and URL-safe, at any alignment inside a longer encoded text), and as
//! the 12-character head that providers print in "incorrect key sk-ab…" errors.
//! The detector cannot know a credential that has no recognisable format (an
//! OpenAI-compatible or Azure key); these are the exact values, so nothing of them
//! reaches a client, whatever the redaction policy says.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What replaces an echoed credential.
pub const MARKER: &[u8] = b"[REDACTED]";

/// Shortest credential matched (shorter values would hit ordinary text).
const MIN_SECRET: usize = 8;

/// The forms of a set of credentials, and a matcher for all of them.
#[derive(Debug, Clone)]
pub struct EchoScrubber {
    matcher: Option<AhoCorasick>,
    /// Longest form, in bytes: a stream holds back less than this.
    longest: usize,
    forms: Vec<Vec<u8>>,
}

impl EchoScrubber {
    /// A scrubber for `secrets`; values shorter than 8 bytes are left out.
    pub fn new(secrets: &[&str]) -> EchoScrubber {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
            for f in forms_of(s.as_bytes()) {
                if f.len() >= MIN_SECRET && !forms.contains(&f) {
                    forms.push(f);
                }
            }
        }
        let matcher = (!forms.is_empty()).then(|| {
            // A contiguous NFA: quick to build, and the bodies it searches are
            // small. Reused across requests through an [`EchoCache`].
            AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .match_kind(MatchKind::LeftmostLongest)
                .build(&forms)
                .expect("literal patterns build")
        });
        EchoScrubber {
            longest: forms.iter().map(Vec::len).max().unwrap_or(0),
            matcher,
            forms,
        }
    }

    /// `bytes` with every form replaced by [`MARKER`]; unchanged bytes are borrowed.
    pub fn scrub<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Some(m) = &self.matcher else {
            return std::borrow::Cow::Borrowed(bytes);
        };
        if m.find(bytes).is_none() {
            return std::borrow::Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        m.replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
            dst.extend_from_slice(MARKER);
            true
        });
        std::borrow::Cow::Owned(out)
    }

    /// [`EchoScrubber::scrub`] for text.
    pub fn scrub_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.scrub(text.as_bytes())).into_owned()
    }

    /// A scrubber for a body that arrives in pieces.
    pub fn stream(self: &Arc<Self>) -> EchoStream {
        EchoStream {
            scrubber: self.clone(),
            held: Vec::new(),
        }
    }

    /// How many bytes at the end of `buf` could start a form: they are held back
    /// until the next piece shows whether the form completes.
    fn open_tail(&self, buf: &[u8]) -> usize {
        let most = self.longest.saturating_sub(1).min(buf.len());
        (1..=most)
            .rev()
            .find(|&k| {
                let tail = &buf[buf.len() - k..];
                self.forms
                    .iter()
                    .any(|f| f.len() > k && f.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

/// Streaming state of an [`EchoScrubber`]: what it emits never contains a form,
/// even one split across pieces, and it holds back only bytes that could start one.
#[derive(Debug)]
pub struct EchoStream {
    scrubber: Arc<EchoScrubber>,
    held: Vec<u8>,
}

impl EchoStream {
    /// Takes the next piece; returns what may be sent now.
    ///
    /// The bytes at the end that could start a form are held. Forms that start
    /// before them are complete and replaced (a form running into the held bytes
    /// moves the cut past its end); a form that starts within them waits, so that a
    /// 12-character head is not replaced while the rest of its key is still coming.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let Some(m) = &self.scrubber.matcher else {
            return piece.to_vec();
        };
        self.held.extend_from_slice(piece);
        let ready = self.held.len() - self.scrubber.open_tail(&self.held);
        let mut out = Vec::with_capacity(ready + MARKER.len());
        let mut at = 0;
        for found in m.find_iter(&self.held) {
            if found.start() >= ready {
                break;
            }
            out.extend_from_slice(&self.held[at..found.start()]);
            out.extend_from_slice(MARKER);
            at = found.end();
        }
        let cut = ready.max(at);
        out.extend_from_slice(&self.held[at..cut]);
        self.held.drain(..cut);
        out
    }

    /// The end of the body: whatever is held, scrubbed.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        self.scrubber.scrub(&rest).into_owned()
    }
}

/// Most scrubbers an [`EchoCache`] holds (each some tens of kilobytes).
pub const ECHO_CACHE_ENTRIES: usize = 512;

/// Scrubbers reused across requests, by an id of the credentials they match:
/// building the matcher was the dearest step of a small request. Bounded by
/// [`ECHO_CACHE_ENTRIES`]: when full it starts over, so a flood of distinct keys
/// costs what it cost without the cache, never more memory.
#[derive(Default)]
pub struct EchoCache {
    scrubbers: Mutex<HashMap<String, Arc<EchoScrubber>>>,
}

impl EchoCache {
    /// The scrubber for `secrets`, built on first use. `id` must identify exactly
    /// those secrets (keyed hashes of them, never the values).
    pub fn scrubber(&self, id: &str, secrets: &[&str]) -> Arc<EchoScrubber> {
        let lock = || self.scrubbers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = lock().get(id) {
            return found.clone();
        }
        let built = Arc::new(EchoScrubber::new(secrets));
        let mut map = lock();
        if map.len() >= ECHO_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(id.to_string(), built.clone());
        built
    }

    /// How many scrubbers are held.
    pub fn len(&self) -> usize {
        self.scrubbers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn forms_of(s: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![s.to_vec()];
    if s.contains(&b'/') {
        forms.push(
            s.iter()
                .flat_map(|&b| if b == b'/' { b"\\/".to_vec() } else { vec![b] })
                .collect(),
        );
    }
    for hex in [b"0123456789abcdef", b"0123456789ABCDEF"] {
        let unicode: Vec<u8> = s
            .iter()
            .flat_map(|&b| {
                [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex[(b >> 4) as usize],
                    hex[(b & 15) as usize],
                ]
            })
            .collect();
        forms.push(unicode);
        let percent: Vec<u8> = s
            .iter()
            .flat_map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    vec![b]
                } else {
                    vec![b'%', hex[(b >> 4) as usize], hex[(b & 15) as usize]]
                }
            })
            .collect();
        forms.push(percent);
    }
    for engine in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        // Inside a longer encoded text the secret starts at any of three byte
        // alignments; the characters that encode only its own bits are the same
        // whatever surrounds it.
        for offset in 0..3usize {
            let mut data = vec![0u8; offset];
            data.extend_from_slice(s);
            let enc = engine.encode(&data).into_bytes();
            let start = (8 * offset).div_ceil(6);
            let end = (8 * data.len()) / 6;
            if end > start && end - start >= 16 {
                forms.push(enc[start..end].to_vec());
            }
        }
    }
    if s.len() >= 24 {
        forms.push(s[..12].to_vec());
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Zx9/Qm2Lp7Vt4Rk8Ws1Nb6Hc3Jd0Fy5Ga";

    fn clean(s: &EchoScrubber, text: &str) -> bool {
        let out = s.scrub_str(text);
        !out.contains("Qm2Lp7Vt4Rk8") && !out.contains(&KEY[..12])
    }

    #[test]
    fn every_echoed_form_is_replaced() {
        let s = Arc::new(EchoScrubber::new(&[KEY]));
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("Bearer {KEY}"));
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("k:{KEY}!"));
        let unicode: String = KEY
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        for text in [
            format!("{{\"echo\":\"{KEY}\"}}"),
            format!("{{\"echo\":\"{}\"}}", KEY.replace('/', "\\/")),
            format!("{{\"echo\":\"{unicode}\"}}"),
            format!(
                "{{\"echo\":\"{}\"}}",
                unicode.to_uppercase().replace("\\U", "\\u")
            ),
            format!("auth={}", KEY.replace('/', "%2F")),
            format!("auth={}", KEY.replace('/', "%2f")),
            format!("seen {b64} here"),
            format!("seen {b64url} here"),
            format!("Incorrect API key provided: {}***", &KEY[..12]),
        ] {
            assert!(clean(&s, &text), "{text} -> {}", s.scrub_str(&text));
        }
        assert_eq!(s.scrub_str("nothing to see"), "nothing to see");
    }

    #[test]
    fn a_form_split_across_pieces_is_replaced_and_only_prefixes_wait() {
        let s = Arc::new(EchoScrubber::new(&[KEY]));
        let text = format!("data: {{\"echo\":\"{KEY}\"}}\n\ndata: done\n\n");
        for cut in 0..text.len() {
            let mut st = s.stream();
            let mut out = st.push(&text.as_bytes()[..cut]);
            out.extend(st.push(&text.as_bytes()[cut..]));
            out.extend(st.finish());
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out, text.replace(KEY, "[REDACTED]"), "cut at {cut}");
        }
        // Text that cannot start a form is not held back.
        let mut st = s.stream();
        assert_eq!(st.push(b"data: hello\n\n"), b"data: hello\n\n");
    }

    #[test]
    fn the_cache_reuses_a_scrubber_per_id_and_stays_bounded() {
        let cache = EchoCache::default();
        let a = cache.scrubber("key-a/cred-1", &[KEY]);
        assert!(Arc::ptr_eq(&a, &cache.scrubber("key-a/cred-1", &[KEY])));
        let other = "sk-other-credential-0123456789";
        let b = cache.scrubber("key-a/cred-2", &[other]);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.scrub(other.as_bytes()).as_ref(), MARKER);
        for i in 0..ECHO_CACHE_ENTRIES * 2 {
            cache.scrubber(&format!("flood-{i}"), &[KEY]);
            assert!(cache.len() <= ECHO_CACHE_ENTRIES);
        }
    }
}
