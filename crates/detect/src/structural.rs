//! Checks of credentials recognised by their structure rather than a provider
//! prefix: JSON Web Tokens, HTTP Basic credentials and bearer tokens.

use crate::rule::Confidence;
use crate::validate::shannon_entropy;
use base64::Engine as _;

/// What a structural check concluded about an accepted candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Structure {
    pub confidence: Confidence,
    pub reason: &'static str,
    /// Facts worth reporting (a JWT's issuer and expiry).
    pub note: Option<String>,
}

fn b64url(part: &[u8]) -> Option<Vec<u8>> {
    let trimmed = part
        .strip_suffix(b"==")
        .or_else(|| part.strip_suffix(b"="))
        .unwrap_or(part);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
}

/// Longest header, payload and signature of a JWT considered, in characters.
const JWT_MAX_PART: [usize; 3] = [1024, 8192, 1024];

/// Longest JWT considered: its three parts and two dots.
pub(crate) const JWT_MAX_LEN: usize = 1024 + 8192 + 1024 + 2;

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// True when the keyword occurrence `hay[ks..ke]` (`eyJ`) can start a token the
/// way the `jwt` rule's pattern says: at the start of the text or after a byte
/// that is not base64url, and followed by a base64url byte.
pub(crate) fn jwt_starts_at(hay: &[u8], ks: usize, ke: usize) -> bool {
    (ks == 0 || !is_b64url(hay[ks - 1])) && hay.get(ke).copied().is_some_and(is_b64url)
}

/// The encoded credential after the keyword occurrence ending at `ke` (`Basic`),
/// read the way the `http-basic-auth` pattern reads it: one to four blanks or
/// tabs, then 6 to 400 base64 bytes (`A-Z a-z 0-9 + /`) and up to two `=`,
/// followed by a byte that is none of those or by the end of the text.
pub(crate) fn basic_at(hay: &[u8], ke: usize) -> Option<(usize, usize)> {
    const MAX_RUN: usize = 400;
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let rest = &hay[ke..];
    let blanks = rest
        .iter()
        .take(5)
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if !(1..=4).contains(&blanks) {
        return None;
    }
    let start = ke + blanks;
    let run = hay[start..]
        .iter()
        .take(MAX_RUN + 1)
        .take_while(|&&b| is_b64(b))
        .count();
    if !(6..=MAX_RUN).contains(&run) {
        return None;
    }
    let pad = hay[start + run..]
        .iter()
        .take(3)
        .take_while(|&&b| b == b'=')
        .count();
    let end = start + run + pad;
    (pad <= 2).then_some((start, end))
}

/// The end of the JWT-shaped run starting at `start` (three base64url parts joined
/// by dots, each within its bound, the payload starting `eyJ`), or `None`.
pub(crate) fn jwt_end(hay: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    for (i, &max) in JWT_MAX_PART.iter().enumerate() {
        let run = hay[at..]
            .iter()
            .take(max + 1)
            .take_while(|&&b| is_b64url(b))
            .count();
        if run == 0 || run > max {
            return None;
        }
        at += run;
        if i < 2 {
            if hay.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
            if i == 0 && !hay[at..].starts_with(b"eyJ") {
                return None;
            }
        }
    }
    // A fourth part, or a base64 run going on, is some other format.
    if matches!(hay.get(at), Some(b'.' | b'=' | b'+' | b'/')) {
        return None;
    }
    Some(at)
}

/// A token of three dot-separated base64url parts whose header is a JSON object
/// with an `alg` and whose payload is a JSON object. Unsigned tokens (no third part,
/// or `alg: none` with an empty one) are sample data, not credentials.
pub(crate) fn jwt(token: &[u8], now_unix: i64) -> Option<Structure> {
    let mut parts = token.split(|&b| b == b'.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    // The signature is only checked for length: its last character may carry
    // non-canonical padding bits that strict decoders refuse.
    if parts.next().is_some() || signature.len() < 16 {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&b64url(header)?).ok()?;
    let alg = header.get("alg")?.as_str()?;
    if alg.eq_ignore_ascii_case("none") {
        return None;
    }
    let payload: serde_json::Value = serde_json::from_slice(&b64url(payload)?).ok()?;
    let claims = payload.as_object()?;

    let issuer = claims.get("iss").and_then(|v| v.as_str());
    let expiry = claims.get("exp").and_then(|v| v.as_i64());
    let expired = expiry.is_some_and(|e| e < now_unix);
    let mut facts = Vec::new();
    if let Some(iss) = issuer {
        let iss: String = iss.chars().filter(|c| !c.is_control()).take(120).collect();
        facts.push(format!("issuer {iss}"));
    }
    match expiry {
        Some(e) => facts.push(format!(
            "{} {}",
            if expired { "expired" } else { "expires" },
            iso_date(e)
        )),
        None => facts.push("no expiry".to_string()),
    }
    Some(Structure {
        confidence: if expired {
            Confidence::Medium
        } else {
            Confidence::High
        },
        reason: if expired {
            "signed JSON Web Token, expired"
        } else {
            "signed JSON Web Token"
        },
        note: Some(facts.join(", ")),
    })
}

/// `YYYY-MM-DD` of a Unix time (proleptic Gregorian, UTC).
fn iso_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Decoded `user:password` pairs that document the format rather than grant access.
const DOC_PAIRS: &[&str] = &[
    "username:password",
    "user:password",
    "user:pass",
    "login:password",
];

/// `Basic <base64>` credentials: the base64 must decode to printable ASCII
/// `user:password` with a non-empty password.
pub(crate) fn basic_auth(encoded: &[u8]) -> Option<Structure> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    if decoded.len() < 3 || !decoded.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    let colon = memchr::memchr(b':', &decoded)?;
    let password = &decoded[colon + 1..];
    if password.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    if DOC_PAIRS.contains(&text.as_str()) || text.contains('<') || text.contains("${") {
        return None;
    }
    let confidence = if password.len() >= 12 && shannon_entropy(password) >= 3.0 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    Some(Structure {
        confidence,
        reason: "HTTP Basic credentials (decoded to user:password)",
        note: None,
    })
}

/// A bearer token: long enough, several character classes, not a template.
pub(crate) fn bearer(token: &[u8]) -> Option<Structure> {
    if token.len() < 16 || shannon_entropy(token) < 3.2 {
        return None;
    }
    let digit = token.iter().any(u8::is_ascii_digit);
    let alpha = token.iter().any(u8::is_ascii_alphabetic);
    if !(digit && alpha) {
        return None;
    }
    let lower = token.to_ascii_lowercase();
    if [
        &b"xxxx"[..],
        b"your",
        b"token",
        b"example",
        b"placeholder",
        b"redacted",
    ]
    .iter()
    .any(|w| memchr::memmem::find(&lower, w).is_some())
    {
        return None;
    }
    Some(Structure {
        confidence: if token.len() >= 24 {
            Confidence::High
        } else {
            Confidence::Medium
        },
        reason: "bearer token in an authorization header",
        note: None,
    })
}

/// Passwords and users that documentation writes in URLs (`user:password@host`).
const DOC_URL_PASSWORDS: &[&str] = &[
    "password",
    "pass",
    "passwd",
    "pwd",
    "pw",
    "secret",
    "mypassword",
    "yourpassword",
    "your_password",
    "your-password",
    "changeme",
    "xxx",
    "xxxx",
    "xxxxxx",
];
const DOC_URL_USERS: &[&str] = &[
    "user", "username", "usr", "login", "name", "myuser", "youruser",
];
/// Hosts that documentation writes: `host`, `example.com`, `your.domain.com`, ….
fn is_doc_host(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    let name = h.split([':', '/']).next().unwrap_or("");
    matches!(
        name,
        "host" | "hostname" | "yourhost" | "your-host" | "server" | "domain" | "url" | "path"
    ) || name.starts_with("your")
        || name.starts_with("path.to")
        || name.starts_with("some")
        || [
            "example.com",
            "example.org",
            "example.net",
            ".example",
            "domain.com",
        ]
        .iter()
        .any(|d| name == d.trim_start_matches('.') || name.ends_with(d))
        || h.contains(":port")
}

/// The parts of `scheme://user:password@host` around a `://` found at `hay[sep]`,
/// read the way the `uri-embedded-credentials` pattern states them: a scheme of 2
/// to 32 characters starting with a letter at a word boundary, a user of up to 64
/// characters, a password of 1 to 128 characters that may carry up to two more
/// `@`-separated parts of up to 64 (greedy, as long as an `@` and a host follow),
/// then the host. Reading it here costs a few dozen byte comparisons per `://`;
/// the same pattern's capture step cost microseconds per match on dense input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UrlParts {
    pub user: (usize, usize),
    pub password: (usize, usize),
    pub host_start: usize,
}

pub(crate) fn url_at(hay: &[u8], sep: usize) -> Option<UrlParts> {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let is_scheme = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-');
    if hay.get(sep..sep + 3) != Some(b"://") {
        return None;
    }
    // The scheme: the leftmost start the pattern would take.
    let mut run = sep;
    while run > 0 && sep - run < 32 && is_scheme(hay[run - 1]) {
        run -= 1;
    }
    (run..sep.saturating_sub(1))
        .find(|&p| hay[p].is_ascii_alphabetic() && (p == 0 || !is_word(hay[p - 1])))?;
    let class = |b: u8, extra: &[u8]| !b.is_ascii_whitespace() && !extra.contains(&b);
    let span = |from: usize, max: usize, extra: &[u8]| {
        hay[from..]
            .iter()
            .take(max)
            .take_while(|&&b| class(b, extra))
            .count()
    };
    let user_start = sep + 3;
    let user_end = user_start + span(user_start, 64, b":@/'\"`<>");
    if hay.get(user_end) != Some(&b':') {
        return None;
    }
    let pw_start = user_end + 1;
    let first = span(pw_start, 128, b"@/'\"`<>#?\\");
    if first == 0 || first == 128 && hay.get(pw_start + 128) != Some(&b'@') {
        return None;
    }
    // Ends of the password with 0, 1 or 2 more `@` parts; the longest one followed
    // by `@` and a host character wins.
    let mut ends = [pw_start + first; 3];
    let mut count = 1;
    while count < 3 {
        let at = ends[count - 1];
        if hay.get(at) != Some(&b'@') {
            break;
        }
        let part = span(at + 1, 64, b"@/'\"`<>#?\\:,;");
        if part == 0 {
            break;
        }
        ends[count] = at + 1 + part;
        count += 1;
    }
    let host_char = |b: u8| b.is_ascii_alphanumeric() || b"[_%.-".contains(&b);
    let end =
        ends[..count].iter().copied().rev().find(|&e| {
            hay.get(e) == Some(&b'@') && hay.get(e + 1).is_some_and(|&b| host_char(b))
        })?;
    Some(UrlParts {
        user: (user_start, user_end),
        password: (pw_start, end),
        host_start: end + 1,
    })
}

/// The host (with port, or a bracketed IPv6 address) starting at `hay[at]`: at
/// most 254 bytes of the characters a URL authority's host part can hold.
pub(crate) fn host_at(hay: &[u8], at: usize) -> &[u8] {
    let rest = &hay[at.min(hay.len())..];
    let len = rest
        .iter()
        .take(254)
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"[]_%.:-".contains(&b))
        .count();
    &rest[..len]
}

/// `scheme://user:password@host`: the password is a literal (not a template,
/// variable or mask), and the URL is not a documented placeholder (`user:password`,
/// a host like `host:port` or `example.com`). Passwords made of letters only are
/// findings at low confidence: `postgres:postgres@db` is a real, weak credential.
///
/// Cheap byte checks come first and nothing is allocated before them: text made
/// of nothing but short `scheme://u:p@` candidates costs a few comparisons each.
pub(crate) fn url_credentials(user: &[u8], password: &[u8], host: &[u8]) -> Option<Structure> {
    if password.len() < 3
        || matches!(
            password[0],
            b'$' | b'%' | b'{' | b'*' | b'[' | b'(' | b'<' | b':'
        )
    {
        return None;
    }
    let distinct = {
        let mut seen = [false; 256];
        password
            .iter()
            .filter(|&&b| !std::mem::replace(&mut seen[b as usize], true))
            .count()
    };
    let has_mark = |mark: &[u8]| {
        password
            .windows(mark.len())
            .any(|w| w.eq_ignore_ascii_case(mark))
    };
    let one_of =
        |list: &[&str], v: &[u8]| list.iter().any(|d| d.as_bytes().eq_ignore_ascii_case(v));
    if distinct <= 1
        || [&b"${"[..], b"{{", b"<", b"%s", b"***", b"..."]
            .iter()
            .any(|m| has_mark(m))
        || one_of(DOC_URL_PASSWORDS, password)
        || is_doc_host(&String::from_utf8_lossy(host))
        || crate::assign::is_stand_in(password)
        || crate::validate::is_placeholder(password)
    {
        return None;
    }
    let letters_only = password.iter().all(u8::is_ascii_alphabetic);
    let confidence = if password.len() >= 12 && shannon_entropy(password) >= 3.0 && !letters_only {
        Confidence::High
    } else if letters_only || one_of(DOC_URL_USERS, user) {
        Confidence::Low
    } else {
        Confidence::Medium
    };
    Some(Structure {
        confidence,
        reason: "password embedded in a URL",
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(1_600_000_000), "2020-09-13");
    }

    #[test]
    fn unsigned_jwts_are_not_credentials() {
        let unsigned = b"eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UifQ.";
        assert!(jwt(unsigned, 0).is_none());
    }

    #[test]
    fn basic_auth_decodes_user_and_password() {
        assert!(basic_auth(b"YWRtaW46czNjcjN0LXBhc3M=").is_some()); // admin:s3cr3t-pass
        assert!(basic_auth(b"dXNlcm5hbWU6cGFzc3dvcmQ=").is_none()); // username:password
        assert!(basic_auth(b"aGVsbG8gd29ybGQ=").is_none()); // no colon
    }
}
