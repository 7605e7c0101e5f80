//! Anomaly detectors on the request path, learned per key from its own use:
//!
//! - **new source network**: the first request of a key from a network (/24 for
//!   IPv4, /48 for IPv6) it was never used from. A key's first network is its
//!   baseline; the networks a key used are kept in the store across restarts,
//!   and nothing alerts until the key has been watched for the warm-up period.
//! - **new country**: with `[watch] geoip_db`, the first request of a key from
//!   a country it was never used from (kept with the networks, as `country:XX`);
//! - **failed-authentication bursts**: `failed_auth_burst` refused credentials
//!   from one address within a minute.
//! - **revoked and expired keys presented**: a revoked or expired key still in
//!   use somewhere (a leak, or a client that was never updated);
//! - **spikes** in requests, tokens and spend, and **unusual hours** ([`habits`]);
//! - **budget thresholds**: 50, 80 and 100% of a budget spent ([`budgets`]).
//!
//! With `[watch] on_anomaly = "suspend"`, a key with a request spike is
//! suspended at once, the alert as its reason (`keyward keys resume` undoes it).
//!
//! Each check is a hash-map lookup on the request path; store writes and alert
//! delivery happen off it.

pub mod budgets;
pub mod geo;
pub mod habits;

use crate::time::Clock;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Where detectors send what they find (the alerter; a collector in tests).
pub trait AlertSink: Send + Sync {
    fn raise(&self, alert: Value);
}

impl AlertSink for crate::alerts::Alerter {
    fn raise(&self, alert: Value) {
        self.send(alert);
    }
}

/// The window failed authentications are counted in.
const AUTH_WINDOW_MS: i64 = 60_000;

/// Addresses whose failures are tracked at once (a flood from many addresses
/// costs bounded memory: the oldest are forgotten).
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Networks listed in an alert as the key's known ones.
const LISTED_NETWORKS: usize = 10;

/// The network an address belongs to, as the detectors group sources: /24 for
/// IPv4 (and IPv4-mapped IPv6), /48 for IPv6.
pub fn network_of(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[derive(Default)]
struct KeySources {
    /// When the key was first seen (the start of its warm-up).
    first_seen_ms: i64,
    networks: HashSet<String>,
    /// ISO country codes, when a GeoIP database is configured.
    countries: HashSet<String>,
}

/// How countries are kept in the store's `key_sources`, beside networks.
const COUNTRY_PREFIX: &str = "country:";

/// The detectors' state.
pub struct Watch {
    clock: Arc<dyn Clock>,
    sink: Arc<dyn AlertSink>,
    warmup_ms: i64,
    failed_auth_burst: u32,
    sources: Mutex<HashMap<String, KeySources>>,
    habits: Mutex<HashMap<String, habits::Habits>>,
    budgets: budgets::BudgetWatch,
    /// Suspends a key (id, reason) on a severe anomaly, when the policy says so.
    suspend: Option<Suspender>,
    /// `[watch] enabled = false`: every check returns at once.
    enabled: bool,
    geo: Option<geo::GeoIp>,
    failures: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
    /// New (key id, network, first seen) pairs, for the store.
    new_sources: tokio::sync::mpsc::UnboundedSender<(String, String, i64)>,
}

/// Suspends a key: `(key id, reason)`.
/// Suspends key `id` for `reason` when its policy (the key's own, else the
/// server's) says so; returns whether it does.
pub type Suspender = Arc<dyn Fn(String, String) -> bool + Send + Sync>;

/// What the detectors were configured with.
pub struct WatchSettings {
    pub warmup_ms: i64,
    pub failed_auth_burst: u32,
}

/// What the detectors start from: what the store remembers.
#[derive(Default)]
pub struct Known {
    /// (key id, network, first seen ms).
    pub sources: Vec<(String, String, i64)>,
    /// Each key's past hours over the last week.
    pub hours: Vec<(String, habits::PastHour)>,
}

impl Watch {
    /// Detectors that start from `known` (key id, network, first seen) pairs and
    /// send new pairs to `new_sources` for the store.
    pub fn new(
        clock: Arc<dyn Clock>,
        sink: Arc<dyn AlertSink>,
        settings: WatchSettings,
        known: Known,
        new_sources: tokio::sync::mpsc::UnboundedSender<(String, String, i64)>,
    ) -> Watch {
        let mut habits: HashMap<String, habits::Habits> = HashMap::new();
        for (key_id, hour) in known.hours {
            habits.entry(key_id).or_default().seed(hour);
        }
        let mut sources: HashMap<String, KeySources> = HashMap::new();
        for (key_id, network, first_seen_ms) in known.sources {
            let s = sources.entry(key_id).or_insert_with(|| KeySources {
                first_seen_ms,
                ..Default::default()
            });
            s.first_seen_ms = s.first_seen_ms.min(first_seen_ms);
            match network.strip_prefix(COUNTRY_PREFIX) {
                Some(country) => s.countries.insert(country.to_string()),
                None => s.networks.insert(network),
            };
        }
        Watch {
            clock,
            sink,
            warmup_ms: settings.warmup_ms,
            failed_auth_burst: settings.failed_auth_burst,
            sources: Mutex::new(sources),
            habits: Mutex::new(habits),
            budgets: Default::default(),
            suspend: None,
            enabled: true,
            geo: None,
            failures: Mutex::new(HashMap::new()),
            new_sources,
        }
    }

    /// A budgeted scope's spend: alerts at 50, 80 and 100% of a budget.
    pub fn budget_spend(&self, s: &budgets::ScopeSpend<'_>) {
        if !self.enabled {
            return;
        }
        self.budgets.check(self.sink.as_ref(), s);
    }

    /// A budget refused a request (`period`: `daily` or `monthly`).
    pub fn budget_refused(&self, s: &budgets::ScopeSpend<'_>, period: &'static str) {
        if !self.enabled {
            return;
        }
        self.budgets.refused(self.sink.as_ref(), s, period);
    }

    /// Turns every detector off (`[watch] enabled = false`).
    pub fn disabled(mut self) -> Watch {
        self.enabled = false;
        self
    }

    /// Looks up the country of each new network in `geo`.
    pub fn with_geoip(mut self, geo: geo::GeoIp) -> Watch {
        self.geo = Some(geo);
        self
    }

    /// Asks `suspend` on every severe anomaly (a spike, a new country): it
    /// suspends the key when the key's or the server's `on_anomaly` says so.
    pub fn suspending_with(mut self, suspend: Suspender) -> Watch {
        self.suspend = Some(suspend);
        self
    }

    /// Runs `detect` on `key_id`'s habits and reports what it finds.
    fn habits(
        &self,
        key_id: &str,
        now: i64,
        detect: impl FnOnce(&mut habits::Habits) -> Vec<habits::Finding>,
    ) {
        let found = {
            let mut all = self.habits.lock().unwrap_or_else(|e| e.into_inner());
            // Looked up first: the common case allocates nothing.
            if !all.contains_key(key_id) {
                all.insert(key_id.to_string(), Default::default());
            }
            detect(all.get_mut(key_id).expect("inserted above"))
        };
        for f in found {
            self.report(key_id, now, f);
        }
    }

    /// The usage of one finished request: token and spend spikes.
    pub fn usage(&self, r: &crate::usage::UsageRecord) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now_ms();
        let cost = r.cost_pico.unwrap_or(0).max(0) as u64;
        self.habits(&r.key_id, now, |h| {
            h.usage(now, r.usage.total(), cost, self.warmup_ms)
        });
    }

    fn report(&self, key_id: &str, now: i64, f: habits::Finding) {
        match f {
            habits::Finding::UnusualHour {
                hour_of_week,
                active_hours_of_week,
            } => {
                let (day, hour) = weekday_hour(now);
                self.sink.raise(json!({
                    "kind": "unusual_hour", "severity": "warning", "key_id": key_id,
                    "summary": format!("a request on {day} at {hour:02}:00 UTC, an hour of the week this key never worked in"),
                    "seen": {"hour_of_week": hour_of_week},
                    "baseline": {"active_hours_of_week": active_hours_of_week},
                    "action": format!("if nobody of yours works at this hour, suspend the key: keyward keys suspend {key_id}"),
                }));
            }
            habits::Finding::Spike {
                metric,
                count,
                threshold,
                median,
                active_hours,
            } => {
                fn requests(n: u64) -> String {
                    format!("{n} requests")
                }
                fn tokens(n: u64) -> String {
                    format!("{n} tokens")
                }
                fn spend(n: u64) -> String {
                    crate::prices::dollars(n.min(i64::MAX as u64) as i64)
                }
                let (kind, shown): (&str, fn(u64) -> String) = match metric {
                    habits::Metric::Requests => ("request_spike", requests),
                    habits::Metric::Tokens => ("token_spike", tokens),
                    habits::Metric::Spend => ("spend_spike", spend),
                };
                let summary = format!(
                    "{} this hour against a usual busy hour of {} (alert at {})",
                    shown(count),
                    shown(median),
                    shown(threshold)
                );
                let suspended = self
                    .suspend
                    .as_ref()
                    .is_some_and(|s| s(key_id.to_string(), format!("anomaly: {summary}")));
                self.sink.raise(json!({
                    "kind": kind, "severity": "high", "key_id": key_id,
                    "summary": summary,
                    "seen": {"metric": metric.name(), "this_hour": count},
                    "baseline": {"metric": metric.name(), "median_per_active_hour": median, "active_hours": active_hours, "threshold": threshold},
                    "suspended": suspended,
                    "action": if suspended {
                        format!("the key was suspended; if the traffic is yours: keyward keys resume {key_id}")
                    } else {
                        format!("if this traffic is not yours, suspend the key: keyward keys suspend {key_id}")
                    },
                }));
            }
        }
    }

    /// An authenticated request of `key_id` from `ip`.
    pub fn request(&self, key_id: &str, ip: IpAddr, request_id: &str) {
        if !self.enabled {
            return;
        }
        let network = network_of(ip);
        let now = self.clock.now_ms();
        self.habits(key_id, now, |h| h.request(now, self.warmup_ms));
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if !sources.contains_key(key_id) {
            sources.insert(
                key_id.to_string(),
                KeySources {
                    first_seen_ms: now,
                    ..Default::default()
                },
            );
        }
        let s = sources.get_mut(key_id).expect("inserted above");
        if s.networks.contains(&network) {
            return;
        }
        // A new network: the slow path (once per key and network).
        let mut known: Vec<String> = s.networks.iter().cloned().collect();
        s.networks.insert(network.clone());
        let _ = self
            .new_sources
            .send((key_id.to_string(), network.clone(), now));
        let country = self.geo.as_ref().and_then(|g| g.country(ip));
        let mut known_countries: Vec<String> = s.countries.iter().cloned().collect();
        let new_country = country
            .as_ref()
            .filter(|c| s.countries.insert(c.to_string()))
            .cloned();
        if let Some(c) = &new_country {
            let _ =
                self.new_sources
                    .send((key_id.to_string(), format!("{COUNTRY_PREFIX}{c}"), now));
        }
        let warmed = now - s.first_seen_ms >= self.warmup_ms;
        let watched_since = s.first_seen_ms;
        drop(sources);
        if known.is_empty() || !warmed {
            return; // the baseline is still being learned
        }
        known.sort();
        known.truncate(LISTED_NETWORKS);
        known_countries.sort();
        let seen = json!({
            "network": network, "address": ip.to_string(), "country": country, "request_id": request_id,
        });
        let alert = match new_country {
            Some(c) if !known_countries.is_empty() => {
                let summary = format!(
                    "first request from {c} ({network}), a country this key was never used from"
                );
                let suspended = self
                    .suspend
                    .as_ref()
                    .is_some_and(|s| s(key_id.to_string(), format!("anomaly: {summary}")));
                json!({
                    "kind": "new_source_country", "severity": "high", "key_id": key_id,
                    "summary": summary, "seen": seen, "suspended": suspended,
                    "baseline": {"countries": known_countries, "networks": known, "watched_since_ms": watched_since},
                    "action": if suspended {
                        format!("the key was suspended; if this is yours: keyward keys resume {key_id}")
                    } else {
                        format!("if this is not one of yours, suspend the key: keyward keys suspend {key_id}")
                    },
                })
            }
            _ => json!({
                "kind": "new_source_network", "severity": "warning", "key_id": key_id,
                "summary": format!("first request from {network}, a network this key was never used from"),
                "seen": seen,
                "baseline": {"networks": known, "watched_since_ms": watched_since},
                "action": format!("if this is not one of yours, suspend the key: keyward keys suspend {key_id}"),
            }),
        };
        self.sink.raise(alert);
    }

    /// A refused credential from `ip`: `code` is the denial (`invalid_key`,
    /// `revoked`, `expired`, …) and `key_id` the key, when it is one of ours.
    pub fn auth_failed(&self, ip: IpAddr, code: &str, key_id: Option<&str>) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now_ms();
        if let (Some(id), "revoked" | "expired") = (key_id, code) {
            let kind = if code == "revoked" {
                "revoked_key_used"
            } else {
                "expired_key_used"
            };
            self.sink.raise(json!({
                "kind": kind, "severity": "high", "key_id": id,
                "summary": format!("a {code} key was presented from {ip}"),
                "seen": {"address": ip.to_string(), "network": network_of(ip)},
                "action": "find the client still holding this key; if it leaked, check where it was used",
            }));
        }
        let burst = {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&ip) {
                failures.retain(|_, times| times.back().is_some_and(|&t| now - t < AUTH_WINDOW_MS));
                if failures.len() >= MAX_TRACKED_ADDRESSES {
                    failures.clear();
                }
            }
            let times = failures.entry(ip).or_default();
            while times.front().is_some_and(|&t| now - t >= AUTH_WINDOW_MS) {
                times.pop_front();
            }
            times.push_back(now);
            // Exactly at the threshold: one alert per burst (and the alerter's
            // dedupe holds back the next bursts within its window).
            (times.len() == self.failed_auth_burst as usize).then_some(times.len())
        };
        if let Some(n) = burst {
            self.sink.raise(json!({
                "kind": "failed_auth_burst", "severity": "high",
                "summary": format!("{n} refused credentials from {ip} within a minute"),
                "seen": {"address": ip.to_string(), "network": network_of(ip), "failures": n, "last": code},
                "baseline": {"threshold": self.failed_auth_burst, "window_secs": AUTH_WINDOW_MS / 1000},
                "action": "someone is guessing or replaying keys: block the address upstream of the gateway",
            }));
        }
    }
}

/// A usage sink that shows each record to the detectors on its way to `inner`.
pub struct WatchedSink {
    pub watch: Arc<Watch>,
    pub inner: Arc<dyn crate::usage::UsageSink>,
}

impl crate::usage::UsageSink for WatchedSink {
    fn record(&self, r: crate::usage::UsageRecord) {
        self.watch.usage(&r);
        self.inner.record(r);
    }
}

/// The weekday and hour (UTC) of a time.
fn weekday_hour(ms: i64) -> (&'static str, i64) {
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let hour = ms.div_euclid(habits::HOUR_MS);
    (
        DAYS[(hour.div_euclid(24)).rem_euclid(7) as usize],
        hour.rem_euclid(24),
    )
}

/// Writes new (key id, network, first seen) pairs to the store as they come.
pub async fn record_sources(
    store: keyward_store::Store,
    mut new: tokio::sync::mpsc::UnboundedReceiver<(String, String, i64)>,
) {
    while let Some((key_id, network, at)) = new.recv().await {
        if let Err(e) = store.add_key_source(&key_id, &network, at).await {
            tracing::warn!(key_id, "source network not stored: {e}");
        }
    }
}

/// What tests of the detectors share: a sink that keeps what it is given.
#[cfg(test)]
pub(crate) mod testing {
    use super::AlertSink;
    use serde_json::Value;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Collected(pub Mutex<Vec<Value>>);

    impl AlertSink for Collected {
        fn raise(&self, alert: Value) {
            self.0.lock().unwrap().push(alert);
        }
    }

    impl Collected {
        pub fn kinds(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|a| a["kind"].as_str().unwrap().to_string())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Collected;
    use super::*;
    use crate::time::ManualClock;

    const HOUR: i64 = 3_600_000;

    fn watch(
        clock: Arc<ManualClock>,
        sink: Arc<Collected>,
        sources: Vec<(String, String, i64)>,
    ) -> Watch {
        let known = Known {
            sources,
            hours: vec![],
        };
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Watch::new(
            clock,
            sink,
            WatchSettings {
                warmup_ms: 24 * HOUR,
                failed_auth_burst: 5,
            },
            known,
            tx,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn weekdays_and_hours_are_utc() {
        // Monday 2026-11-02 00:00 UTC, and Sunday 2026-11-08 23:00 UTC.
        assert_eq!(weekday_hour(1_793_577_600_000), ("Monday", 0));
        assert_eq!(weekday_hour(1_793_577_600_000 + 167 * HOUR), ("Sunday", 23));
    }

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        assert_eq!(network_of(ip("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(network_of(ip("::ffff:203.0.113.77")), "203.0.113.0/24");
        assert_eq!(network_of(ip("2001:db8:abcd:12::1")), "2001:db8:abcd::/48");
    }

    #[test]
    fn a_week_from_the_usual_networks_is_quiet_and_a_new_one_alerts_after_warm_up() {
        let clock = Arc::new(ManualClock::at(1_700_000_000_000));
        let sink = Arc::new(Collected::default());
        let w = watch(clock.clone(), sink.clone(), vec![]);
        // A normal week: office and CI, many requests an hour.
        for _hour in 0..24 * 7 {
            for last in [10, 11, 12] {
                w.request("key_a", ip(&format!("198.51.100.{last}")), "r");
            }
            w.request("key_a", ip("192.0.2.40"), "r");
            clock.advance(HOUR);
        }
        // The second network came within the warm-up: learned, not alerted.
        assert!(sink.kinds().is_empty(), "{:?}", sink.0.lock().unwrap());
        // The theft: a burst from a network never seen.
        for _ in 0..50 {
            w.request("key_a", ip("203.0.113.9"), "r-theft");
        }
        // A new network and, at fifty requests, a spike against a usual four an hour.
        assert_eq!(sink.kinds(), ["new_source_network", "request_spike"]);
        let a = &sink.0.lock().unwrap()[0];
        assert_eq!(a["seen"]["network"], "203.0.113.0/24");
        assert_eq!(
            a["baseline"]["networks"],
            json!(["192.0.2.0/24", "198.51.100.0/24"])
        );
        assert!(a["action"].as_str().unwrap().contains("keys suspend key_a"));
    }

    #[test]
    fn a_burst_of_tokens_is_a_token_spike_with_its_baseline() {
        let clock = Arc::new(ManualClock::at(1_000 * HOUR));
        let sink = Arc::new(Collected::default());
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let hours = (1..=24)
            .map(|h| {
                let past = habits::PastHour {
                    hour: 1_000 - h,
                    requests: 10,
                    tokens: 20_000,
                    spend_pico: 0,
                };
                ("key_t".to_string(), past)
            })
            .collect();
        let w = Watch::new(
            clock,
            sink.clone(),
            WatchSettings {
                warmup_ms: HOUR,
                failed_auth_burst: 5,
            },
            Known {
                sources: vec![],
                hours,
            },
            tx,
        );
        let record = crate::usage::UsageRecord {
            at_ms: 0,
            request_id: "r".into(),
            key_id: "key_t".into(),
            environment: "prod".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            endpoint: "chat.completions".into(),
            status: 200,
            usage: crate::usage::Usage {
                input: 150_000,
                output: 1_000,
                ..Default::default()
            },
            cost_pico: None,
            complete: true,
            subject: None,
            owner: None,
        };
        w.usage(&record);
        assert_eq!(sink.kinds(), ["token_spike"]);
        let a = &sink.0.lock().unwrap()[0];
        assert_eq!(a["baseline"]["median_per_active_hour"], 20_000);
        assert_eq!(a["seen"]["this_hour"], 151_000);
    }

    #[test]
    fn disabled_detectors_see_nothing() {
        let clock = Arc::new(ManualClock::at(0));
        let sink = Arc::new(Collected::default());
        let w = watch(clock.clone(), sink.clone(), vec![]).disabled();
        w.request("key_a", ip("198.51.100.1"), "r");
        clock.advance(48 * HOUR);
        for i in 0..100 {
            w.request("key_a", ip(&format!("203.0.{i}.1")), "r");
            w.auth_failed(ip("203.0.113.5"), "revoked", Some("key_r"));
        }
        assert!(sink.kinds().is_empty());
    }

    #[test]
    fn known_networks_survive_a_restart() {
        let clock = Arc::new(ManualClock::at(100 * HOUR));
        let sink = Arc::new(Collected::default());
        let w = watch(
            clock,
            sink.clone(),
            vec![("key_a".into(), "198.51.100.0/24".into(), 0)],
        );
        w.request("key_a", ip("198.51.100.200"), "r");
        assert!(sink.kinds().is_empty());
        w.request("key_a", ip("203.0.113.9"), "r");
        assert_eq!(sink.kinds(), ["new_source_network"]);
    }

    #[test]
    fn failed_logins_alert_once_per_burst_and_revoked_keys_always() {
        let clock = Arc::new(ManualClock::at(0));
        let sink = Arc::new(Collected::default());
        let w = watch(clock.clone(), sink.clone(), vec![]);
        for _ in 0..4 {
            w.auth_failed(ip("203.0.113.5"), "invalid_key", None);
            clock.advance(20_000); // 4 in 80 s: never 5 in a minute
        }
        assert!(sink.kinds().is_empty());
        for _ in 0..12 {
            w.auth_failed(ip("203.0.113.5"), "invalid_key", None);
        }
        assert_eq!(sink.kinds(), ["failed_auth_burst"]);
        w.auth_failed(ip("198.51.100.1"), "revoked", Some("key_r"));
        assert_eq!(sink.kinds(), ["failed_auth_burst", "revoked_key_used"]);
    }
}
