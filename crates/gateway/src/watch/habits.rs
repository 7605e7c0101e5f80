//! Per-key habits in time: requests, tokens and spend per UTC hour over the
//! last week, and the hours of the week a key works. The detectors that read
//! them:
//!
//! - **spikes** in requests, tokens or spend: this hour against the key's usual
//!   busy hour, by robust statistics (median and median absolute deviation of
//!   its active hours), so one busy day does not move the baseline and idle
//!   nights do not pull it to zero;
//! - **unusual hour**: a request in an hour of the week (UTC) the key was never
//!   used in, once the key has a whole week of history.
//!
//! All wait for the key's warm-up. The history is rebuilt at start from the
//! usage records, so a restart forgets nothing.

use std::collections::BTreeMap;

pub const HOUR_MS: i64 = 3_600_000;

/// How far back the baseline reaches: one week of hours.
pub const BASELINE_HOURS: i64 = 7 * 24;

/// A spike needs at least this much in the hour, whatever the baseline.
pub const MIN_SPIKE_REQUESTS: u64 = 50;
pub const MIN_SPIKE_TOKENS: u64 = 100_000;
/// One US dollar, in pico-dollars.
pub const MIN_SPIKE_SPEND_PICO: u64 = 1_000_000_000_000;

/// Active hours needed before a spike can be judged.
const MIN_ACTIVE_HOURS: usize = 8;

/// The hour of the week (0..168) of an hour index (hours since 1970, a
/// Thursday: the count starts on Thursday 00:00 UTC, which is all a set of
/// hours needs).
fn hour_of_week(hour: i64) -> usize {
    hour.rem_euclid(168) as usize
}

/// What is counted per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    Tokens,
    /// Pico-dollars.
    Spend,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
            Metric::Spend => "spend",
        }
    }

    fn floor(self) -> u64 {
        match self {
            Metric::Requests => MIN_SPIKE_REQUESTS,
            Metric::Tokens => MIN_SPIKE_TOKENS,
            Metric::Spend => MIN_SPIKE_SPEND_PICO,
        }
    }
}

/// One quantity per hour for the last [`BASELINE_HOURS`] and the current hour.
#[derive(Default)]
struct Series {
    by_hour: BTreeMap<i64, u64>,
    alerted: Option<i64>,
}

impl Series {
    /// Adds `n` to `hour` (dropping hours past the baseline); the hour's total.
    fn add(&mut self, hour: i64, n: u64) -> u64 {
        while self
            .by_hour
            .first_key_value()
            .is_some_and(|(&h, _)| h < hour - BASELINE_HOURS)
        {
            self.by_hour.pop_first();
        }
        let c = self.by_hour.entry(hour).or_default();
        *c = c.saturating_add(n);
        *c
    }

    /// A spike of `metric` when `value` (this hour's total) reaches the
    /// threshold, once an hour.
    fn spike(&mut self, metric: Metric, hour: i64, value: u64) -> Option<Finding> {
        if self.alerted == Some(hour) {
            return None;
        }
        let (threshold, median, active_hours) = self.threshold(hour, metric.floor())?;
        (value >= threshold).then(|| {
            self.alerted = Some(hour);
            Finding::Spike {
                metric,
                count: value,
                threshold,
                median,
                active_hours,
            }
        })
    }

    /// The larger of four times the median active hour, the median plus eight
    /// scaled MADs, and `floor`. `None` while too few hours are known.
    fn threshold(&self, hour: i64, floor: u64) -> Option<(u64, u64, usize)> {
        let mut past: Vec<u64> = self
            .by_hour
            .range(..hour)
            .map(|(_, &c)| c)
            .filter(|&c| c > 0)
            .collect();
        if past.len() < MIN_ACTIVE_HOURS {
            return None;
        }
        past.sort_unstable();
        let median = past[past.len() / 2];
        let mut dev: Vec<u64> = past.iter().map(|&c| c.abs_diff(median)).collect();
        dev.sort_unstable();
        let mad = dev[dev.len() / 2] as f64 * 1.4826;
        let robust = median as f64 + 8.0 * mad;
        let threshold = (median.saturating_mul(4) as f64)
            .max(robust)
            .max(floor as f64)
            .ceil() as u64;
        Some((threshold, median, past.len()))
    }
}

/// What one key's hours look like.
#[derive(Default)]
pub struct Habits {
    requests: Series,
    tokens: Series,
    spend: Series,
    /// Hours of the week the key was used in, a bit each.
    active: [u64; 3],
    first_hour: Option<i64>,
}

/// What the detectors found.
#[derive(Debug, PartialEq)]
pub enum Finding {
    /// This hour's `count` of `metric` against a threshold from the baseline.
    Spike {
        metric: Metric,
        count: u64,
        threshold: u64,
        median: u64,
        active_hours: usize,
    },
    /// A request in an hour of the week the key never worked in.
    UnusualHour {
        hour_of_week: usize,
        active_hours_of_week: usize,
    },
}

/// One past hour of a key, from the usage records.
#[derive(Debug, Clone, Copy, Default)]
pub struct PastHour {
    pub hour: i64,
    pub requests: u64,
    pub tokens: u64,
    pub spend_pico: u64,
}

impl Habits {
    /// Seeds one past hour from the usage records.
    pub fn seed(&mut self, h: PastHour) {
        self.requests.add(h.hour, h.requests);
        self.tokens.add(h.hour, h.tokens);
        self.spend.add(h.hour, h.spend_pico);
        self.set_active(hour_of_week(h.hour));
        self.first_hour = Some(self.first_hour.map_or(h.hour, |f| f.min(h.hour)));
    }

    fn warmed(&mut self, hour: i64, now_ms: i64, warmup_ms: i64) -> (bool, i64) {
        let first = *self.first_hour.get_or_insert(hour);
        let age_ms = now_ms - first * HOUR_MS;
        (age_ms >= warmup_ms, age_ms)
    }

    /// One request at `now_ms`; what it reveals once `warmup_ms` of history
    /// exists.
    pub fn request(&mut self, now_ms: i64, warmup_ms: i64) -> Vec<Finding> {
        let hour = now_ms.div_euclid(HOUR_MS);
        let (warmed, age_ms) = self.warmed(hour, now_ms, warmup_ms);
        let count = self.requests.add(hour, 1);
        let mut found = Vec::new();
        let how = hour_of_week(hour);
        if !self.is_active(how) {
            self.set_active(how);
            // Which hours of the week a key works takes a week to learn.
            if warmed && age_ms >= BASELINE_HOURS * HOUR_MS {
                found.push(Finding::UnusualHour {
                    hour_of_week: how,
                    active_hours_of_week: self.active_hours() - 1,
                });
            }
        }
        if warmed {
            found.extend(self.requests.spike(Metric::Requests, hour, count));
        }
        found
    }

    /// The usage of one finished request (`tokens` of every kind, its cost in
    /// pico-dollars) at `now_ms`.
    pub fn usage(
        &mut self,
        now_ms: i64,
        tokens: u64,
        cost_pico: u64,
        warmup_ms: i64,
    ) -> Vec<Finding> {
        let hour = now_ms.div_euclid(HOUR_MS);
        let (warmed, _) = self.warmed(hour, now_ms, warmup_ms);
        let t = self.tokens.add(hour, tokens);
        let c = self.spend.add(hour, cost_pico);
        if !warmed {
            return Vec::new();
        }
        let mut found = Vec::new();
        found.extend(self.tokens.spike(Metric::Tokens, hour, t));
        found.extend(self.spend.spike(Metric::Spend, hour, c));
        found
    }

    fn is_active(&self, how: usize) -> bool {
        self.active[how / 64] & (1 << (how % 64)) != 0
    }

    fn set_active(&mut self, how: usize) {
        self.active[how / 64] |= 1 << (how % 64);
    }

    fn active_hours(&self) -> usize {
        self.active.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * HOUR_MS;
    /// Monday 2026-11-02 00:00 UTC.
    const MONDAY: i64 = 1_793_577_600_000;

    /// A working week: 30 requests an hour, 09:00–17:00 UTC, Monday to Friday.
    fn working_week(h: &mut Habits, start: i64, warmup: i64) -> Vec<Finding> {
        let mut found = Vec::new();
        for day in 0..5 {
            for hour in 9..17 {
                for i in 0..30 {
                    let at = start + day * DAY + hour * HOUR_MS + i * 60_000;
                    found.extend(h.request(at, warmup));
                }
            }
        }
        found
    }

    #[test]
    fn a_working_week_is_quiet_and_a_3am_burst_alerts_once_each() {
        assert_eq!(
            hour_of_week(MONDAY / HOUR_MS),
            4 * 24,
            "Monday is 4 days after a Thursday"
        );
        let mut h = Habits::default();
        // The first week is the warm-up.
        assert!(working_week(&mut h, MONDAY, 7 * DAY).is_empty());
        // A second, benign week: same hours, same volume.
        assert!(working_week(&mut h, MONDAY + 7 * DAY, 7 * DAY).is_empty());
        // The theft: Tuesday 03:00, 500 requests in ten minutes.
        let at = MONDAY + 15 * DAY + 3 * HOUR_MS;
        let found: Vec<Finding> = (0..500)
            .flat_map(|i| h.request(at + i * 1200, 7 * DAY))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(matches!(
            found[0],
            Finding::UnusualHour {
                active_hours_of_week: 40,
                ..
            }
        ));
        match &found[1] {
            Finding::Spike {
                count,
                threshold,
                median,
                ..
            } => {
                assert_eq!((*count, *threshold, *median), (120, 120, 30));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_alerts_during_the_warm_up_and_a_busy_hour_within_habits_is_quiet() {
        let mut h = Habits::default();
        // A new key hammered on its first day: learned, not alerted.
        for i in 0..1000 {
            assert!(h.request(MONDAY + 3 * HOUR_MS + i * 100, DAY).is_empty());
        }
        let mut h = Habits::default();
        working_week(&mut h, MONDAY, 7 * DAY);
        // Twice the usual hour is busy, not a theft.
        let at = MONDAY + 7 * DAY + 10 * HOUR_MS;
        assert!((0..60).all(|i| h.request(at + i * 1000, 7 * DAY).is_empty()));
    }

    #[test]
    fn a_burst_of_tokens_or_spend_alerts_even_at_the_usual_request_rate() {
        let mut h = Habits::default();
        // Ten requests of 1,000 tokens and $0.01 an hour, every hour of a week.
        for hour in 0..BASELINE_HOURS {
            h.seed(PastHour {
                hour: MONDAY / HOUR_MS + hour,
                requests: 10,
                tokens: 10_000,
                spend_pico: 10_000_000_000,
            });
        }
        let at = MONDAY + BASELINE_HOURS * HOUR_MS;
        // The same ten requests, each of 100,000 tokens costing $0.50.
        let found: Vec<Finding> = (0..10)
            .flat_map(|i| {
                let mut f = h.request(at + i, 0);
                f.extend(h.usage(at + i, 100_000, 500_000_000_000, 0));
                f
            })
            .collect();
        let metrics: Vec<Metric> = found
            .iter()
            .map(|f| match f {
                Finding::Spike { metric, .. } => *metric,
                other => panic!("{other:?}"),
            })
            .collect();
        // Tokens pass 4 × 10,000 and the 100,000 floor at the first request;
        // spend passes its $1 floor at the second.
        assert_eq!(metrics, [Metric::Tokens, Metric::Spend]);
    }
}
