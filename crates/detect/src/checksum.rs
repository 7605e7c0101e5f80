//! Offline checksums carried inside token formats.
//!
//! GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) and npm (`npm_`) tokens end in six
//! base62 characters that encode the CRC32 of the 30 random characters before them.
//! Keyward's own client keys use the same construction over their whole body, so any
//! scanner can tell a real key from a look-alike without a network call.

/// Base62 alphabet used by GitHub-style token checksums: digits, upper, lower.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes `n` as exactly six base62 characters, left-padded with `0`.
pub fn base62_crc(n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    let mut n = n as u64;
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// CRC32 of `data`, base62-encoded to six characters.
pub fn crc32_base62(data: &[u8]) -> [u8; 6] {
    base62_crc(crc32fast::hash(data))
}

/// The part of `token` after its last `_` (the whole token when it has none): the
/// random body and checksum of a prefixed token format.
fn after_prefix(token: &[u8]) -> &[u8] {
    match token.iter().rposition(|&b| b == b'_') {
        Some(i) => &token[i + 1..],
        None => token,
    }
}

/// True when `token` ends in a 36-character body (after the last `_`) whose final six
/// characters are the base62 CRC32 of the first thirty. Used for GitHub and npm tokens.
pub fn github_style_valid(token: &[u8]) -> bool {
    let body = after_prefix(token);
    if body.len() != 36 || !body.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    crc32_base62(&body[..30]) == body[30..]
}

/// Length of the random part of a Keyward client key.
pub const KEYWARD_RANDOM_LEN: usize = 32;

/// Checks a Keyward client key of the form `kw_<env>_<32 base62><6 base62 checksum>`,
/// where the checksum is the CRC32 of everything before it (prefix and environment
/// included, so a key cannot be moved to another environment by editing its prefix).
/// Returns the environment name when the key is well formed and its checksum holds.
pub fn keyward_key_env(token: &[u8]) -> Option<&str> {
    let rest = token.strip_prefix(b"kw_")?;
    let sep = rest.iter().position(|&b| b == b'_')?;
    let env = &rest[..sep];
    let body = &rest[sep + 1..];
    if env.is_empty()
        || env.len() > 16
        || !env
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        || body.len() != KEYWARD_RANDOM_LEN + 6
        || !body.iter().all(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    let signed = token.len() - 6;
    if crc32_base62(&token[..signed]) != token[signed..] {
        return None;
    }
    std::str::from_utf8(env).ok()
}

/// Appends the checksum to `unsigned` (`kw_<env>_<random>`) to form a complete key.
pub fn keyward_key_seal(unsigned: &str) -> String {
    let ck = crc32_base62(unsigned.as_bytes());
    let mut s = String::with_capacity(unsigned.len() + 6);
    s.push_str(unsigned);
    s.push_str(std::str::from_utf8(&ck).expect("base62 is ASCII"));
    s
}

/// A GitHub-style token: `prefix` (e.g. `ghp_`) and a 30-character alphanumeric
/// `body`, followed by the body's CRC32 in base62 — the shape
/// [`github_style_valid`] accepts. For building test tokens at run time.
pub fn github_style_seal(prefix: &str, body: &str) -> String {
    let ck = crc32_base62(body.as_bytes());
    format!(
        "{prefix}{body}{}",
        std::str::from_utf8(&ck).expect("base62 is ASCII")
    )
}

/// True for a Cloudflare scannable credential: a prefix ending in `_`, then 40 ASCII
/// alphanumerics and the CRC32 of those 40 as eight lower-case hex digits (the format
/// Cloudflare adopted in 2026 for global keys `cfk_`, user tokens `cfut_` and account
/// tokens `cfat_`).
pub fn cloudflare_valid(token: &[u8]) -> bool {
    let body = after_prefix(token);
    if body.len() != 48 || !body[..40].iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut hex = [0u8; 8];
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let crc = crc32fast::hash(&body[..40]);
    for (i, slot) in hex.iter_mut().enumerate() {
        *slot = DIGITS[((crc >> (28 - 4 * i)) & 0xf) as usize];
    }
    hex == body[40..]
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), as NATS nkeys use it.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Decodes unpadded RFC 4648 base32 (`A`–`Z`, `2`–`7`); `None` on any other byte.
fn base32_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// True for a NATS nkey seed: 58 base32 characters that decode to a two-byte seed
/// prefix (`S` and the key type), 32 bytes of seed and a little-endian CRC-16/XMODEM
/// of everything before it.
pub fn nats_seed_valid(token: &[u8]) -> bool {
    if token.len() != 58 {
        return false;
    }
    let Some(raw) = base32_decode(token) else {
        return false;
    };
    if raw.len() != 36 || raw[0] >> 3 != 18 {
        return false;
    }
    let (body, crc) = raw.split_at(34);
    crc16_xmodem(body) == u16::from_le_bytes([crc[0], crc[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_github_style_tokens_validate() {
        let t = github_style_seal("ghp_", "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa");
        assert!(t.starts_with("ghp_") && t.len() == 40);
        assert!(github_style_valid(t.as_bytes()));
    }

    #[test]
    fn base62_pads_and_orders_digits_upper_lower() {
        assert_eq!(&base62_crc(0), b"000000");
        assert_eq!(&base62_crc(61), b"00000z");
        assert_eq!(&base62_crc(62), b"000010");
        assert_eq!(&base62_crc(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn github_checksum_round_trip_and_tamper() {
        let body = "abcdefghijklmnopqrstuvwxyzABCD";
        let tok = format!(
            "ghp_{body}{}",
            std::str::from_utf8(&crc32_base62(body.as_bytes())).unwrap()
        );
        assert!(github_style_valid(tok.as_bytes()));
        let mut bad = tok.into_bytes();
        bad[5] = b'X';
        assert!(!github_style_valid(&bad));
    }

    #[test]
    fn cloudflare_checksum_is_crc32_hex_of_the_body() {
        let body = "Qm7Tz2Lw9Xc4Vb8Nr1Kd6Hs3Jf0Pa5Ye2Ug7Ti4O";
        let good = format!("cfut_{body}{:08x}", crc32fast::hash(body.as_bytes()));
        assert!(cloudflare_valid(good.as_bytes()));
        let upper = format!("{}{}", &good[..45], good[45..].to_uppercase());
        assert_ne!(upper, good, "the checksum of this body has hex letters");
        assert!(
            !cloudflare_valid(upper.as_bytes()),
            "checksum digits are lower case"
        );
        let mut bad = good.clone().into_bytes();
        bad[7] ^= 0x20;
        assert!(!cloudflare_valid(&bad));
        assert!(!cloudflare_valid(&good.as_bytes()[..good.len() - 1]));
    }

    #[test]
    fn keyward_key_checksum_binds_environment() {
        let key = keyward_key_seal("kw_prod_0123456789abcdefghijABCDEFGHIJxy");
        assert_eq!(keyward_key_env(key.as_bytes()), Some("prod"));
        let moved = key.replacen("kw_prod_", "kw_devv_", 1);
        assert_eq!(keyward_key_env(moved.as_bytes()), None);
        assert_eq!(keyward_key_env(b"kw_prod_short"), None);
    }
}
