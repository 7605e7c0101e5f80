//! What every request shares: the live key directory, the store, the audit and
//! alert sinks, the providers and the detector; and request ids.

use crate::provider::Provider;
use crate::state::Live;
use keyward_detect::Detector;
use keyward_vault::HashKey;
use std::sync::Arc;

/// Shared state of the request path.
pub struct Gateway {
    pub live: Arc<Live>,
    /// For admin API writes.
    pub backend: crate::state::Backend,
    /// Refused requests and admin reads go to the audit log through here.
    pub audit: crate::audit::Sink,
    pub alerts: crate::alerts::Alerter,
    pub hash_key: HashKey,
    pub providers: Vec<Provider>,
    /// Provider calls.
    pub client: crate::upstream_client::UpstreamClient,
    pub max_body: usize,
    pub detector: &'static Detector,
    /// Permits for screening large bodies on the blocking pool (one per core).
    pub screening: Arc<tokio::sync::Semaphore>,
    /// The server's `[redaction]` policy.
    pub redaction: crate::redact::PolicyConfig,
    /// Secrets found in traffic since start, per key and rule.
    pub redactions: crate::redact::Counters,
    /// How hints in the log name this server's config.
    pub commands: crate::config::CommandHint,
    /// When each key was last used, written to the store in batches.
    pub last_use: Arc<crate::last_use::LastUse>,
    /// Where each request's usage is recorded.
    pub usage: Arc<dyn crate::usage::UsageSink>,
    /// What tokens cost: the shipped table and the config's `[[prices]]`.
    pub prices: crate::prices::PriceTable,
    /// Spend budgets: reservations and what was spent per day and month.
    pub ledger: Arc<dyn crate::budget::BudgetLedger>,
    /// Anomaly detectors (new source networks, failed-login bursts).
    pub watch: Arc<crate::watch::Watch>,
    /// Prometheus metrics (served on the admin listener).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Scrubbers for credentials echoed in answers, reused across requests.
    pub echoes: crate::echo::EchoCache,
    /// Rate, token and concurrency limits.
    pub limiter: Arc<dyn crate::limits::Limiter>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `[[limits]]` by owner and by environment.
    pub owner_limits: std::collections::HashMap<String, crate::limits::Limits>,
    pub environment_limits: std::collections::HashMap<String, crate::limits::Limits>,
    /// Trusted token issuers (`[[identity.issuers]]`).
    pub identities: Arc<crate::identity::Identities>,
    /// Origins some issuer allows: preflights from them are answered.
    pub cors_origins: std::collections::HashSet<String>,
    /// What the admin console shows and how long its sessions last.
    pub console: crate::config::ConsoleSettings,
}

impl Gateway {
    /// A vault secret's bytes from the live snapshot (an HS256 issuer's key).
    pub fn vault_bytes(&self, name: &str) -> Option<Vec<u8>> {
        use keyward_vault::ExposeSecret;
        self.live
            .snapshot
            .load()
            .credential(name)
            .map(|s| s.expose_secret().as_bytes().to_vec())
    }
}

/// A request id: unique, unguessable, safe to show.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    // A random per-process prefix and a counter: unique across replicas and
    // restarts, and no system call on the request path.
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| keyward_vault::random_base62(10));
    format!(
        "req_{prefix}{:010x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
