//! How the console writes times, ages, amounts and limits for people.

use crate::limits::Limits;

/// A Unix time (seconds) as `2026-12-02 06:10 UTC`.
pub fn time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-12-02T06:10:00Z
    format!("{} {} UTC", &s[..10], &s[11..16])
}

/// A Unix time in milliseconds, likewise.
pub fn time_ms(ms: i64) -> String {
    time(ms.div_euclid(1000))
}

/// A span of seconds, roughly: `3d`, `5h`, `12m`, `40s`.
pub fn span(secs: i64) -> String {
    let s = secs.abs();
    if s >= 2 * 86_400 {
        format!("{}d", s / 86_400)
    } else if s >= 2 * 3600 {
        format!("{}h", s / 3600)
    } else if s >= 120 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// How long ago a Unix time was (`5m ago`), or `in 3d` for one to come.
pub fn relative(unix: i64, now: i64) -> String {
    if unix <= now {
        format!("{} ago", span(now - unix))
    } else {
        format!("in {}", span(unix - now))
    }
}

/// Pico-dollars as dollars with cents, or more digits for small amounts
/// (`$12.34`, `$0.0042`).
pub fn money(pico: i64) -> String {
    let dollars = pico as f64 / 1e12;
    if pico == 0 {
        "$0.00".into()
    } else if dollars.abs() >= 1.0 {
        format!("${dollars:.2}")
    } else if dollars.abs() >= 0.01 {
        format!("${dollars:.4}")
    } else {
        format!("${dollars:.6}")
    }
}

/// A count with thousands separators (`12,345`).
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A key's limits in one line (`60 rpm · 4 at once · $5.00/day`), or `none`.
pub fn limits(l: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(v) = l.rpm {
        parts.push(format!("{} rpm", count(v as i64)));
    }
    if let Some(v) = l.tpm {
        parts.push(format!("{} tpm", count(v as i64)));
    }
    if let Some(v) = l.concurrency {
        parts.push(format!("{v} at once"));
    }
    if let Some(v) = l.daily_budget {
        parts.push(format!("{}/day", money(v)));
    }
    if let Some(v) = l.monthly_budget {
        parts.push(format!("{}/month", money(v)));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" · ")
    }
}

/// A query-string value, percent-encoded.
pub fn query_value(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// A URL path segment, percent-encoded (a space is `%20` here, not `+`:
/// the form encoding writes a literal `+` as `%2B`, so any `+` it leaves is a space).
pub fn path_segment(v: &str) -> String {
    query_value(v).replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_counts_read_well() {
        assert_eq!(money(12_345_000_000_000), "$12.35");
        assert_eq!(money(42_000_000_000), "$0.0420");
        assert_eq!(money(4_200_000), "$0.000004");
        assert_eq!(money(0), "$0.00");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(999), "999");
        assert_eq!(time(1_764_655_800), "2025-12-02 06:10 UTC");
        assert_eq!(relative(100, 400), "5m ago");
        assert_eq!(relative(400 + 3 * 86_400, 400), "in 3d");
        assert_eq!(path_segment("a b+c/d?"), "a%20b%2Bc%2Fd%3F");
    }
}
