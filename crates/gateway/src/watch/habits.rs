//! Per-key habits in time: requests per UTC hour over the last week, and the
//! hours of the week a key works. Two detectors read them:
//!
//! - **request spike**: this hour's requests against the key's usual busy hour,
//!   by robust statistics (median and median absolute deviation of its active
//!   hours), so one busy day does not move the baseline and idle nights do not
//!   pull it to zero;
//! - **unusual hour**: a request in an hour of the week (UTC) the key was never
//!   used in, once the key has a whole week of history.
//!
//! Both wait for the key's warm-up. The history is rebuilt at start from the
//! usage records, so a restart forgets nothing.

use std::collections::{BTreeMap, HashMap};

pub const HOUR_MS: i64 = 3_600_000;

/// How far back the baseline reaches: one week of hours.
pub const BASELINE_HOURS: i64 = 7 * 24;

/// A spike needs at least this many requests in the hour, whatever the baseline.
pub const MIN_SPIKE_REQUESTS: u64 = 50;

/// Active hours needed before a spike can be judged.
const MIN_ACTIVE_HOURS: usize = 8;

/// The hour of the week (0..168) of an hour index (hours since 1970, a
/// Thursday: the count starts on Thursday 00:00 UTC, which is all a set of
/// hours needs).
fn hour_of_week(hour: i64) -> usize {
    hour.rem_euclid(168) as usize
}

/// What one key's hours look like.
#[derive(Default)]
pub struct Habits {
    /// Hour index → requests in it, for the last [`BASELINE_HOURS`] and the
    /// current hour.
    hours: BTreeMap<i64, u64>,
    /// Hours of the week the key was used in, a bit each.
    active: [u64; 3],
    first_hour: Option<i64>,
    spike_alerted: Option<i64>,
}

/// What [`Habits::request`] found.
#[derive(Debug, PartialEq)]
pub enum Finding {
    /// `count` requests this hour against a threshold from the baseline.
    Spike {
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

impl Habits {
    /// Seeds one past hour from the usage records.
    pub fn seed(&mut self, hour: i64, requests: u64) {
        *self.hours.entry(hour).or_default() += requests;
        self.set_active(hour_of_week(hour));
        self.first_hour = Some(self.first_hour.map_or(hour, |f| f.min(hour)));
    }

    /// One request at `now_ms`; what it reveals once `warmed_up_ms` of history
    /// exists.
    pub fn request(&mut self, now_ms: i64, warmup_ms: i64) -> Vec<Finding> {
        let hour = now_ms.div_euclid(HOUR_MS);
        let first = *self.first_hour.get_or_insert(hour);
        while self
            .hours
            .first_key_value()
            .is_some_and(|(&h, _)| h < hour - BASELINE_HOURS)
        {
            self.hours.pop_first();
        }
        let count = {
            let c = self.hours.entry(hour).or_default();
            *c += 1;
            *c
        };
        let age_ms = now_ms - first * HOUR_MS;
        let warmed = age_ms >= warmup_ms;
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
        if warmed && self.spike_alerted != Some(hour) {
            if let Some((threshold, median, active_hours)) = self.threshold(hour) {
                if count >= threshold {
                    self.spike_alerted = Some(hour);
                    found.push(Finding::Spike {
                        count,
                        threshold,
                        median,
                        active_hours,
                    });
                }
            }
        }
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

    /// The spike threshold for `hour` from the past active hours: the larger of
    /// four times the median, the median plus eight scaled MADs, and
    /// [`MIN_SPIKE_REQUESTS`]. `None` while too few hours are known.
    fn threshold(&self, hour: i64) -> Option<(u64, u64, usize)> {
        let mut past: Vec<u64> = self
            .hours
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
            .max(MIN_SPIKE_REQUESTS as f64)
            .ceil() as u64;
        Some((threshold, median, past.len()))
    }
}

/// Habits of every key seen.
#[derive(Default)]
pub struct AllHabits(pub HashMap<String, Habits>);

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
}
