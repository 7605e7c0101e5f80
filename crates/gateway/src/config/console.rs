//! What the admin console needs from the config: session lifetimes, the
//! credential rotation policy and which providers use each vault secret.

use super::{Config, CredentialRef};
use std::collections::BTreeMap;
use std::time::Duration;

/// The console's view of the config, built once at `serve`.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Whether `/console` is served (`[admin] console`, default true).
    pub enabled: bool,
    /// The most a sign-in lasts (`[admin] console_session`, default 8h).
    pub session: Duration,
    /// A session unused this long ends (`[admin] console_idle`, default 30m).
    pub idle: Duration,
    /// `[vault] max_age`: a credential older than this is overdue for rotation.
    pub vault_max_age: Option<Duration>,
    /// Vault secret name → the providers (and environments) that use it.
    pub credential_uses: BTreeMap<String, Vec<String>>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            session: Duration::from_secs(8 * 3600),
            idle: Duration::from_secs(30 * 60),
            vault_max_age: None,
            credential_uses: BTreeMap::new(),
        }
    }
}

impl ConsoleSettings {
    pub fn from_config(config: &Config) -> ConsoleSettings {
        let (session, idle) = config.admin.console_lifetimes();
        let mut credential_uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &config.providers {
            match &p.credential {
                CredentialRef::Shared(n) => credential_uses
                    .entry(n.clone())
                    .or_default()
                    .push(format!("{} (every environment)", p.name)),
                CredentialRef::PerEnvironment(m) => {
                    for (env, n) in m {
                        credential_uses
                            .entry(n.clone())
                            .or_default()
                            .push(format!("{} (environment {env})", p.name));
                    }
                }
            }
        }
        ConsoleSettings {
            enabled: config.admin.console,
            session,
            idle,
            vault_max_age: config.vault.max_age(),
            credential_uses,
        }
    }
}
