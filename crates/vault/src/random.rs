//! Randomness from the operating system.

/// `N` random bytes from the OS generator. Panics only if the OS cannot provide
/// randomness, in which case no key could safely be made anyway.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the operating system provides randomness");
    b
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` uniformly random base62 characters (rejection sampling, no modulo bias):
/// log2(62) ≈ 5.95 bits each.
pub fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let buf: [u8; 64] = random_bytes();
        for b in buf {
            // 248 = 4 * 62: values at or above it would bias the result.
            if b < 248 && out.len() < len {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base62_has_the_length_and_alphabet_asked_for() {
        let s = super::random_base62(1000);
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(super::random_base62(32), super::random_base62(32));
    }
}
