//! Wall-clock time and durations as Keyward counts them: Unix seconds and
//! milliseconds, and the `30d` / `12h` / `45m` / `never` lifetimes that keys,
//! rotations and the vault take. A leaf: it depends on no other module.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The time the limiter counts in (Unix milliseconds): the system clock, or one
/// that tests move by hand.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told.
#[derive(Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Longest duration accepted anywhere (keys, rotation periods, grace windows, vault
/// age): 100 years. Longer is a typo, and past it time arithmetic in milliseconds
/// since 1970 would overflow; `never` says "no limit".
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `30d`, `12h`, `45m`, `10s` or `never`. `None` for anything else, zero, or a
/// duration over [`MAX_LIFETIME`] (checked: a huge count cannot wrap around).
pub fn parse_lifetime(s: &str) -> Option<Option<Duration>> {
    if s == "never" {
        return Some(None);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..split].parse().ok()?;
    let mult = match &s[split..] {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    let secs = n.checked_mul(mult)?;
    (n > 0 && secs <= MAX_LIFETIME.as_secs()).then(|| Some(Duration::from_secs(secs)))
}

/// Parses a `--since` value: a duration back from now (`90s`, `15m`, `1h`, `7d`),
/// an RFC 3339 time (`2026-12-01T10:00:00Z`) or Unix seconds.
pub fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(unix) = s.parse::<i64>() {
        return Ok(unix);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now - d.as_secs().min(i64::MAX as u64) as i64);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
            return Ok(d.as_secs() as i64);
        }
    }
    Err(format!(
        "`{s}` is not a time: use a duration back from now (30m, 1h, 7d), an RFC 3339 time (2026-12-01T10:00:00Z) or Unix seconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_within_range_and_nothing_wraps() {
        assert_eq!(
            parse_lifetime("30d"),
            Some(Some(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(parse_lifetime("never"), Some(None));
        assert_eq!(parse_lifetime("36500d"), Some(Some(MAX_LIFETIME)));
        for bad in [
            "0d",
            "36501d",
            "9223372036854775808s",  // spun the scheduler
            "106751991167301d",      // wrapped to a small period: rotated at once
            "213503982334602d",      // wrapped to 17 hours
            "18446744073709551616s", // past u64
            "12",
            "12w",
            "",
        ] {
            assert_eq!(parse_lifetime(bad), None, "{bad}");
        }
    }
}
