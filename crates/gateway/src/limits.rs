//! Rate and concurrency limits: requests per minute, tokens per minute and
//! requests in flight, per key, per owner and per environment.
//!
//! The [`Limiter`] port admits a request under every scope that applies at once
//! (all counters take it, or none does) and is told the tokens each request used.
//! [`LocalLimiter`] is the in-process backend: exact within one server;
//! `cluster::RedisLimiter` keeps the same counters in Redis, exact across
//! replicas. A backend that cannot decide (Redis unreachable) says so with
//! [`LimitError::Unavailable`], and the request is refused (fail closed).
//!
//! - Requests per minute: a sliding log. At most `rpm` requests are admitted in
//!   any 60 seconds; the next is refused until the oldest leaves the window.
//! - Tokens per minute: the tokens of requests that finished in the last 60
//!   seconds. A request is refused while that sum is at or over `tpm` (a call's
//!   tokens are known only once it ends, so the request that crosses the limit
//!   is served).
//! - Concurrency: requests whose responses are still open. The slot is released
//!   when the response ends or the client goes away ([`Permit`] dropped).

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub use crate::time::{Clock, ManualClock, SystemClock};

/// The window of the per-minute limits.
pub const WINDOW_MS: i64 = 60_000;

/// Limits of one scope; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// Spend per UTC day and per UTC month, in pico-dollars (see [`crate::budget`]).
    #[serde(default)]
    pub daily_budget: Option<i64>,
    #[serde(default)]
    pub monthly_budget: Option<i64>,
}

impl Limits {
    /// No rate, token or concurrency limit (budgets aside).
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.concurrency.is_none()
    }

    /// The spend budgets.
    pub fn budget(&self) -> crate::budget::Budget {
        crate::budget::Budget {
            daily: self.daily_budget,
            monthly: self.monthly_budget,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

/// A refusal: which scope and limit, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// `key`, `owner <name>`, `environment <name>`.
    pub scope: String,
    pub kind: LimitKind,
    pub limit: u64,
    /// Milliseconds until a retry can succeed (at least 1).
    pub retry_after_ms: i64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// A limit would be exceeded.
    Exceeded(Exceeded),
    /// The counters cannot be reached: nothing can be admitted (fail closed).
    /// The text is for the log, never for the client.
    Unavailable(String),
}

/// How much of a scope's request limit is left after an admission, for the
/// provider's rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the window has room for `limit` requests again.
    pub reset_ms: i64,
}

/// A concurrency slot (and the scopes to charge tokens to): released on drop.
pub struct Permit {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// The tightest request limit the request was admitted under, if any.
    pub requests: Option<Remaining>,
}

impl Permit {
    /// A permit that holds nothing (no limits apply).
    pub fn none() -> Permit {
        Permit {
            release: None,
            requests: None,
        }
    }

    /// A permit that runs `release` once, when it is dropped.
    pub fn releasing(
        release: Box<dyn FnOnce() + Send + Sync>,
        requests: Option<Remaining>,
    ) -> Permit {
        Permit {
            release: Some(release),
            requests,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(r) = self.release.take() {
            r();
        }
    }
}

/// An admitted request: its concurrency slot, and the scopes its tokens count
/// against once it ends.
pub struct Admitted {
    pub permit: Permit,
    pub scopes: Vec<String>,
}

/// The port.
pub trait Limiter: Send + Sync {
    /// Admits one request under every `(scope id, label, limits)` given, or
    /// refuses it with the first limit it would exceed; a refused request counts
    /// against nothing.
    fn admit<'a>(
        &'a self,
        scopes: &'a [(String, String, Limits)],
    ) -> BoxFuture<'a, Result<Permit, LimitError>>;
    /// Adds the tokens a finished request used to its scopes' token windows
    /// (without waiting: a backend with I/O does it in the background).
    fn charge_tokens(&self, scopes: &[String], tokens: u64);
}

#[derive(Default)]
struct ScopeState {
    /// Admission times within the window, oldest first.
    requests: VecDeque<i64>,
    /// (finish time, tokens) within the window, and their sum.
    tokens: VecDeque<(i64, u64)>,
    token_sum: u64,
    in_flight: u64,
}

impl ScopeState {
    fn expire(&mut self, now: i64) {
        while self.requests.front().is_some_and(|&t| t <= now - WINDOW_MS) {
            self.requests.pop_front();
        }
        while let Some(&(t, n)) = self.tokens.front() {
            if t > now - WINDOW_MS {
                break;
            }
            self.token_sum -= n;
            self.tokens.pop_front();
        }
    }

    fn idle(&self) -> bool {
        self.requests.is_empty() && self.tokens.is_empty() && self.in_flight == 0
    }
}

/// The in-process limiter. Scopes with nothing in the window are dropped once
/// a minute, so per-user and per-exchange scopes do not pile up.
pub struct LocalLimiter {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<HashMap<String, ScopeState>>>,
    /// When idle scopes were last dropped (ms).
    swept_at: std::sync::atomic::AtomicI64,
}

impl LocalLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> LocalLimiter {
        let now = clock.now_ms();
        LocalLimiter {
            clock,
            state: Default::default(),
            swept_at: std::sync::atomic::AtomicI64::new(now),
        }
    }

    /// Scopes with any state (requests, tokens or slots in the window).
    pub fn tracked(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Limiter for LocalLimiter {
    fn admit<'a>(
        &'a self,
        scopes: &'a [(String, String, Limits)],
    ) -> BoxFuture<'a, Result<Permit, LimitError>> {
        Box::pin(std::future::ready(
            self.try_admit(scopes).map_err(LimitError::Exceeded),
        ))
    }

    fn charge_tokens(&self, scopes: &[String], tokens: u64) {
        self.charge(scopes, tokens)
    }
}

impl LocalLimiter {
    /// [`Limiter::admit`], at once.
    pub fn try_admit(&self, scopes: &[(String, String, Limits)]) -> Result<Permit, Exceeded> {
        let limited: Vec<&(String, String, Limits)> =
            scopes.iter().filter(|(_, _, l)| !l.is_empty()).collect();
        if limited.is_empty() {
            return Ok(Permit::none());
        }
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        use std::sync::atomic::Ordering;
        if now - self.swept_at.load(Ordering::Relaxed) >= WINDOW_MS {
            self.swept_at.store(now, Ordering::Relaxed);
            state.retain(|_, s| {
                s.expire(now);
                !s.idle()
            });
        }
        // Check everything first: a refusal changes nothing.
        for (id, label, limits) in &limited {
            let s = state.entry(id.clone()).or_default();
            s.expire(now);
            if let Some(rpm) = limits.rpm {
                if s.requests.len() as u64 >= rpm {
                    let oldest = s.requests[s.requests.len() - rpm as usize];
                    return Err(Exceeded {
                        scope: label.clone(),
                        kind: LimitKind::Requests,
                        limit: rpm,
                        retry_after_ms: (oldest + WINDOW_MS - now).max(1),
                    });
                }
            }
            if let Some(tpm) = limits.tpm {
                if s.token_sum >= tpm {
                    // Room comes back as finished requests leave the window.
                    let mut sum = s.token_sum;
                    let mut at = now;
                    for &(t, n) in &s.tokens {
                        sum -= n;
                        at = t + WINDOW_MS;
                        if sum < tpm {
                            break;
                        }
                    }
                    return Err(Exceeded {
                        scope: label.clone(),
                        kind: LimitKind::Tokens,
                        limit: tpm,
                        retry_after_ms: (at - now).max(1),
                    });
                }
            }
            if let Some(max) = limits.concurrency {
                if s.in_flight >= max {
                    return Err(Exceeded {
                        scope: label.clone(),
                        kind: LimitKind::Concurrency,
                        limit: max,
                        // A slot frees when a response ends: try again shortly.
                        retry_after_ms: 1000,
                    });
                }
            }
        }
        let mut requests: Option<Remaining> = None;
        let mut slots = Vec::new();
        for (id, _, limits) in &limited {
            let s = state.get_mut(id).expect("entered above");
            s.requests.push_back(now);
            if let Some(rpm) = limits.rpm {
                let r = Remaining {
                    limit: rpm,
                    remaining: rpm.saturating_sub(s.requests.len() as u64),
                    reset_ms: s.requests[0] + WINDOW_MS - now,
                };
                if requests.is_none_or(|q| r.remaining < q.remaining) {
                    requests = Some(r);
                }
            } else {
                // Only rpm needs the log; keep it bounded for the others.
                s.requests.pop_back();
            }
            if limits.concurrency.is_some() {
                s.in_flight += 1;
                slots.push(id.clone());
            }
        }
        let release: Option<Box<dyn FnOnce() + Send + Sync>> = if slots.is_empty() {
            None
        } else {
            let state = self.state.clone();
            Some(Box::new(move || {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                for id in slots {
                    if let Some(s) = state.get_mut(&id) {
                        s.in_flight = s.in_flight.saturating_sub(1);
                        if s.idle() {
                            state.remove(&id);
                        }
                    }
                }
            }))
        };
        Ok(Permit { release, requests })
    }

    fn charge(&self, scopes: &[String], tokens: u64) {
        if tokens == 0 || scopes.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for id in scopes {
            // Only scopes admitted under a limit have state; others need none.
            if let Some(s) = state.get_mut(id) {
                s.expire(now);
                s.tokens.push_back((now, tokens));
                s.token_sum += tokens;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(
        rpm: Option<u64>,
        tpm: Option<u64>,
        concurrency: Option<u64>,
    ) -> Vec<(String, String, Limits)> {
        vec![(
            "key:k".into(),
            "key".into(),
            Limits {
                rpm,
                tpm,
                concurrency,
                ..Default::default()
            },
        )]
    }

    #[test]
    fn at_most_rpm_requests_in_any_minute() {
        let clock = Arc::new(ManualClock::at(1_000_000));
        let l = LocalLimiter::new(clock.clone());
        let s = scope(Some(3), None, None);
        for _ in 0..3 {
            l.try_admit(&s).unwrap();
            clock.advance(10_000);
        }
        let e = l.try_admit(&s).err().unwrap();
        assert_eq!((e.kind, e.limit), (LimitKind::Requests, 3));
        // The first left the window at +60 s; it is +30 s now.
        assert_eq!(e.retry_after_ms, 30_000);
        clock.advance(30_000);
        l.try_admit(&s).unwrap();
        assert!(l.try_admit(&s).is_err());
    }

    #[test]
    fn idle_scopes_are_dropped_once_a_minute() {
        let clock = Arc::new(ManualClock::at(0));
        let l = LocalLimiter::new(clock.clone());
        let user = |n: u32| {
            vec![(
                format!("user:app:{n}"),
                format!("user `{n}`"),
                Limits {
                    rpm: Some(5),
                    ..Default::default()
                },
            )]
        };
        for n in 0..1_000 {
            l.try_admit(&user(n)).unwrap();
        }
        assert_eq!(l.tracked(), 1_000);
        // A minute on, the next request sweeps them; its own scope stays.
        clock.advance(WINDOW_MS);
        l.try_admit(&user(7)).unwrap();
        assert_eq!(l.tracked(), 1);
        // A scope with a slot in use is never dropped, however old.
        let held = l
            .try_admit(&[(
                "key:k".into(),
                "key".into(),
                Limits {
                    concurrency: Some(1),
                    ..Default::default()
                },
            )])
            .unwrap();
        clock.advance(5 * WINDOW_MS);
        l.try_admit(&user(8)).unwrap();
        assert_eq!(l.tracked(), 2);
        drop(held);
    }

    #[test]
    fn tokens_per_minute_count_finished_requests() {
        let clock = Arc::new(ManualClock::at(0));
        let l = LocalLimiter::new(clock.clone());
        let s = scope(None, Some(100), None);
        let p = l.try_admit(&s).unwrap();
        drop(p);
        l.charge(&["key:k".into()], 60);
        clock.advance(5_000);
        l.try_admit(&s).unwrap();
        l.charge(&["key:k".into()], 50);
        let e = l.try_admit(&s).err().unwrap();
        assert_eq!(e.kind, LimitKind::Tokens);
        // Without the first charge (at 0 s) the sum is under 100 again at 60 s.
        assert_eq!(e.retry_after_ms, 55_000);
        clock.advance(55_000);
        l.try_admit(&s).unwrap();
    }

    #[test]
    fn concurrency_slots_come_back_when_permits_drop() {
        let l = LocalLimiter::new(Arc::new(SystemClock));
        let s = scope(None, None, Some(2));
        let a = l.try_admit(&s).unwrap();
        let _b = l.try_admit(&s).unwrap();
        assert_eq!(l.try_admit(&s).err().unwrap().kind, LimitKind::Concurrency);
        drop(a);
        let _c = l.try_admit(&s).unwrap();
    }

    #[test]
    fn a_refusal_by_one_scope_counts_against_none() {
        let clock = Arc::new(ManualClock::at(0));
        let l = LocalLimiter::new(clock);
        let both = vec![
            (
                "key:k".to_string(),
                "key".to_string(),
                Limits {
                    rpm: Some(10),
                    ..Default::default()
                },
            ),
            (
                "owner:o".to_string(),
                "owner o".to_string(),
                Limits {
                    rpm: Some(1),
                    ..Default::default()
                },
            ),
        ];
        l.try_admit(&both).unwrap();
        for _ in 0..5 {
            assert_eq!(l.try_admit(&both).err().unwrap().scope, "owner o");
        }
        // The key's own window holds the one admitted request only.
        let key_only = vec![both[0].clone()];
        for _ in 0..9 {
            l.try_admit(&key_only).unwrap();
        }
        assert!(l.try_admit(&key_only).is_err());
    }

    #[test]
    fn exact_under_threads() {
        let l = Arc::new(LocalLimiter::new(Arc::new(ManualClock::at(0))));
        let s = Arc::new(scope(Some(50), None, None));
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|t| {
            for _ in 0..8 {
                t.spawn(|| {
                    for _ in 0..100 {
                        if l.try_admit(&s).is_ok() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 50);
    }
}
