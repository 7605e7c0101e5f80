//! Finds encoded regions (base64, percent-encoding, JSON string escapes) whose decoded
//! form may hold a secret, and maps positions in the decoded bytes back to the original.

use base64::Engine as _;

/// How a region of the original text was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Base64,
    Percent,
    JsonEscape,
    /// Zero-width characters or soft hyphens that split a token for the eye of a
    /// regex but not for the service that accepts it.
    Invisible,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Percent => "percent",
            Encoding::JsonEscape => "json-escape",
            Encoding::Invisible => "invisible-characters",
        }
    }
}

/// Decoded bytes of one region and the way back to the original offsets.
pub(crate) struct Decoded {
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
    /// Original span of the whole region.
    pub region: (usize, usize),
    /// For byte-wise encodings, `map[i]` is the original offset of decoded byte `i`
    /// (with one extra entry for the end). Empty for base64, where a finding points at
    /// the whole encoded region.
    map: Vec<usize>,
}

impl Decoded {
    /// Original span for a decoded span.
    pub fn original_span(&self, start: usize, end: usize) -> (usize, usize) {
        if self.map.is_empty() {
            self.region
        } else {
            (self.map[start], self.map[end])
        }
    }
}

/// Shortest base64 run worth decoding: 24 characters hold 18 bytes, shorter than any
/// credential the rules look for in practice.
pub(crate) const MIN_BASE64_RUN: usize = 24;

static BASE64_CLASS: [u8; 256] = {
    // 1 = lower, 2 = upper, 4 = digit, 8 = other base64 symbol (+ / - _)
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_lowercase() {
            1
        } else if b.is_ascii_uppercase() {
            2
        } else if b.is_ascii_digit() {
            4
        } else if b == b'+' || b == b'/' || b == b'-' || b == b'_' {
            8
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Calls `f` with every decodable region of `hay`.
/// JSON escapes are skipped when `json_escapes` is false (text already unescaped).
/// `keyword_at(i)` says whether a rule keyword starts at `hay[i]`: a `\n` or `\t`
/// right before one may hide a token's word boundary.
pub(crate) fn for_each_region(
    hay: &[u8],
    json_escapes: bool,
    keyword_at: impl Fn(usize) -> bool,
    mut f: impl FnMut(Decoded),
) {
    base64_regions(hay, &mut f);
    percent_regions(hay, &mut f);
    if json_escapes {
        json_escape_regions(hay, &keyword_at, &mut f);
    }
    invisible_regions(hay, &mut f);
}

/// Length of the invisible character (U+200B–U+200D, U+2060, U+FEFF, U+00AD)
/// starting at `hay[i]`, or 0.
pub(crate) fn invisible_len(hay: &[u8], i: usize) -> usize {
    match hay[i..] {
        [0xE2, 0x80, 0x8B..=0x8D, ..] | [0xE2, 0x81, 0xA0, ..] | [0xEF, 0xBB, 0xBF, ..] => 3,
        [0xC2, 0xAD, ..] => 2,
        _ => 0,
    }
}

/// Decodes `hay[start..end]` byte by byte: `step(i)` says what the bytes at `i`
/// decode to (`Some((Some(b), n))`: one byte from `n`; `Some((None, n))`: nothing
/// from `n`; `None`: the byte itself), and the map records where each decoded byte
/// came from.
fn byte_mapped(
    hay: &[u8],
    (start, end): (usize, usize),
    encoding: Encoding,
    step: impl Fn(usize) -> Option<(Option<u8>, usize)>,
) -> Decoded {
    let mut bytes = Vec::with_capacity(end - start);
    let mut map = Vec::with_capacity(end - start + 1);
    let mut i = start;
    while i < end {
        let (byte, n) = step(i).unwrap_or((Some(hay[i]), 1));
        if let Some(b) = byte {
            bytes.push(b);
            map.push(i);
        }
        i += n;
    }
    map.push(end);
    Decoded {
        encoding,
        bytes,
        region: (start, end),
        map,
    }
}

/// Each line holding invisible characters, with them taken out.
fn invisible_regions(hay: &[u8], f: &mut impl FnMut(Decoded)) {
    let mut done_until = 0;
    for p in memchr::memchr3_iter(0xE2, 0xEF, 0xC2, hay) {
        if p < done_until || invisible_len(hay, p) == 0 {
            continue;
        }
        let start = memchr::memrchr(b'\n', &hay[..p]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &hay[p..]).map_or(hay.len(), |i| p + i);
        done_until = end;
        f(byte_mapped(
            hay,
            (start, end),
            Encoding::Invisible,
            |i| match invisible_len(hay, i) {
                0 => None,
                n => Some((None, n)),
            },
        ));
    }
}

fn is_b64(b: u8) -> bool {
    BASE64_CLASS[b as usize] != 0
}

/// Shortest line of wrapped base64 that is joined with the lines after it. Encoders
/// wrap at 60, 64 or 76 characters; a shorter line is not the body of a wrapped block.
const MIN_WRAPPED_LINE: usize = 40;

/// End of the base64 run starting at `from`.
fn run_end(hay: &[u8], from: usize) -> usize {
    from + hay[from..].iter().take_while(|&&b| is_b64(b)).count()
}

/// The line breaks between the lines of a wrapped block, the longer form of each
/// first: `\r\n`, `\n`, and the two-character escapes of a JSON or C string.
const LINE_BREAKS: [&[u8]; 4] = [b"\r\n", b"\n", b"\\r\\n", b"\\n"];

/// Where the next line of a wrapped block starts, when `hay[at..]` is a line break
/// (`\n`, `\r\n`, or the two-character escapes `\\n` and `\\r\\n` of a JSON or C string)
/// followed by at most 16 spaces or tabs of indentation.
fn next_wrapped_line(hay: &[u8], at: usize) -> Option<usize> {
    let rest = &hay[at..];
    let brk = LINE_BREAKS.iter().find(|sep| rest.starts_with(sep))?.len();
    let indent = rest[brk..]
        .iter()
        .take(17)
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    (indent <= 16).then_some(at + brk + indent)
}

/// The line break (and at most 16 columns of indent) that ends right before
/// `line_start`, in the forms [`next_wrapped_line`] accepts: where the break
/// begins, which is where the line before it ends.
fn break_before(hay: &[u8], line_start: usize) -> Option<usize> {
    let head = &hay[..line_start];
    let indent = head
        .iter()
        .rev()
        .take(17)
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if indent > 16 {
        return None;
    }
    let head = &head[..head.len() - indent];
    let brk = LINE_BREAKS.iter().find(|sep| head.ends_with(sep))?.len();
    Some(head.len() - brk)
}

/// Where the base64 run that ends at `end` starts; the letter of a `\n` or `\r`
/// escape right before it is not part of it (`…\nSGVs`).
fn run_start(hay: &[u8], end: usize) -> usize {
    let start = end - hay[..end].iter().rev().take_while(|&&b| is_b64(b)).count();
    if start > 0 && start < end && hay[start - 1] == b'\\' && b"nr".contains(&hay[start]) {
        start + 1
    } else {
        start
    }
}

/// Where a wrapped base64 block begins that the end of `hay` may still be part
/// of, so that text still to come could join it (see [`wrapped_block`]): `hay`
/// ends inside a line that follows a break after a run of at least
/// [`MIN_WRAPPED_LINE`] base64 characters, or right after such a run and a
/// break, or part of one (`\r`, a trailing `\`), and indent. The block is
/// followed back over every earlier line of at least that length; it may begin
/// mid-line (`key: SGVs…`). `None` when no block can still grow at the end.
///
/// A streaming redactor holds this much back, so that a block is decoded as the
/// whole text's search would decode it.
pub(crate) fn open_wrapped_block(hay: &[u8]) -> Option<usize> {
    let n = hay.len();
    let last = run_start(hay, n);
    // The end of the run that a break (whole or begun) follows.
    let line_end = if last < n {
        break_before(hay, last)?
    } else if hay.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        break_before(hay, n)?
    } else {
        // A break, whole or cut short (`\r`, `\\`, `\\r`, `\\r\\`): the longest
        // start of one that the text ends with.
        let begun = LINE_BREAKS
            .iter()
            .flat_map(|brk| (1..=brk.len()).map(move |k| &brk[..k]))
            .filter(|begun| hay.ends_with(begun))
            .map(<[u8]>::len)
            .max()?;
        n - begun
    };
    let mut start = run_start(hay, line_end);
    if line_end - start < MIN_WRAPPED_LINE {
        return None;
    }
    // Earlier lines of the block: whole lines of base64, as long as the first.
    while let Some(prev_end) = break_before(hay, start) {
        let prev_start = run_start(hay, prev_end);
        if prev_end - prev_start < MIN_WRAPPED_LINE {
            break;
        }
        start = prev_start;
    }
    Some(start)
}

/// A wrapped base64 block whose first line is `hay[start..end]`: its base64
/// characters without the line breaks, and where its last line ends. Every line but the
/// last is as long as the first (a multiple of four, at least [`MIN_WRAPPED_LINE`]),
/// the last no longer. `None` when no second line follows.
fn wrapped_block(hay: &[u8], start: usize, end: usize) -> Option<(Vec<u8>, usize)> {
    let width = end - start;
    if width < MIN_WRAPPED_LINE || !width.is_multiple_of(4) {
        return None;
    }
    let mut joined: Vec<u8> = Vec::new();
    let mut at = end;
    while let Some(next) = next_wrapped_line(hay, at) {
        let next_end = run_end(hay, next);
        let len = next_end - next;
        if len == 0 || len > width {
            break;
        }
        if joined.is_empty() {
            joined.extend_from_slice(&hay[start..end]);
        }
        joined.extend_from_slice(&hay[next..next_end]);
        at = next_end;
        if len < width {
            break;
        }
    }
    (!joined.is_empty()).then_some((joined, at))
}

fn base64_regions(hay: &[u8], f: &mut impl FnMut(Decoded)) {
    let n = hay.len();
    // `i` is the first position that may still begin a run. A run of at least
    // MIN_BASE64_RUN characters starting at or after `i` covers `i + MIN - 1`, so
    // when that byte is not base64 no such run exists before it: skip past it.
    // Ordinary code and prose rarely go 24 bytes without a space or punctuation, so
    // most bytes are never looked at.
    let mut i = 0;
    let mut unjoined_until = 0;
    while i + MIN_BASE64_RUN <= n {
        let probe = i + MIN_BASE64_RUN - 1;
        if !is_b64(hay[probe]) {
            i = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > i && is_b64(hay[start - 1]) {
            start -= 1;
        }
        // `\nSGVsbG8…` in a JSON or C string: the escape's letter is not part of the
        // encoding, and keeping it would shift every decoded byte.
        if start > 0 && hay[start - 1] == b'\\' && b"ntrbf".contains(&hay[start]) {
            start += 1;
        }
        let end = run_end(hay, probe + 1);
        if end - start < MIN_BASE64_RUN {
            i = end + 1;
            continue;
        }
        // Lines of a block that did not decode as a whole are tried one by one, and
        // never joined again: each byte is part of at most one joined block.
        if start >= unjoined_until {
            if let Some((joined, last_end)) = wrapped_block(hay, start, end) {
                if let Some(found) = decode_run(hay, &joined, start, last_end) {
                    f(found);
                    i = last_end + 1;
                    continue;
                }
                // Not one block after all (a binary blob above a line of text, say).
                unjoined_until = last_end;
            }
        }
        if let Some(found) = decode_run(hay, &hay[start..end], start, end) {
            f(found);
        }
        i = end + 1;
    }
}

/// Decodes `encoded`, the base64 characters of the region `hay[start..end]` (line
/// breaks taken out), when it mixes lower case, upper case and digits and decodes to
/// text. The region grows over up to two `=` of padding.
fn decode_run(hay: &[u8], encoded: &[u8], start: usize, end: usize) -> Option<Decoded> {
    let classes = encoded
        .iter()
        .fold(0u8, |c, &b| c | BASE64_CLASS[b as usize]);
    // Real base64 of a secret mixes lower, upper and digits; identifiers and words
    // do not.
    if classes & 7 != 7 {
        return None;
    }
    let bytes = decode_base64(encoded).filter(|b| mostly_text(b))?;
    let mut region_end = end;
    while region_end < hay.len() && region_end - end < 2 && hay[region_end] == b'=' {
        region_end += 1;
    }
    Some(Decoded {
        encoding: Encoding::Base64,
        bytes,
        region: (start, region_end),
        map: Vec::new(),
    })
}

fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let url = run.iter().any(|&b| b == b'-' || b == b'_');
    let std = run.iter().any(|&b| b == b'+' || b == b'/');
    if url && std {
        return None;
    }
    // Drop trailing characters that cannot end a valid unpadded encoding.
    let usable = match run.len() % 4 {
        1 => &run[..run.len() - 1],
        _ => run,
    };
    let engine = if url {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    engine.decode(usable).ok()
}

/// At least 95% printable ASCII or whitespace: decoded config, not random bytes.
fn mostly_text(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let printable = b
        .iter()
        .filter(|&&c| (0x20..0x7f).contains(&c) || c == b'\n' || c == b'\r' || c == b'\t')
        .count();
    printable * 20 >= b.len() * 19
}

/// Whether `b` can be part of a base64 or percent-encoded region. A region reaching
/// the end of a growing text can still grow only through such bytes.
pub(crate) fn may_extend_region(b: u8) -> bool {
    is_url_char(b)
}

fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"%._~+-:/@=&?!*'".contains(&b)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn percent_regions(hay: &[u8], f: &mut impl FnMut(Decoded)) {
    let mut done_until = 0;
    for p in memchr::memchr_iter(b'%', hay) {
        if p < done_until
            || p + 2 >= hay.len()
            || hex_val(hay[p + 1]).is_none()
            || hex_val(hay[p + 2]).is_none()
        {
            continue;
        }
        let mut start = p;
        while start > 0 && is_url_char(hay[start - 1]) {
            start -= 1;
        }
        let mut end = p;
        while end < hay.len() && is_url_char(hay[end]) {
            end += 1;
        }
        done_until = end;
        f(byte_mapped(hay, (start, end), Encoding::Percent, |i| {
            if hay[i] != b'%' || i + 2 > end || i + 2 >= hay.len() {
                return None;
            }
            let (h, l) = (hex_val(hay[i + 1])?, hex_val(hay[i + 2])?);
            Some((Some(h << 4 | l), 3))
        }));
    }
}

/// True when the escape at `hay[p]` can hide a secret from a search of the raw
/// text: `\"`, `\/` and `\u` change the bytes of a token; `\n`, `\t`, `\r`, `\b`
/// and `\f` right before a rule keyword glue their letter to the token
/// (`\nghp_…` has no word boundary before `ghp_`).
fn starts_telling_escape(hay: &[u8], p: usize, keyword_at: &impl Fn(usize) -> bool) -> bool {
    match hay[p + 1] {
        b'"' | b'/' | b'u' => true,
        b'n' | b't' | b'r' | b'b' | b'f' => {
            hay.get(p + 2).is_some_and(u8::is_ascii_alphanumeric) && keyword_at(p + 2)
        }
        _ => false,
    }
}

fn json_escape_regions(
    hay: &[u8],
    keyword_at: &impl Fn(usize) -> bool,
    f: &mut impl FnMut(Decoded),
) {
    let mut done_until = 0;
    for p in memchr::memchr_iter(b'\\', hay) {
        if p < done_until || p + 1 >= hay.len() || !starts_telling_escape(hay, p, keyword_at) {
            continue;
        }
        // Decode the whole line holding the escape.
        let start = memchr::memrchr(b'\n', &hay[..p]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &hay[p..]).map_or(hay.len(), |i| p + i);
        done_until = end;
        let (bytes, map) = unescape_json(hay, start, end);
        f(Decoded {
            encoding: Encoding::JsonEscape,
            bytes,
            region: (start, end),
            map,
        });
    }
}

fn unescape_json(hay: &[u8], start: usize, end: usize) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::with_capacity(end - start);
    let mut map = Vec::with_capacity(end - start + 1);
    let mut i = start;
    while i < end {
        if hay[i] == b'\\' && i + 1 < end {
            let simple = match hay[i + 1] {
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                b'/' => Some(b'/'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                _ => None,
            };
            if let Some(c) = simple {
                bytes.push(c);
                map.push(i);
                i += 2;
                continue;
            }
            if hay[i + 1] == b'u' && i + 6 <= end {
                let code = std::str::from_utf8(&hay[i + 2..i + 6])
                    .ok()
                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                if let Some(ch) = code.and_then(char::from_u32) {
                    let mut buf = [0u8; 4];
                    for &b in ch.encode_utf8(&mut buf).as_bytes() {
                        bytes.push(b);
                        map.push(i);
                    }
                    i += 6;
                    continue;
                }
            }
        }
        bytes.push(hay[i]);
        map.push(i);
        i += 1;
    }
    map.push(end);
    (bytes, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(s: &str) -> Vec<(Encoding, String, (usize, usize))> {
        let mut v = Vec::new();
        for_each_region(
            s.as_bytes(),
            true,
            |_| true,
            |d| {
                v.push((
                    d.encoding,
                    String::from_utf8_lossy(&d.bytes).into_owned(),
                    d.region,
                ))
            },
        );
        v
    }

    #[test]
    fn base64_region_is_found_and_mapped_to_the_whole_blob() {
        let enc = base64::engine::general_purpose::STANDARD.encode("token=Zr4vT9qLm2Xw8Kp1");
        let text = format!("data:\n  key: {enc}\n");
        let r = regions(&text);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1, "token=Zr4vT9qLm2Xw8Kp1");
        assert_eq!(&text[r[0].2 .0..r[0].2 .1], enc);
    }

    #[test]
    fn percent_and_json_map_bytes_back() {
        let text = "u=https://a:p%40ss%2Fw0rd@host/x"; // keyward:allow (test fixture)
        let mut got = None;
        for_each_region(
            text.as_bytes(),
            true,
            |_| true,
            |d| {
                if d.encoding == Encoding::Percent {
                    let s = String::from_utf8_lossy(&d.bytes).into_owned();
                    let i = s.find("p@ss/w0rd").unwrap();
                    got = Some(d.original_span(i, i + "p@ss/w0rd".len()));
                }
            },
        );
        let (a, b) = got.unwrap();
        assert_eq!(&text[a..b], "p%40ss%2Fw0rd");
        let j = regions("{\"k\": \"a\\/b\\u0041\"}");
        assert_eq!(j[0].1, "{\"k\": \"a/bA\"}");
    }

    #[test]
    fn identifiers_are_not_decoded() {
        assert!(regions("this_is_a_very_long_identifier_name_without_caps").is_empty());
    }
}
