//! Terminal output shared by the listing commands: aligned tables with a header
//! row, RFC 3339 times, and stored text escaped so that no value can forge or
//! hide a row.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

/// A stored text as a terminal may show it: control and invisible formatting
/// characters escaped.
pub fn safe(s: &str) -> Cow<'_, str> {
    keyward_gateway::keys::escape_for_terminal(s)
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-01T15:04:05Z`).
pub fn time(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An optional time, `-` when absent.
pub fn maybe_time(unix: Option<i64>) -> String {
    unix.map_or_else(|| "-".into(), time)
}

/// A duration in the largest whole unit: `3d`, `5h`, `12m`, `40s`.
pub fn human_age(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Prints `rows` under `header`, each column as wide as its widest cell (the last
/// column is not padded).
pub fn print(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// Parses a `--since` value (see [`keyward_gateway::time::parse_since`]).
pub fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    keyward_gateway::time::parse_since(s, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_rfc3339_and_unix_seconds() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("1h", now), Ok(now - 3600));
        assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400));
        assert_eq!(parse_since("1700000000", now), Ok(1_700_000_000));
        assert_eq!(parse_since("2026-12-01T10:00:00Z", now), Ok(1_796_119_200));
        let err = parse_since("yesterday-ish", now).unwrap_err();
        assert!(err.contains("30m, 1h, 7d"), "{err}");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(1_796_119_200), "2026-12-01T10:00:00Z");
        assert_eq!(maybe_time(None), "-");
    }
}
