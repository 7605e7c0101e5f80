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
//! - **new user agent** and **new model**: the first request of a key from a
//!   client family it never used (`OpenAI/Python`, `curl`, … versions left
//!   out), or for a model it never called; kept with the networks;
//! - **spikes** in requests, tokens and spend, and **unusual hours** ([`habits`]),
//!   per key and per owner (all of an owner's keys together);
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
    /// Client families ([`agent_family`]).
    user_agents: HashSet<String>,
    models: HashSet<String>,
}

/// How countries, user agents and models are kept in the store's
/// `key_sources`, beside networks.
const COUNTRY_PREFIX: &str = "country:";
const AGENT_PREFIX: &str = "ua:";
const MODEL_PREFIX: &str = "model:";

/// User agents and models learned per key at most: past it, new ones are
/// neither learned nor alerted (a client rotating its user agent cannot grow
/// memory without bound).
pub const MAX_LEARNED_PER_KEY: usize = 64;

/// A client's family from its `User-Agent`: the first product token without
/// its version (`OpenAI/Python 1.57.0` → `OpenAI/Python`, `curl/8.5.0` →
/// `curl`), at most 64 printable ASCII characters, `other` for anything else;
/// `None` for none. A slice of `ua`: nothing is allocated per request.
pub fn agent_family(ua: &str) -> Option<&str> {
    let first = ua.split_whitespace().next()?;
    // Up to the first `/` that a version follows (or an empty part).
    let mut end = 0;
    for part in first.split('/') {
        if part.is_empty() || part.starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
        end += part.len() + 1;
    }
    let family = &first[..end.saturating_sub(1).min(first.len())];
    if family.is_empty() || !family.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("other");
    }
    Some(&family[..family.len().min(64)])
}

/// An authenticated request, as the detectors see it.
pub struct Seen<'a> {
    pub key_id: &'a str,
    /// The key's owner: its habits are the owner's too.
    pub owner: Option<&'a str>,
    pub ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
}

/// Whom a habit finding is about.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Key(&'a str),
    Owner(&'a str),
}

/// How an owner's habits are named beside keys' (key ids never hold `:`).
pub fn owner_habits(owner: &str) -> String {
    format!("owner:{owner}")
}

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
            if let Some(country) = network.strip_prefix(COUNTRY_PREFIX) {
                s.countries.insert(country.to_string());
            } else if let Some(agent) = network.strip_prefix(AGENT_PREFIX) {
                s.user_agents.insert(agent.to_string());
            } else if let Some(model) = network.strip_prefix(MODEL_PREFIX) {
                s.models.insert(model.to_string());
            } else {
                s.networks.insert(network);
            }
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

    /// Runs `detect` on the habits of `subject` and reports what it finds.
    fn habits(
        &self,
        subject: Subject<'_>,
        now: i64,
        detect: impl FnOnce(&mut habits::Habits) -> Vec<habits::Finding>,
    ) {
        let owner_name;
        let name = match subject {
            Subject::Key(id) => id,
            Subject::Owner(o) => {
                owner_name = owner_habits(o);
                &owner_name
            }
        };
        let found = {
            let mut all = self.habits.lock().unwrap_or_else(|e| e.into_inner());
            // Looked up first: the common case allocates nothing.
            if !all.contains_key(name) {
                all.insert(name.to_string(), Default::default());
            }
            detect(all.get_mut(name).expect("inserted above"))
        };
        for f in found {
            self.report(subject, now, f);
        }
    }

    /// The usage of one finished request: token and spend spikes.
    pub fn usage(&self, r: &crate::usage::UsageRecord) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now_ms();
        let cost = r.cost_pico.unwrap_or(0).max(0) as u64;
        self.habits(Subject::Key(&r.key_id), now, |h| {
            h.usage(now, r.usage.total(), cost, self.warmup_ms)
        });
        if let Some(o) = &r.owner {
            self.habits(Subject::Owner(o), now, |h| {
                h.usage(now, r.usage.total(), cost, self.warmup_ms)
            });
        }
    }

    fn report(&self, subject: Subject<'_>, now: i64, f: habits::Finding) {
        // An owner's finding names the owner (and dedupes by it); only a key
        // can be suspended.
        let (key_id, about) = match subject {
            Subject::Key(id) => (id, json!({"key_id": id})),
            Subject::Owner(o) => ("", json!({"owner": o, "scope": owner_habits(o)})),
        };
        let with_subject = |mut alert: Value| {
            if let (Some(a), Some(about)) = (alert.as_object_mut(), about.as_object()) {
                a.extend(about.clone());
            }
            alert
        };
        let owner_action = |o: &str| {
            format!("find which of the owner's keys carries it (keyward usage --by key --since 1h), and suspend it if the traffic is not theirs (owner {o})")
        };
        match f {
            habits::Finding::UnusualHour {
                hour_of_week,
                active_hours_of_week,
            } => {
                let (day, hour) = weekday_hour(now);
                let (whose, action) = match subject {
                    Subject::Key(id) => ("this key", format!("if nobody of yours works at this hour, suspend the key: keyward keys suspend {id}")),
                    Subject::Owner(o) => ("this owner's keys", owner_action(o)),
                };
                self.sink.raise(with_subject(json!({
                    "kind": "unusual_hour", "severity": "warning",
                    "summary": format!("a request on {day} at {hour:02}:00 UTC, an hour of the week {whose} never worked in"),
                    "seen": {"hour_of_week": hour_of_week},
                    "baseline": {"active_hours_of_week": active_hours_of_week},
                    "action": action,
                })));
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
                let suspended = matches!(subject, Subject::Key(_))
                    && self
                        .suspend
                        .as_ref()
                        .is_some_and(|s| s(key_id.to_string(), format!("anomaly: {summary}")));
                let action = match subject {
                    Subject::Owner(o) => owner_action(o),
                    Subject::Key(id) if suspended => format!(
                        "the key was suspended; if the traffic is yours: keyward keys resume {id}"
                    ),
                    Subject::Key(id) => format!(
                        "if this traffic is not yours, suspend the key: keyward keys suspend {id}"
                    ),
                };
                self.sink.raise(with_subject(json!({
                    "kind": kind, "severity": "high",
                    "summary": summary,
                    "seen": {"metric": metric.name(), "this_hour": count},
                    "baseline": {"metric": metric.name(), "median_per_active_hour": median, "active_hours": active_hours, "threshold": threshold},
                    "suspended": suspended,
                    "action": action,
                })));
            }
        }
    }

    /// An authenticated request: the key's and its owner's habits, and where
    /// and what it came from.
    pub fn request(&self, seen: &Seen<'_>) {
        if !self.enabled {
            return;
        }
        let (key_id, ip, request_id) = (seen.key_id, seen.ip, seen.request_id);
        let network = network_of(ip);
        let now = self.clock.now_ms();
        self.habits(Subject::Key(key_id), now, |h| {
            h.request(now, self.warmup_ms)
        });
        if let Some(o) = seen.owner {
            self.habits(Subject::Owner(o), now, |h| h.request(now, self.warmup_ms));
        }
        if let Some(agent) = seen.user_agent.and_then(agent_family) {
            self.learn(key_id, Learned::UserAgent, agent, request_id);
        }
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

    /// A request counted under `owner` only (a user's token under an identity
    /// rule with an owner): the owner's request habits, nothing per key.
    pub fn owner_request(&self, owner: &str) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now_ms();
        self.habits(Subject::Owner(owner), now, |h| {
            h.request(now, self.warmup_ms)
        });
    }

    /// The model a key's request is for: alerts on the first call of a model
    /// the key never used, once it is warmed up.
    pub fn model(&self, key_id: &str, model: &str, request_id: &str) {
        if !self.enabled {
            return;
        }
        self.learn(key_id, Learned::Model, model, request_id);
    }

    /// Adds `value` to the key's user agents or models; alerts when it is new
    /// to a warmed-up key that already had some.
    fn learn(&self, key_id: &str, what: Learned, value: &str, request_id: &str) {
        let now = self.clock.now_ms();
        let (known, warmed, watched_since) = {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let Some(s) = sources.get_mut(key_id) else {
                // Seen first by `request`, which starts the key's record; a
                // model before it (it cannot happen on the request path) waits.
                if what == Learned::UserAgent {
                    let mut s = KeySources {
                        first_seen_ms: now,
                        ..Default::default()
                    };
                    s.user_agents.insert(value.to_string());
                    sources.insert(key_id.to_string(), s);
                    let _ = self.new_sources.send((
                        key_id.to_string(),
                        format!("{AGENT_PREFIX}{value}"),
                        now,
                    ));
                }
                return;
            };
            let set = match what {
                Learned::UserAgent => &mut s.user_agents,
                Learned::Model => &mut s.models,
            };
            if set.contains(value) || set.len() >= MAX_LEARNED_PER_KEY {
                return;
            }
            let mut known: Vec<String> = set.iter().cloned().collect();
            set.insert(value.to_string());
            known.sort();
            known.truncate(LISTED_NETWORKS);
            (
                known,
                now - s.first_seen_ms >= self.warmup_ms,
                s.first_seen_ms,
            )
        };
        let prefix = match what {
            Learned::UserAgent => AGENT_PREFIX,
            Learned::Model => MODEL_PREFIX,
        };
        let _ = self
            .new_sources
            .send((key_id.to_string(), format!("{prefix}{value}"), now));
        if known.is_empty() || !warmed {
            return;
        }
        let alert = match what {
            Learned::UserAgent => json!({
                "kind": "new_user_agent", "severity": "warning", "key_id": key_id,
                "summary": format!("first request from a `{value}` client; this key was only used by others"),
                "seen": {"user_agent": value, "request_id": request_id},
                "baseline": {"user_agents": known, "watched_since_ms": watched_since},
                "action": format!("if no client of yours is `{value}`, suspend the key: keyward keys suspend {key_id}"),
            }),
            Learned::Model => json!({
                "kind": "new_model", "severity": "warning", "key_id": key_id,
                "summary": format!("first request for model `{value}`, one this key never called"),
                "seen": {"model": value, "request_id": request_id},
                "baseline": {"models": known, "watched_since_ms": watched_since},
                "action": format!("if your application does not use `{value}`, suspend the key: keyward keys suspend {key_id} (and narrow its --models)"),
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

/// What a key is learned with beside its networks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Learned {
    UserAgent,
    Model,
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

    fn seen<'a>(key_id: &'a str, ip: IpAddr, request_id: &'a str) -> Seen<'a> {
        Seen {
            key_id,
            owner: None,
            ip,
            user_agent: None,
            request_id,
        }
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
                w.request(&seen("key_a", ip(&format!("198.51.100.{last}")), "r"));
            }
            w.request(&seen("key_a", ip("192.0.2.40"), "r"));
            clock.advance(HOUR);
        }
        // The second network came within the warm-up: learned, not alerted.
        assert!(sink.kinds().is_empty(), "{:?}", sink.0.lock().unwrap());
        // The theft: a burst from a network never seen.
        for _ in 0..50 {
            w.request(&seen("key_a", ip("203.0.113.9"), "r-theft"));
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
    fn client_families_leave_versions_out() {
        assert_eq!(agent_family("OpenAI/Python 1.57.0"), Some("OpenAI/Python"));
        assert_eq!(agent_family("curl/8.5.0"), Some("curl"));
        assert_eq!(agent_family("Anthropic/JS 0.32.1"), Some("Anthropic/JS"));
        assert_eq!(
            agent_family("google-genai-sdk/1.2.0 gl-python/3.11.7"),
            Some("google-genai-sdk")
        );
        assert_eq!(
            agent_family("Mozilla/5.0 (X11; Linux x86_64)"),
            Some("Mozilla")
        );
        assert_eq!(agent_family("\u{7f}bad/1"), Some("other"));
        assert_eq!(agent_family("/1.0"), Some("other"));
        assert_eq!(agent_family("   "), None);
        assert_eq!(agent_family(&"x".repeat(500)).map(str::len), Some(64));
        assert_eq!(agent_family("a/b/c 1"), Some("a/b/c"));
    }

    #[test]
    fn a_new_client_family_or_model_alerts_once_after_warm_up_and_survives_a_restart() {
        let clock = Arc::new(ManualClock::at(1_700_000_000_000));
        let sink = Arc::new(Collected::default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Watch::new(
            clock.clone(),
            sink.clone(),
            WatchSettings {
                warmup_ms: 24 * HOUR,
                failed_auth_burst: 5,
            },
            Known::default(),
            tx,
        );
        let from = |ua: &'static str| Seen {
            key_id: "key_a",
            owner: None,
            ip: ip("198.51.100.10"),
            user_agent: Some(ua),
            request_id: "r",
        };
        // Two days of one SDK (its versions change) calling one model.
        for h in 0..48 {
            w.request(&from(if h < 24 {
                "OpenAI/Python 1.50.0"
            } else {
                "OpenAI/Python 1.57.0"
            }));
            w.model("key_a", "gpt-4o-mini", "r");
            clock.advance(HOUR);
        }
        assert!(sink.kinds().is_empty(), "{:?}", sink.kinds());
        // Then curl, calling the dearest model: one alert each, and only once.
        for _ in 0..3 {
            w.request(&from("curl/8.5.0"));
            w.model("key_a", "o1-pro", "r-theft");
        }
        assert_eq!(sink.kinds(), ["new_user_agent", "new_model"]);
        let alerts = sink.0.lock().unwrap().clone();
        assert_eq!(
            alerts[0]["baseline"]["user_agents"],
            json!(["OpenAI/Python"])
        );
        assert_eq!(alerts[0]["seen"]["user_agent"], "curl");
        assert_eq!(alerts[1]["baseline"]["models"], json!(["gpt-4o-mini"]));
        assert_eq!(alerts[1]["seen"]["request_id"], "r-theft");
        // What was learned goes to the store, and a restart starts from it.
        let mut stored = Vec::new();
        while let Ok(row) = rx.try_recv() {
            stored.push(row);
        }
        let names: Vec<&str> = stored.iter().map(|(_, n, _)| n.as_str()).collect();
        for n in [
            "ua:OpenAI/Python",
            "ua:curl",
            "model:gpt-4o-mini",
            "model:o1-pro",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        let sink = Arc::new(Collected::default());
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Watch::new(
            clock.clone(),
            sink.clone(),
            WatchSettings {
                warmup_ms: 24 * HOUR,
                failed_auth_burst: 5,
            },
            Known {
                sources: stored,
                hours: vec![],
            },
            tx,
        );
        w.request(&from("curl/8.6.0"));
        w.model("key_a", "o1-pro", "r");
        assert!(sink.kinds().is_empty(), "{:?}", sink.kinds());
    }

    #[test]
    fn an_owners_keys_are_watched_together() {
        // A week of an owner's one key, ten requests an hour; then a new key of
        // the same owner (still warming up on its own) bursts.
        let start = 2_000 * HOUR;
        let clock = Arc::new(ManualClock::at(start));
        let sink = Arc::new(Collected::default());
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let hours = (1..=24 * 7)
            .flat_map(|h| {
                let past = habits::PastHour {
                    hour: 2_000 - h,
                    requests: 10,
                    tokens: 0,
                    spend_pico: 0,
                };
                [
                    ("key_old".to_string(), past),
                    (owner_habits("team-a"), past),
                ]
            })
            .collect();
        let w = Watch::new(
            clock,
            sink.clone(),
            WatchSettings {
                warmup_ms: 24 * HOUR,
                failed_auth_burst: 5,
            },
            Known {
                sources: vec![],
                hours,
            },
            tx,
        );
        let new_key = Seen {
            key_id: "key_new",
            owner: Some("team-a"),
            ip: ip("198.51.100.10"),
            user_agent: None,
            request_id: "r",
        };
        // 30 from the new key and 30 from users' tokens under an identity rule
        // owned by team-a: neither alone reaches the floor of 50, together
        // they do.
        for _ in 0..30 {
            w.request(&new_key);
        }
        assert!(sink.kinds().is_empty(), "{:?}", sink.kinds());
        for _ in 0..30 {
            w.owner_request("team-a");
        }
        let alerts = sink.0.lock().unwrap().clone();
        let spikes: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["kind"] == "request_spike")
            .collect();
        assert_eq!(spikes.len(), 1, "{alerts:?}");
        assert_eq!(spikes[0]["owner"], "team-a");
        assert!(
            spikes[0].get("key_id").is_none(),
            "an owner's spike names no key"
        );
        assert_eq!(spikes[0]["suspended"], false);
        assert_eq!(spikes[0]["baseline"]["median_per_active_hour"], 10);
    }

    #[test]
    fn disabled_detectors_see_nothing() {
        let clock = Arc::new(ManualClock::at(0));
        let sink = Arc::new(Collected::default());
        let w = watch(clock.clone(), sink.clone(), vec![]).disabled();
        w.request(&seen("key_a", ip("198.51.100.1"), "r"));
        clock.advance(48 * HOUR);
        for i in 0..100 {
            w.request(&seen("key_a", ip(&format!("203.0.{i}.1")), "r"));
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
        w.request(&seen("key_a", ip("198.51.100.200"), "r"));
        assert!(sink.kinds().is_empty());
        w.request(&seen("key_a", ip("203.0.113.9"), "r"));
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
