//! The gateway's configuration file.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:4000"
//! [store]
//! url = "sqlite://keyward.db"
//! [vault]
//! master_key_file = "master.key"       # or master_key_env / master_key_command
//! [[providers]]
//! name = "openai"
//! kind = "openai"                      # openai | anthropic | gemini | openai-compatible | azure-openai
//! base_url = "https://api.openai.com/v1"
//! credential = { prod = "openai-prod", dev = "openai-dev" }   # or one vault name for all
//! models = ["gpt-4o-mini", "gpt-4o"]
//! redaction = { inbound = "block" }    # optional, per provider
//! [redaction]                          # optional: redact | block | alert | off
//! inbound = "redact"
//! outbound = "redact"
//! ```
//! Relative paths (store file, master key file) resolve against the config file's
//! directory, so a config works from any working directory.

mod console;
pub mod identity;
pub use console::ConsoleSettings;

use keyward_vault::MasterKeySource;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Limits for every key of an owner or of an environment (`[[limits]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// Spend per UTC day and per UTC month, in US dollars.
    #[serde(default)]
    pub daily_budget: Option<f64>,
    #[serde(default)]
    pub monthly_budget: Option<f64>,
}

/// US dollars as pico-dollars, for budgets; `None` for a non-positive or
/// absurd amount.
pub fn budget_pico(usd: f64) -> Option<i64> {
    (usd > 0.0 && usd <= 1e6).then(|| (usd * crate::prices::PICO_PER_DOLLAR as f64).round() as i64)
}

/// Limits by owner and by environment, from `[[limits]]`.
pub type ScopeLimits = (
    std::collections::HashMap<String, crate::limits::Limits>,
    std::collections::HashMap<String, crate::limits::Limits>,
);

/// How to name a config on a `keyward` command line (see [`Config::command`]).
#[derive(Debug, Clone, Default)]
pub struct CommandHint {
    source: Option<PathBuf>,
    base_dir: PathBuf,
}

impl CommandHint {
    /// `keyward ARGS` aimed at the same store as this config.
    pub fn command(&self, args: &str) -> String {
        match &self.source {
            Some(file) => format!("keyward {args} --config {}", shell_quote(file)),
            None => format!(
                "KEYWARD_HOME={} keyward {args}",
                shell_quote(&self.base_dir)
            ),
        }
    }
}

/// A vault secret the config names that the store does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCredential {
    pub name: String,
    /// The providers that need it (with the environment, for per-environment ones).
    pub used_by: Vec<String>,
}

/// `path` as a POSIX shell word: unchanged when it is made of safe characters,
/// single-quoted otherwise.
pub fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b':' | b'@' | b'=')
        });
    if safe {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Why a configuration was refused. Each message names the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Gemini,
    OpenaiCompatible,
    AzureOpenai,
}

/// Which vault secret a provider uses, per client-key environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CredentialRef {
    /// One vault secret for every environment.
    Shared(String),
    /// Environment name → vault secret name. Environments not listed get nothing.
    PerEnvironment(BTreeMap<String, String>),
}

impl CredentialRef {
    /// The vault secret for keys of `env`, if any.
    pub fn for_env(&self, env: &str) -> Option<&str> {
        match self {
            CredentialRef::Shared(n) => Some(n),
            CredentialRef::PerEnvironment(m) => m.get(env).map(String::as_str),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        match self {
            CredentialRef::Shared(n) => vec![n.as_str()],
            CredentialRef::PerEnvironment(m) => m.values().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// API root as the provider's own SDK takes it: with `/v1` for OpenAI-style
    /// providers, without a version segment for Anthropic and Gemini, ending in
    /// `/openai` for Azure OpenAI.
    pub base_url: String,
    pub credential: CredentialRef,
    /// Model name globs (`*` matches any run of characters) routed to this provider.
    pub models: Vec<String>,
    /// Azure OpenAI `api-version` query value.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Upstream timeout in seconds for the whole response (default 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Redaction policy for traffic to and from this provider; overrides the
    /// server's `[redaction]`, overridden by a key's own.
    #[serde(default)]
    pub redaction: crate::redact::PolicyConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS (rustls).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes (default 10 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request's header, counted from the
    /// connection's start or the end of the previous response (default 10): bounds
    /// slow headers and idle keep-alive connections alike.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a connection may go without starting a request before it is closed
    /// (default 60; HTTP/2 included). A response still streaming finishes first.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Seconds a request body may pause between two pieces (default 15).
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout_secs: u64,
    /// Seconds the whole request body may take to arrive (default 60).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Most client connections held at once; further clients wait to be accepted.
    /// Default: what the open-file limit allows with room for upstream calls.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Load balancers and proxies (`10.0.0.0/8`, `192.0.2.10/32`…) whose
    /// `X-Forwarded-For` names the client (see [`crate::forwarded`]); requests
    /// from anywhere else are taken as coming from their peer address.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

fn default_header_timeout() -> u64 {
    10
}

fn default_idle_timeout() -> u64 {
    60
}

fn default_body_idle_timeout() -> u64 {
    15
}

fn default_body_timeout() -> u64 {
    60
}

/// Longest timeout accepted in `[server]` (a day): longer is a typo, and would
/// keep a connection open past any sane deployment's patience.
const MAX_TIMEOUT_SECS: u64 = 86_400;

impl ServerSection {
    /// The connection bounds this section sets (validated when the config loads).
    pub fn conn_limits(&self) -> crate::conn::ConnLimits {
        let secs = std::time::Duration::from_secs;
        crate::conn::ConnLimits {
            header_timeout: secs(self.header_timeout_secs),
            idle_timeout: secs(self.idle_timeout_secs),
            body_idle_timeout: secs(self.body_idle_timeout_secs),
            body_timeout: secs(self.body_timeout_secs),
            max_connections: self
                .max_connections
                .unwrap_or_else(crate::conn::connections_allowed_by_fd_limit),
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("body_idle_timeout_secs", self.body_idle_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
        ] {
            if v == 0 || v > MAX_TIMEOUT_SECS {
                return Err(format!(
                    "[server] {name} = {v}: use a number of seconds from 1 to {MAX_TIMEOUT_SECS}"
                ));
            }
        }
        if self.max_connections == Some(0) {
            return Err("[server] max_connections = 0: use at least 1, or leave it out".into());
        }
        for p in &self.trusted_proxies {
            p.parse::<ipnet::IpNet>().map_err(|_| {
                format!("[server] trusted_proxies: `{p}` is not a network (write 10.0.0.0/8 or 192.0.2.10/32)")
            })?;
        }
        Ok(())
    }

    /// `trusted_proxies`, parsed (validated when the config is loaded).
    pub fn trusted_proxy_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:4000".parse().expect("valid address")
}

fn default_max_body() -> usize {
    10 << 20
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: default_max_body(),
            header_timeout_secs: default_header_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            body_idle_timeout_secs: default_body_idle_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://FILE` (relative to the config's directory) or `postgres://…`.
    #[serde(default)]
    pub url: String,
    /// The name of an environment variable holding the URL instead (a
    /// password stays out of the file); read when the config is loaded.
    #[serde(default)]
    pub url_env: Option<String>,
}

impl Default for StoreSection {
    /// SQLite in `keyward.db` beside the config file.
    fn default() -> Self {
        StoreSection {
            url: "sqlite://keyward.db".into(),
            url_env: None,
        }
    }
}

/// Where alerts go (they are always logged too).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// URL that receives each alert as a JSON POST.
    pub webhook_url: Option<String>,
    /// Vault secret whose value signs each webhook POST (`keyward-signature`).
    pub signing_secret: Option<String>,
    /// Vault secret holding a Slack-compatible incoming-webhook URL.
    pub slack_webhook: Option<String>,
    /// One alert per key and kind in this long (`10m` when absent).
    pub dedupe: Option<String>,
}

impl AlertsSection {
    /// The dedupe window in milliseconds (validated when the config is loaded).
    pub fn dedupe_ms(&self) -> i64 {
        self.dedupe
            .as_deref()
            .and_then(crate::time::parse_lifetime)
            .flatten()
            .map_or(DEFAULT_DEDUPE_MS, |d| d.as_millis() as i64)
    }
}

/// Default alert dedupe window: one alert per key and kind in this long.
pub const DEFAULT_DEDUPE_MS: i64 = 10 * 60 * 1000;

/// Anomaly detectors (`[watch]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// `false` turns every detector off (no networks, hours or budgets are
    /// watched; other alerts still go out). On when absent.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How long a key is watched before its first anomaly alert: its habits
    /// (networks, hours, volume) are learned meanwhile. `24h` when absent.
    #[serde(default = "default_warmup")]
    pub warmup: String,
    /// Failed authentications from one address within a minute that raise an
    /// alert.
    #[serde(default = "default_failed_auth_burst")]
    pub failed_auth_burst: u32,
    /// A MaxMind-format country database (GeoLite2-Country, GeoIP2-Country):
    /// with it, a key used from a new country raises an alert.
    #[serde(default)]
    pub geoip_db: Option<PathBuf>,
    /// `alert` (the default): anomalies raise alerts; `suspend`: a key with a
    /// request spike or a request from a new country is also suspended, the
    /// alert as its reason.
    #[serde(default)]
    pub on_anomaly: OnAnomaly,
}

/// What a severe anomaly does to its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAnomaly {
    #[default]
    Alert,
    Suspend,
}

impl OnAnomaly {
    pub fn name(self) -> &'static str {
        match self {
            OnAnomaly::Alert => "alert",
            OnAnomaly::Suspend => "suspend",
        }
    }
}

impl std::str::FromStr for OnAnomaly {
    type Err = String;
    fn from_str(s: &str) -> Result<OnAnomaly, String> {
        match s {
            "alert" => Ok(OnAnomaly::Alert),
            "suspend" => Ok(OnAnomaly::Suspend),
            other => Err(format!("`{other}` is not a policy: use alert or suspend")),
        }
    }
}

fn default_enabled() -> bool {
    true
}

fn default_warmup() -> String {
    "24h".into()
}

fn default_failed_auth_burst() -> u32 {
    20
}

impl Default for WatchSection {
    fn default() -> Self {
        WatchSection {
            enabled: true,
            warmup: default_warmup(),
            failed_auth_burst: default_failed_auth_burst(),
            on_anomaly: OnAnomaly::Alert,
            geoip_db: None,
        }
    }
}

impl WatchSection {
    /// The warm-up in milliseconds (validated when the config is loaded).
    pub fn warmup_ms(&self) -> i64 {
        crate::time::parse_lifetime(&self.warmup)
            .flatten()
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// The operators' listener: `/metrics` and the admin API, apart from clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener (plain HTTP; keep it on loopback or a
    /// private network). When set, the admin API is served only here, not on
    /// the client port; `/metrics` is served only here in any case.
    pub listen: Option<std::net::SocketAddr>,
    /// Serve the web console at `/console` beside the admin API (default true).
    #[serde(default = "yes")]
    pub console: bool,
    /// How long a console sign-in lasts at most (default 8h).
    #[serde(default)]
    pub console_session: Option<String>,
    /// A console session unused this long ends (default 30m).
    #[serde(default)]
    pub console_idle: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: None,
            console: true,
            console_session: None,
            console_idle: None,
        }
    }
}

impl AdminSection {
    /// The console's session lifetimes: (absolute, idle), validated at load.
    pub fn console_lifetimes(&self) -> (std::time::Duration, std::time::Duration) {
        let read = |v: &Option<String>, default: u64| {
            v.as_deref()
                .and_then(crate::time::parse_lifetime)
                .flatten()
                .unwrap_or(std::time::Duration::from_secs(default))
        };
        (
            read(&self.console_session, 8 * 3600),
            read(&self.console_idle, 30 * 60),
        )
    }
}

/// The value of the environment variable `var` names, for `what` (`None`
/// when no variable is named); an error when it is unset or empty, or when
/// the value is also given directly (`direct`).
fn from_env(what: &str, var: &Option<String>, direct: bool) -> Result<Option<String>, String> {
    let Some(var) = var else {
        return Ok(None);
    };
    if direct {
        return Err(format!("{what}: give the value or `{what}_env`, not both"));
    }
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
        _ => Err(format!(
            "{what}_env names ${var}, which is not set in this environment: set it, or give {what} directly"
        )),
    }
}

/// Several replicas sharing counters (see [`crate::cluster`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `redis://host:6379`: rate, token and concurrency counters and budget
    /// reservations live there, shared by every replica. Unset: in this process.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The name of an environment variable holding `redis_url` instead.
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// Starts every key Keyward writes in Redis (several deployments can share
    /// one Redis with different prefixes).
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

fn default_redis_prefix() -> String {
    "keyward:".into()
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis_url: None,
            redis_url_env: None,
            key_prefix: default_redis_prefix(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    pub master_key_file: Option<PathBuf>,
    pub master_key_env: Option<String>,
    pub master_key_command: Option<String>,
    /// Rotation policy: a credential whose newest version is older than this
    /// (`90d`, `12h`…) raises an alert and shows as overdue in `vault list`.
    #[serde(default)]
    pub max_age: Option<String>,
}

impl VaultSection {
    /// `max_age` as a duration (validated when the config is loaded).
    pub fn max_age(&self) -> Option<std::time::Duration> {
        self.max_age
            .as_deref()
            .and_then(crate::time::parse_lifetime)
            .flatten()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub vault: VaultSection,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub watch: WatchSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    /// Trusted OIDC / JWT issuers (`[[identity.issuers]]`).
    #[serde(default)]
    pub identity: identity::IdentitySection,
    /// What to do with secrets in traffic (`inbound`, `outbound`: redact, block,
    /// alert or off); redact both ways when absent.
    #[serde(default)]
    pub redaction: crate::redact::PolicyConfig,
    /// Directory relative paths resolve against.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Limits per owner and per environment (`[[limits]]`).
    #[serde(default)]
    pub limits: Vec<LimitRule>,
    /// Prices added to or overriding the shipped table (`[[prices]]`).
    #[serde(default)]
    pub prices: Vec<crate::prices::ConfigPrice>,
    /// The file this config was read from (absolute); `None` for the embedded
    /// default. Hints name it so that following them reaches the same store.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config::parse(&text, &base).map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })?;
        config.source = Some(path);
        Ok(config)
    }

    /// The shell command that runs `keyward ARGS` against this same store: with
    /// `--config FILE` for a config file, with `KEYWARD_HOME=DIR` for the embedded
    /// default. Paths are quoted for a POSIX shell when they need it.
    pub fn command(&self, args: &str) -> String {
        self.hint().command(args)
    }

    /// What [`Config::command`] needs, to keep beside a running server.
    pub fn hint(&self) -> CommandHint {
        CommandHint {
            source: self.source.clone(),
            base_dir: self.base_dir.clone(),
        }
    }

    /// Every vault secret the providers reference that `present` says is not
    /// stored, with the providers and environments that need it.
    pub fn missing_credentials(&self, present: impl Fn(&str) -> bool) -> Vec<MissingCredential> {
        let mut out: Vec<MissingCredential> = Vec::new();
        for p in &self.providers {
            let needs: Vec<(Option<&str>, &str)> = match &p.credential {
                CredentialRef::Shared(n) => vec![(None, n.as_str())],
                CredentialRef::PerEnvironment(m) => m
                    .iter()
                    .map(|(e, n)| (Some(e.as_str()), n.as_str()))
                    .collect(),
            };
            for (env, name) in needs {
                if present(name) {
                    continue;
                }
                let used_by = match env {
                    Some(e) => format!("{} (environment {e})", p.name),
                    None => p.name.clone(),
                };
                match out.iter_mut().find(|m| m.name == name) {
                    Some(m) => m.used_by.push(used_by),
                    None => out.push(MissingCredential {
                        name: name.to_string(),
                        used_by: vec![used_by],
                    }),
                }
            }
        }
        out
    }

    /// The embedded default: SQLite and a master key file in `dir`, no providers.
    pub fn embedded(dir: &Path) -> Config {
        Config {
            server: ServerSection::default(),
            store: StoreSection {
                url: format!("sqlite://{}", dir.join("keyward.db").display()),
                url_env: None,
            },
            vault: VaultSection {
                master_key_file: Some(dir.join("master.key")),
                ..Default::default()
            },
            providers: Vec::new(),
            alerts: AlertsSection::default(),
            admin: AdminSection::default(),
            cluster: ClusterSection::default(),
            identity: Default::default(),
            watch: WatchSection::default(),
            redaction: Default::default(),
            base_dir: dir.to_path_buf(),
            prices: Vec::new(),
            limits: Vec::new(),
            source: None,
        }
    }

    /// Parses config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.base_dir = base_dir.to_path_buf();
        if let Some(url) = from_env("[store] url", &c.store.url_env, !c.store.url.is_empty())? {
            c.store.url = url;
        }
        if c.store.url.is_empty() {
            return Err("[store] needs `url` (sqlite://FILE or postgres://…) or `url_env`".into());
        }
        if let Some(url) = from_env(
            "[cluster] redis_url",
            &c.cluster.redis_url_env,
            c.cluster.redis_url.is_some(),
        )? {
            c.cluster.redis_url = Some(url);
        }
        if let Some(rest) = c.store.url.strip_prefix("sqlite://") {
            let p = Path::new(rest.split('?').next().unwrap_or(rest));
            if p.is_relative() && !rest.starts_with(':') {
                c.store.url = format!("sqlite://{}", base_dir.join(rest).display());
            }
        }
        for p in [&mut c.server.tls_cert, &mut c.server.tls_key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        }
        if let Some(p) = &c.vault.master_key_file {
            if p.is_relative() {
                c.vault.master_key_file = Some(base_dir.join(p));
            }
        }
        for i in &mut c.identity.issuers {
            if let Some(p) = &i.jwks_file {
                if p.is_relative() {
                    i.jwks_file = Some(base_dir.join(p));
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        let sources = [
            self.vault.master_key_file.is_some(),
            self.vault.master_key_env.is_some(),
            self.vault.master_key_command.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(
                "[vault]: set only one of master_key_file, master_key_env, master_key_command"
                    .into(),
            );
        }
        if let Some(a) = &self.vault.max_age {
            if !matches!(crate::time::parse_lifetime(a), Some(Some(_))) {
                return Err(format!(
                    "[vault] max_age = \"{a}\": use a duration such as 90d, 12h or 30m"
                ));
            }
        }
        for (field, value) in [
            ("console_session", &self.admin.console_session),
            ("console_idle", &self.admin.console_idle),
        ] {
            if let Some(v) = value {
                if !matches!(crate::time::parse_lifetime(v), Some(Some(_))) {
                    return Err(format!(
                        "[admin] {field} = \"{v}\": use a duration such as 8h, 30m or 90s"
                    ));
                }
            }
        }
        if let Some(d) = &self.alerts.dedupe {
            if !matches!(crate::time::parse_lifetime(d), Some(Some(_))) {
                return Err(format!(
                    "[alerts] dedupe = \"{d}\": use a duration such as 10m, 1h or 30s"
                ));
            }
        }
        let w = &self.watch.warmup;
        if !(w == "0s" || matches!(crate::time::parse_lifetime(w), Some(Some(_)))) {
            return Err(format!(
                "[watch] warmup = \"{w}\": use a duration such as 24h, 7d or 0s (alert from the first day)"
            ));
        }
        if self.watch.failed_auth_burst == 0 {
            return Err("[watch] failed_auth_burst = 0: use at least 1".into());
        }
        self.server.validate()?;
        self.identity.validate()?;
        crate::prices::PriceTable::with_config(&self.prices)?;
        self.owner_and_environment_limits()?;
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err("[server]: set both tls_cert and tls_key, or neither".into());
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            if !names.insert(p.name.as_str()) {
                return Err(format!(
                    "two providers are named `{}`; names must be unique",
                    p.name
                ));
            }
            let url = reqwest::Url::parse(&p.base_url).map_err(|e| {
                format!(
                    "provider `{}`: base_url `{}` is not a URL ({e})",
                    p.name, p.base_url
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "provider `{}`: base_url must be an http(s) URL with a host",
                    p.name
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(format!(
                    "provider `{}`: base_url must not carry a query or fragment",
                    p.name
                ));
            }
            if p.models.is_empty() {
                return Err(format!("provider `{}`: list the models it serves in `models` (globs allowed, e.g. \"gpt-4o*\")", p.name));
            }
            if p.kind == ProviderKind::AzureOpenai && p.api_version.is_none() {
                return Err(format!(
                    "provider `{}`: azure-openai needs `api_version` (e.g. \"2024-10-21\")",
                    p.name
                ));
            }
        }
        Ok(())
    }

    /// `[[limits]]` as maps from owner and from environment to their limits,
    /// checked: each rule names exactly one owner or environment, once, and at
    /// least one positive limit.
    pub fn owner_and_environment_limits(&self) -> Result<ScopeLimits, String> {
        let (mut owners, mut envs) = ScopeLimits::default();
        for r in &self.limits {
            let usd = |v: Option<f64>| -> Result<Option<i64>, String> {
                v.map(|d| {
                    budget_pico(d).ok_or_else(|| {
                        format!("[[limits]]: a budget of {d} is not a positive number of dollars")
                    })
                })
                .transpose()
            };
            let limits = crate::limits::Limits {
                rpm: r.rpm,
                tpm: r.tpm,
                concurrency: r.concurrency,
                daily_budget: usd(r.daily_budget)?,
                monthly_budget: usd(r.monthly_budget)?,
            };
            if (limits.is_empty() && limits.budget().is_empty())
                || [r.rpm, r.tpm, r.concurrency].contains(&Some(0))
            {
                return Err(
                    "[[limits]]: give rpm, tpm, concurrency (positive numbers), daily_budget or monthly_budget (dollars)".into(),
                );
            }
            let (map, name) = match (&r.owner, &r.environment) {
                (Some(o), None) => (&mut owners, o),
                (None, Some(e)) => (&mut envs, e),
                _ => {
                    return Err(
                        "[[limits]]: each rule names either `owner` or `environment`".into(),
                    )
                }
            };
            if map.insert(name.clone(), limits).is_some() {
                return Err(format!("[[limits]]: `{name}` has two rules; merge them"));
            }
        }
        Ok((owners, envs))
    }

    /// The SQLite database file, when the store is SQLite on disk.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.store.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && !path.starts_with(':')).then(|| PathBuf::from(path))
    }

    /// The store's location for messages: the SQLite file, or the database URL
    /// with any password left out.
    pub fn store_location(&self) -> String {
        if let Some(p) = self.sqlite_path() {
            return p.display().to_string();
        }
        match reqwest::Url::parse(&self.store.url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "the configured [store] url".into(),
        }
    }

    /// Where the master key comes from (the embedded default: a file beside the store).
    pub fn master_key_source(&self) -> MasterKeySource {
        if let Some(v) = &self.vault.master_key_env {
            MasterKeySource::Env(v.clone())
        } else if let Some(c) = &self.vault.master_key_command {
            MasterKeySource::Command(c.clone())
        } else {
            MasterKeySource::File(
                self.vault
                    .master_key_file
                    .clone()
                    .unwrap_or_else(|| self.base_dir.join("master.key")),
            )
        }
    }
}

/// `*`-glob match (no other metacharacters): model names are plain identifiers.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_settings_default_and_bad_lifetimes_say_what_to_write() {
        let c = Config::parse("", Path::new("/")).unwrap();
        assert!(c.admin.console);
        let s = super::ConsoleSettings::from_config(&c);
        assert_eq!((s.session.as_secs(), s.idle.as_secs()), (8 * 3600, 30 * 60));
        let c = Config::parse(
            "[admin]\nconsole = false\nconsole_session = \"1h\"\nconsole_idle = \"5m\"\n",
            Path::new("/"),
        )
        .unwrap();
        let s = super::ConsoleSettings::from_config(&c);
        assert!(!s.enabled);
        assert_eq!((s.session.as_secs(), s.idle.as_secs()), (3600, 300));
        let e = Config::parse("[admin]\nconsole_idle = \"soon\"\n", Path::new("/")).unwrap_err();
        assert!(e.contains("console_idle") && e.contains("30m"), "{e}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("claude-*-latest", "claude-3-5-sonnet-latest"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(!glob_match("gpt-4o*", "gpt-4"));
    }

    #[test]
    fn parses_the_documented_example_and_resolves_paths() {
        let c = Config::parse(
            r#"
[server]
listen = "127.0.0.1:4000"
[store]
url = "sqlite://keyward.db"
[vault]
master_key_file = "master.key"
[[providers]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
credential = { prod = "openai-prod", dev = "openai-dev" }
models = ["gpt-4o-mini", "gpt-4o"]
"#,
            Path::new("/etc/keyward"),
        )
        .unwrap();
        assert_eq!(c.store.url, "sqlite:///etc/keyward/keyward.db");
        assert_eq!(c.providers[0].credential.for_env("dev"), Some("openai-dev"));
        assert_eq!(c.providers[0].credential.for_env("test"), None);
        assert_eq!(
            c.master_key_source(),
            MasterKeySource::File("/etc/keyward/master.key".into())
        );
    }

    #[test]
    fn the_reference_deployment_configs_parse() {
        let compose = Config::parse(
            include_str!("../../../../deploy/keyward.toml"),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            compose.cluster.redis_url.as_deref(),
            Some("redis://redis:6379/")
        );
        assert!(compose.store.url.starts_with("postgres://"));
        // The Kubernetes ConfigMap's copy, its store URL from the environment.
        let manifest = include_str!("../../../../deploy/kubernetes.yaml");
        let start = manifest.find("keyward.toml: |\n").unwrap() + "keyward.toml: |\n".len();
        let end = manifest[start..].find("\n---").unwrap() + start;
        let text: String = manifest[start..end]
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        std::env::set_var(
            "KEYWARD_STORE_URL",
            "postgres://keyward@postgres:5432/keyward",
        );
        let k8s = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(k8s.cluster.redis_url, compose.cluster.redis_url);
        assert_eq!(k8s.admin.listen, compose.admin.listen);
    }

    #[test]
    fn urls_can_come_from_the_environment() {
        std::env::set_var("KEYWARD_TEST_STORE_URL", "postgres://k@db:5432/k");
        std::env::set_var("KEYWARD_TEST_REDIS_URL", "redis://cache:6379/");
        let c = Config::parse(
            "[store]\nurl_env = \"KEYWARD_TEST_STORE_URL\"\n[cluster]\nredis_url_env = \"KEYWARD_TEST_REDIS_URL\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.store.url, "postgres://k@db:5432/k");
        assert_eq!(c.cluster.redis_url.as_deref(), Some("redis://cache:6379/"));
        let e = Config::parse(
            "[store]\nurl_env = \"KEYWARD_TEST_UNSET_VAR\"\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            e.contains("KEYWARD_TEST_UNSET_VAR") && e.contains("not set"),
            "{e}"
        );
        let e = Config::parse(
            "[store]\nurl = \"sqlite://x\"\nurl_env = \"KEYWARD_TEST_STORE_URL\"\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = Config::parse("[store]\n", Path::new("/")).unwrap_err();
        assert!(e.contains("url_env"), "{e}");
    }

    #[test]
    fn bad_configs_say_what_to_fix() {
        let e = Config::parse("[store]\nurl='sqlite://x'\n[[providers]]\nname='a'\nkind='openai'\nbase_url='ftp://x'\ncredential='c'\nmodels=['m']\n", Path::new("/")).unwrap_err();
        assert!(e.contains("http(s)"), "{e}");
        let e = Config::parse("[store]\nurl='sqlite://x'\n[[providers]]\nname='a'\nkind='azure-openai'\nbase_url='https://x/openai'\ncredential='c'\nmodels=['m']\n", Path::new("/")).unwrap_err();
        assert!(e.contains("api_version"), "{e}");
        let e = Config::parse("[store]\nurl='sqlite://x'\n[[providers]]\nname='a'\nkind='nope'\nbase_url='https://x'\ncredential='c'\nmodels=['m']\n", Path::new("/")).unwrap_err();
        assert!(e.contains("kind") || e.contains("variant"), "{e}");
    }
}
