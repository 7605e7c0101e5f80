//! Prometheus metrics, served in the OpenMetrics text format at `/metrics` on the
//! admin listener (never the client port).
//!
//! Labels carry key ids, never key material. Their cardinality is bounded: key
//! ids and model names beyond [`MAX_KEY_LABELS`] and [`MAX_MODEL_LABELS`]
//! distinct values are counted under `other`; providers come from the config,
//! statuses are HTTP codes, rules are the detector's.

use crate::usage::UsageRecord;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

/// Distinct key ids with their own label values; later keys count as `other`.
pub const MAX_KEY_LABELS: usize = 1000;
/// Distinct model names with their own label values (a glob in the config
/// admits any suffix); later models count as `other`.
pub const MAX_MODEL_LABELS: usize = 200;

/// The label value for what is over a bound.
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: String,
    model: String,
    status: u16,
    key_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum TokenKind {
    input,
    output,
    cached_input,
    cache_write,
    reasoning,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    key_id: String,
    kind: TokenKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpendLabels {
    provider: String,
    model: String,
    key_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    /// `requests`, `tokens`, `concurrency` or `budget`.
    limit: String,
    /// `key`, `owner` or `environment`.
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedactionLabels {
    rule: String,
    direction: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    provider: String,
    /// `unreachable`, `timeout` or the provider's status class (`5xx`, `4xx`).
    error: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.5 ms to about 65 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Gateway-added time buckets: 50 µs to about 200 ms.
fn added_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 13))
}

/// Bounded label values: the first `max` distinct values keep their name.
struct Bounded {
    seen: Mutex<HashSet<String>>,
    max: usize,
}

impl Bounded {
    fn new(max: usize) -> Bounded {
        Bounded {
            seen: Mutex::new(HashSet::new()),
            max,
        }
    }

    fn label(&self, value: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value.to_string();
        }
        OTHER.to_string()
    }
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<ProviderLabels>,
    added_seconds: HistogramFamily<ProviderLabels>,
    tokens: Family<TokenLabels, Counter>,
    spend: Family<SpendLabels, Counter<f64, AtomicU64>>,
    incomplete: Family<ProviderLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    redactions: Family<RedactionLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    upstream_up: Family<ProviderLabels, Gauge>,
    store_up: Gauge,
    generation: Gauge,
    keys: Bounded,
    models: Bounded,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Seconds from a change's commit in the store to a server serving it.
pub const CHANGE_LAG: &str = "change_apply_seconds";

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::following(Histogram::new(exponential_buckets(0.001, 2.0, 14)))
    }

    /// The metrics, with `change_lag` (the key directory's, see
    /// [`crate::state::Live::change_lag`]) served as [`CHANGE_LAG`].
    pub fn following(change_lag: Histogram) -> Metrics {
        let mut registry = Registry::with_prefix("keyward");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests answered, by provider, model, status and key id",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<ProviderLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time to answer a request's headers, by provider",
            request_seconds.clone(),
        );
        let added_seconds: HistogramFamily<ProviderLabels> =
            Family::new_with_constructor(added_histogram);
        registry.register(
            "gateway_added_seconds",
            "Time the gateway added to a request: its whole time minus the provider's time to answer headers",
            added_seconds.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens metered, by provider, model, key id and kind",
            tokens.clone(),
        );
        let spend = Family::<SpendLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "spend_dollars",
            "Spend metered at the price table, in US dollars",
            spend.clone(),
        );
        let incomplete = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "incomplete_usage",
            "Responses that ended before their usage was reported (tokens are a lower bound)",
            incomplete.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "limit_refusals",
            "Requests refused by a rate, token, concurrency or budget limit",
            refusals.clone(),
        );
        let redactions = Family::<RedactionLabels, Counter>::default();
        registry.register(
            "secrets_found",
            "Secrets found in traffic, by rule, direction and what was done",
            redactions.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts",
            "Alerts raised, by kind and severity",
            alerts.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Provider calls that failed or answered with an error",
            upstream_errors.clone(),
        );
        let upstream_up = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 while a provider's last call was answered (below 500), 0 after it was unreachable, timed out or answered 5xx",
            upstream_up.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 while the key directory is fresh from the store, 0 while it may be stale",
            store_up.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "store_generation",
            "The store generation this server serves",
            generation.clone(),
        );
        registry.register(
            CHANGE_LAG,
            "Time from a change's commit in the store (a key revoked, suspended, rotated, created; a credential rotated) to this server serving it",
            change_lag,
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            added_seconds,
            tokens,
            spend,
            incomplete,
            refusals,
            redactions,
            alerts,
            upstream_errors,
            upstream_up,
            store_up,
            generation,
            keys: Bounded::new(MAX_KEY_LABELS),
            models: Bounded::new(MAX_MODEL_LABELS),
        }
    }

    /// One answered request. `upstream` is the provider's time to answer, when
    /// the request reached it.
    pub fn request(&self, answered: &Answered<'_>) {
        let provider = answered.provider.unwrap_or("-").to_string();
        self.requests
            .get_or_create(&RequestLabels {
                provider: provider.clone(),
                model: answered
                    .model
                    .map_or_else(|| "-".to_string(), |m| self.models.label(m)),
                status: answered.status,
                key_id: answered
                    .key_id
                    .map_or_else(|| "-".to_string(), |k| self.keys.label(k)),
            })
            .inc();
        let labels = ProviderLabels { provider };
        self.request_seconds
            .get_or_create(&labels)
            .observe(answered.elapsed.as_secs_f64());
        if let Some(up) = answered.upstream {
            self.added_seconds
                .get_or_create(&labels)
                .observe(answered.elapsed.saturating_sub(up).as_secs_f64());
        }
    }

    /// The usage of one request, as the meter recorded it.
    pub fn usage(&self, r: &UsageRecord) {
        let model = self.models.label(&r.model);
        let key_id = self.keys.label(&r.key_id);
        for (kind, n) in [
            (TokenKind::input, r.usage.input),
            (TokenKind::output, r.usage.output),
            (TokenKind::cached_input, r.usage.cached_input),
            (TokenKind::cache_write, r.usage.cache_write),
            (TokenKind::reasoning, r.usage.reasoning),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        provider: r.provider.clone(),
                        model: model.clone(),
                        key_id: key_id.clone(),
                        kind,
                    })
                    .inc_by(n);
            }
        }
        if let Some(pico) = r.cost_pico.filter(|c| *c > 0) {
            self.spend
                .get_or_create(&SpendLabels {
                    provider: r.provider.clone(),
                    model,
                    key_id,
                })
                .inc_by(pico as f64 / crate::prices::PICO_PER_DOLLAR as f64);
        }
        if !r.complete {
            self.incomplete
                .get_or_create(&ProviderLabels {
                    provider: r.provider.clone(),
                })
                .inc();
        }
    }

    /// A request refused by a limit (`requests`, `tokens`, `concurrency`,
    /// `budget`) of a `key`, `owner` or `environment`.
    pub fn refused(&self, limit: &str, scope: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                limit: limit.to_string(),
                scope: scope.to_string(),
            })
            .inc();
    }

    /// Secrets found in traffic: `count` of `rule`.
    pub fn secrets_found(&self, rule: &str, direction: &str, action: &str, count: u64) {
        self.redactions
            .get_or_create(&RedactionLabels {
                rule: rule.to_string(),
                direction: direction.to_string(),
                action: action.to_string(),
            })
            .inc_by(count);
    }

    pub fn alert(&self, kind: &str, severity: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                kind: kind.to_string(),
                severity: severity.to_string(),
            })
            .inc();
    }

    /// A provider call that failed: `unreachable`, `timeout`, `4xx` or `5xx`.
    pub fn upstream_error(&self, provider: &str, error: &str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                provider: provider.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// How a provider's last call went: answered below 500 (`true`), or not.
    pub fn upstream_answered(&self, provider: &str, up: bool) {
        self.upstream_up
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .set(i64::from(up));
    }

    /// The store's state as this server sees it.
    pub fn store(&self, fresh: bool, generation: i64) {
        self.store_up.set(i64::from(fresh));
        self.generation.set(generation);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A usage sink that counts each record in the metrics on its way to `inner`.
pub struct CountingSink {
    pub metrics: std::sync::Arc<Metrics>,
    pub inner: std::sync::Arc<dyn crate::usage::UsageSink>,
}

impl crate::usage::UsageSink for CountingSink {
    fn record(&self, r: UsageRecord) {
        self.metrics.usage(&r);
        self.inner.record(r);
    }
}

/// One answered request, for [`Metrics::request`].
pub struct Answered<'a> {
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub status: u16,
    pub elapsed: Duration,
    pub upstream: Option<Duration>,
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_counts_are_exposed() {
        let m = Metrics::new();
        for i in 0..MAX_KEY_LABELS + 5 {
            m.request(&Answered {
                provider: Some("openai"),
                model: Some("gpt-4o-mini"),
                key_id: Some(&format!("key_{i}")),
                status: 200,
                elapsed: Duration::from_millis(3),
                upstream: Some(Duration::from_millis(2)),
            });
        }
        let text = m.encode();
        assert!(text.contains(
            r#"keyward_requests_total{provider="openai",model="gpt-4o-mini",status="200",key_id="other"} 5"#
        ), "{text}");
        assert!(text.contains(r#"key_id="key_0"} 1"#));
        assert!(text.contains("keyward_gateway_added_seconds_count{provider=\"openai\"} 1005"));
        assert!(text.ends_with("# EOF\n"));
    }
}
