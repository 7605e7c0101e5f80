//! Opening the store and vault, admin operations on them, and the in-memory
//! snapshot the request path reads (keys by hash, decrypted credentials).

use crate::config::Config;
use crate::keys::{self, KeyEntry};
use crate::time::{now, now_ms};
use arc_swap::ArcSwap;
use base64::Engine as _;
use keyward_store::{AdminKeyRecord, KeyRecord, Store};
use keyward_vault::{ExposeSecret, HashKey, MasterKey, Sealed, SecretString};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Errors opening or changing the store and vault.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] keyward_store::Error),
    #[error(transparent)]
    Vault(#[from] keyward_vault::Error),
    #[error("{0}")]
    Invalid(String),
    /// [`Backend::open_existing`] found no store where the config points.
    #[error("no Keyward store at {0}")]
    NoStore(String),
}

/// Whether opening may create what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the store and master key file when they do not exist (`serve`, `init`).
    CreateMissing,
    /// Fail with [`StateError::NoStore`] unless a store with a master key exists.
    ExistingOnly,
}

/// The store plus the keys that unlock it.
#[derive(Clone)]
pub struct Backend {
    pub store: Store,
    /// Swapped when a `vault rekey` (here or in another process) changes it.
    master: Arc<arc_swap::ArcSwap<MasterKey>>,
    master_source: keyward_vault::MasterKeySource,
    hash_key: HashKey,
    audit_key: HashKey,
    /// Who changes made through this handle are attributed to in the audit log.
    actor: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// Seal context for a vault secret: binds the ciphertext to its name.
fn secret_context(name: &str) -> String {
    format!("secret:{name}")
}

/// Vault secret names: what a config can reference without quoting trouble.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.bytes().all(|b| b == b'.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Backend {
    /// Opens the store (running migrations) and the vault. A master key file that
    /// does not exist yet is created (mode 0600). The master key is checked against
    /// the value recorded at first use, so a wrong key fails here, not mid-request.
    pub async fn open(config: &Config) -> Result<(Backend, bool), StateError> {
        Self::open_with(config, OpenMode::CreateMissing).await
    }

    /// Opens a store that must exist already: a SQLite file that is missing, or a
    /// database never initialised by `keyward serve` / `keyward init`, is
    /// [`StateError::NoStore`] and nothing is created.
    pub async fn open_existing(config: &Config) -> Result<Backend, StateError> {
        Ok(Self::open_with(config, OpenMode::ExistingOnly).await?.0)
    }

    /// [`Backend::open`] or [`Backend::open_existing`]; true when a master key file
    /// was created.
    pub async fn open_with(config: &Config, mode: OpenMode) -> Result<(Backend, bool), StateError> {
        let existing = mode == OpenMode::ExistingOnly;
        if existing {
            if let Some(path) = config.sqlite_path() {
                if !path.is_file() {
                    return Err(StateError::NoStore(path.display().to_string()));
                }
            }
        }
        let store = Store::open(&config.store.url).await?;
        if existing && store.meta("master_key_check").await?.is_none() {
            return Err(StateError::NoStore(config.store_location()));
        }
        let master_source = config.master_key_source();
        let (master, created) = match &master_source {
            keyward_vault::MasterKeySource::File(p) if existing => {
                if !p.is_file() {
                    return Err(StateError::Invalid(format!(
                        "the store exists but its master key file {} is missing: restore it from your backup, or point [vault] master_key_file at it",
                        p.display()
                    )));
                }
                MasterKey::load_or_create_file(p)?
            }
            keyward_vault::MasterKeySource::File(p) => MasterKey::load_or_create_file(p)?,
            other => (MasterKey::load(other)?, false),
        };
        let check = store
            .meta_init("master_key_check", &master.check_value())
            .await?;
        let master = if check == master.check_value() {
            master
        } else {
            // A `vault rekey` interrupted after its commit left the new key beside
            // the old one: finish it.
            match crate::master_file::pending_key(&master_source, &check)? {
                Some((key, pending)) => {
                    crate::master_file::install_pending(&master_source, &pending)?;
                    key
                }
                None => return Err(StateError::Invalid(
                    "the master key does not match the one this store was created with; point [vault] at the right key".into(),
                )),
            }
        };
        let hash_key = sealed_meta_key(&store, &master, "client_key_hash_key").await?;
        let audit_key = sealed_meta_key(&store, &master, "audit_key").await?;
        let actor = format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        );
        Ok((
            Backend {
                store,
                master: Arc::new(arc_swap::ArcSwap::from_pointee(master)),
                master_source,
                hash_key,
                audit_key,
                actor,
            },
            created,
        ))
    }

    /// The master key the store is sealed under now. When a `vault rekey` has
    /// changed it since this process loaded it, the new key is loaded from the
    /// configured source (or the rekey's pending file) and used from then on.
    pub async fn current_master(&self) -> Result<Arc<MasterKey>, StateError> {
        let current = self.master.load_full();
        let Some(check) = self.store.meta("master_key_check").await? else {
            return Ok(current);
        };
        if check == current.check_value() {
            return Ok(current);
        }
        let fresh = MasterKey::load(&self.master_source)
            .ok()
            .filter(|k| k.check_value() == check);
        let fresh = match fresh {
            Some(k) => k,
            None => match crate::master_file::pending_key(&self.master_source, &check)? {
                Some((k, _)) => k,
                None => {
                    return Err(StateError::Invalid(
                        "the master key was rotated (vault rekey) and the configured source does not hold the new one; update [vault] and restart".into(),
                    ))
                }
            },
        };
        let fresh = Arc::new(fresh);
        self.master.store(fresh.clone());
        tracing::info!("master key rotated by `vault rekey`: now using the new one");
        Ok(fresh)
    }

    /// Master key rotation: re-wraps every data key (every version of every
    /// secret, and the keys sealed in the store's metadata) under `new`, in one
    /// transaction; no secret is decrypted. This process switches to `new` at
    /// once, other running servers within a poll interval. Returns the number of
    /// keys re-wrapped.
    pub async fn rekey(&self, new: MasterKey) -> Result<usize, StateError> {
        let old = self.current_master().await?;
        let mut audit = crate::audit::sealer_with(&self.audit_key, now(), |n| {
            vec![self.event(
                "vault.rekey",
                "master-key",
                serde_json::json!({"rewrapped": n}),
            )]
        });
        let n = self
            .store
            .rekey(
                &old.check_value(),
                &new.check_value(),
                &["client_key_hash_key", "audit_key"],
                |kind, name, wrapped| {
                    let context = if kind == "secret" {
                        secret_context(name)
                    } else {
                        name.to_string()
                    };
                    let sealed = Sealed {
                        wrapped_key: wrapped.to_vec(),
                        ciphertext: Vec::new(),
                    };
                    keyward_vault::rewrap(&old, &new, &context, &sealed)
                        .map(|s| s.wrapped_key)
                        .map_err(|e| format!("{kind} {name}: {e}"))
                },
                &mut audit,
            )
            .await?;
        self.master.store(Arc::new(new));
        Ok(n)
    }

    /// The same store and keys, with changes attributed to `actor`.
    pub fn as_actor(&self, actor: &str) -> Backend {
        Backend {
            actor: actor.to_string(),
            ..self.clone()
        }
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn audit_key(&self) -> &HashKey {
        &self.audit_key
    }

    /// Records events durably in the audit log.
    pub async fn audit(&self, events: &[crate::audit::Event]) -> Result<(), StateError> {
        Ok(crate::audit::append(&self.store, &self.audit_key, events).await?)
    }

    /// The audit event of an action by this backend's actor.
    fn event(&self, action: &str, target: &str, details: serde_json::Value) -> crate::audit::Event {
        crate::audit::Event::new(&self.actor, action, target, "ok", details)
    }

    /// Stores a new version of a provider credential and makes it current.
    pub async fn vault_put(&self, name: &str, value: &str) -> Result<i64, StateError> {
        self.vault_store(name, value, "vault.put", false).await
    }

    /// The same as [`Backend::vault_put`], recorded as a rotation (`vault.rotate`).
    pub async fn vault_rotate(&self, name: &str, value: &str) -> Result<i64, StateError> {
        self.vault_store(name, value, "vault.rotate", false).await
    }

    /// Stores a new version of a provider credential beside the live one(s):
    /// traffic is spread over every live version (a pool of keys, e.g. to spread
    /// provider rate limits). Returns the new version.
    pub async fn vault_pool_add(&self, name: &str, value: &str) -> Result<i64, StateError> {
        self.vault_store(name, value, "vault.rotate", true).await
    }

    /// The newest live value of vault secret `name`, decrypted (for the server's
    /// own use: webhook URLs, checks; never printed).
    pub async fn vault_value(&self, name: &str) -> Result<Option<SecretString>, StateError> {
        let Some(s) = self.store.current_secret(name).await? else {
            return Ok(None);
        };
        let master = self.current_master().await?;
        let sealed = Sealed {
            wrapped_key: s.wrapped_key,
            ciphertext: s.ciphertext,
        };
        Ok(Some(keyward_vault::open(
            &master,
            &secret_context(name),
            &sealed,
        )?))
    }

    /// Takes one version of a pooled credential out of service.
    pub async fn vault_retire(&self, name: &str, version: i64) -> Result<(), StateError> {
        let events = [self.event(
            "vault.retire",
            name,
            serde_json::json!({"version": version}),
        )];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        if !self
            .store
            .retire_secret_version(name, version, &mut audit)
            .await?
        {
            return Err(StateError::Invalid(format!(
                "`{name}` v{version} is not live, or is its only live version (use `vault rotate` to replace it)"
            )));
        }
        Ok(())
    }

    /// Seals and stores a new version, audited as `action`.
    async fn vault_store(
        &self,
        name: &str,
        value: &str,
        action: &str,
        pooled: bool,
    ) -> Result<i64, StateError> {
        if !valid_secret_name(name) {
            return Err(StateError::Invalid(format!(
                "`{name}` is not a valid secret name: use 1-64 letters, digits, `-`, `_` or `.`"
            )));
        }
        if value.is_empty() {
            return Err(StateError::Invalid(
                "the secret on standard input is empty; nothing stored".into(),
            ));
        }
        let mut audit = crate::audit::sealer_with(&self.audit_key, now(), |version| {
            vec![self.event(
                action,
                name,
                serde_json::json!({"version": version, "pooled": pooled}),
            )]
        });
        let mut master = self.master.load_full();
        let mut retried = false;
        let version = loop {
            let sealed = keyward_vault::seal(&master, &secret_context(name), value.as_bytes());
            match self
                .store
                .put_secret(
                    name,
                    keyward_store::SealedVersion {
                        wrapped_key: &sealed.wrapped_key,
                        ciphertext: &sealed.ciphertext,
                        created_at: now(),
                        master_check: &master.check_value(),
                    },
                    pooled,
                    &mut audit,
                )
                .await
            {
                Ok(v) => break v,
                // Rekeyed meanwhile by another process: seal again under the new key.
                Err(keyward_store::Error::StaleMasterKey) if !retried => {
                    retried = true;
                    master = self.current_master().await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(version)
    }

    /// Switches `name` back to its previous version; traffic follows within the
    /// poll interval. Returns the version now current.
    pub async fn vault_rollback(&self, name: &str) -> Result<i64, StateError> {
        let mut audit = crate::audit::sealer_with(&self.audit_key, now(), |version| {
            vec![self.event(
                "vault.rollback",
                name,
                serde_json::json!({"version": version}),
            )]
        });
        let Some(version) = self.store.rollback_secret(name, &mut audit).await? else {
            return Err(StateError::Invalid(format!(
                "`{name}` has no earlier version to roll back to"
            )));
        };
        Ok(version)
    }

    /// Issues a key. Returns the record and the plaintext, which is not kept.
    pub async fn create_key(&self, spec: NewKey) -> Result<(KeyRecord, String), StateError> {
        keys::check_name(&spec.name).map_err(StateError::Invalid)?;
        if !keys::valid_environment(&spec.environment)
            || spec.environment == keys::ADMIN_ENVIRONMENT
        {
            return Err(StateError::Invalid(format!(
                "`{}` is not a valid environment: use 1-16 lower-case letters or digits, starting with a letter (dev, test, prod)",
                spec.environment
            )));
        }
        let too_long = |d: &Duration| *d > crate::time::MAX_LIFETIME;
        if spec.expires_in.as_ref().is_some_and(too_long)
            || spec
                .rotation
                .as_ref()
                .is_some_and(|r| too_long(&r.every) || too_long(&r.grace))
        {
            return Err(StateError::Invalid(
                "lifetimes, rotation periods and grace windows are at most 36500d (100 years); use `never` for no expiry".into(),
            ));
        }
        if let Some(r) = &spec.rotation {
            if spec.canary {
                return Err(StateError::Invalid(
                    "a canary key is never used, so it is never rotated: drop --rotate-every"
                        .into(),
                ));
            }
            if r.every.as_secs() == 0 {
                return Err(StateError::Invalid(
                    "--rotate-every must be positive".into(),
                ));
            }
            let url = self.vault_value(&r.notify_secret).await?.ok_or_else(|| {
                StateError::Invalid(format!(
                    "no vault secret `{0}`: store the owner's webhook URL first (keyward vault put {0} < url.txt)",
                    r.notify_secret
                ))
            })?;
            crate::webhook::check_webhook_url(url.expose_secret()).map_err(StateError::Invalid)?;
        }
        if let Some(e) = spec
            .endpoints
            .iter()
            .find(|e| !keys::ENDPOINT_NAMES.contains(&e.as_str()))
        {
            return Err(StateError::Invalid(format!(
                "unknown endpoint `{e}`; use one of: {}",
                keys::ENDPOINT_NAMES.join(", ")
            )));
        }
        if spec.models.is_empty() {
            return Err(StateError::Invalid(
                "list the models the key may use (globs allowed; `*` for all)".into(),
            ));
        }
        check_owner_and_limits(spec.owner.as_deref(), &spec.limits)?;
        for c in &spec.source_cidrs {
            c.parse::<ipnet::IpNet>().map_err(|_| {
                StateError::Invalid(format!(
                    "`{c}` is not a CIDR block (e.g. 10.0.0.0/8 or 192.0.2.7/32)"
                ))
            })?;
        }
        let (plaintext, hint) = keys::generate(&spec.environment);
        let created_at = now();
        let record = KeyRecord {
            id: keys::new_id(),
            key_hash: self.hash_key.hash_hex(plaintext.as_bytes()),
            hint,
            name: spec.name,
            environment: spec.environment,
            models: spec.models,
            providers: spec.providers,
            endpoints: spec.endpoints,
            source_cidrs: spec.source_cidrs,
            created_at,
            expires_at: spec.expires_in.map(|d| created_at + d.as_secs() as i64),
            revoked_at: None,
            revoke_reason: None,
            prev_key_hash: None,
            prev_valid_until: None,
            canary: spec.canary,
            redact_inbound: spec.redaction.inbound.map(|a| a.as_str().to_string()),
            redact_outbound: spec.redaction.outbound.map(|a| a.as_str().to_string()),
            rotate_every: spec.rotation.as_ref().map(|r| r.every.as_secs() as i64),
            rotation_grace: spec.rotation.as_ref().map(|r| r.grace.as_secs() as i64),
            next_rotation_at: spec
                .rotation
                .as_ref()
                .map(|r| created_at + r.every.as_secs() as i64),
            notify_secret: spec.rotation.as_ref().map(|r| r.notify_secret.clone()),
            suspended_at: None,
            suspend_reason: None,
            owner: spec.owner,
            rpm: spec.limits.rpm.map(|v| v as i64),
            tpm: spec.limits.tpm.map(|v| v as i64),
            max_concurrent: spec.limits.concurrency.map(|v| v as i64),
            daily_budget_pico: spec.limits.daily_budget,
            monthly_budget_pico: spec.limits.monthly_budget,
            on_anomaly: None,
        };
        let details = serde_json::json!({
            "name": record.name, "environment": record.environment, "models": record.models,
            "providers": record.providers, "endpoints": record.endpoints,
            "source_cidrs": record.source_cidrs, "expires_at": record.expires_at, "canary": record.canary,
            "redact_inbound": record.redact_inbound, "redact_outbound": record.redact_outbound,
            "rotate_every": record.rotate_every, "notify_secret": record.notify_secret,
        });
        // The key and its audit entry commit together: no key without its record.
        let events = [self.event("keys.create", &record.id, details)];
        self.store
            .insert_key(
                &record,
                &mut crate::audit::sealer(&self.audit_key, &events, now()),
            )
            .await?;
        Ok((record, plaintext))
    }

    /// Issues a key for the admin HTTP API (`kw_admin_…`). The plaintext is not kept.
    pub async fn create_admin_key(
        &self,
        name: &str,
    ) -> Result<(AdminKeyRecord, String), StateError> {
        keys::check_name(name).map_err(StateError::Invalid)?;
        let (plaintext, hint) = keys::generate(keys::ADMIN_ENVIRONMENT);
        let record = AdminKeyRecord {
            id: format!("adm_{}", keyward_vault::random_base62(20)),
            key_hash: self.hash_key.hash_hex(plaintext.as_bytes()),
            hint,
            name: name.to_string(),
            created_at: now(),
            revoked_at: None,
        };
        let events = [self.event(
            "admin_keys.create",
            &record.id,
            serde_json::json!({"name": record.name}),
        )];
        self.store
            .insert_admin_key(
                &record,
                &mut crate::audit::sealer(&self.audit_key, &events, now()),
            )
            .await?;
        Ok((record, plaintext))
    }

    /// Gives key `id` a new secret under the same id; the old secret keeps working
    /// for `grace`, then fails. Returns the new plaintext (shown once), or `None`
    /// when no such key exists.
    pub async fn rotate_key(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Option<String>, StateError> {
        let Some(rec) = self.store.keys().await?.into_iter().find(|k| k.id == id) else {
            return Ok(None);
        };
        if rec.revoked_at.is_some() {
            return Err(StateError::Invalid(format!(
                "key `{id}` is revoked; create a new key instead"
            )));
        }
        let (plaintext, hint) = keys::generate(&rec.environment);
        let until = now() + grace.as_secs() as i64;
        let hash = self.hash_key.hash_hex(plaintext.as_bytes());
        let events = [self.event(
            "keys.rotate",
            id,
            serde_json::json!({"previous_valid_until": until}),
        )];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        if !self
            .store
            .rotate_key(id, &hash, &hint, until, &mut audit)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(plaintext))
    }

    /// Sets a live key's owner and limits (replacing both); audited as
    /// `keys.update`. Returns false when no such key exists or it is revoked.
    pub async fn update_key_limits(
        &self,
        id: &str,
        owner: Option<&str>,
        limits: crate::limits::Limits,
    ) -> Result<bool, StateError> {
        check_owner_and_limits(owner, &limits)?;
        let events = [self.event(
            "keys.update",
            id,
            serde_json::json!({"owner": owner, "limits": limits}),
        )];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        let as_i64 = |v: Option<u64>| v.map(|v| v as i64);
        Ok(self
            .store
            .update_key_limits(
                id,
                owner,
                [
                    as_i64(limits.rpm),
                    as_i64(limits.tpm),
                    as_i64(limits.concurrency),
                    limits.daily_budget,
                    limits.monthly_budget,
                ],
                &mut audit,
            )
            .await?)
    }

    /// Sets a live key's own `on_anomaly` policy (`None`: the server's);
    /// audited as `keys.policy`. Returns false when no such key exists or it is
    /// revoked.
    pub async fn set_key_anomaly_policy(
        &self,
        id: &str,
        policy: Option<crate::config::OnAnomaly>,
    ) -> Result<bool, StateError> {
        let name = policy.map(|p| p.name());
        let events = [self.event("keys.policy", id, serde_json::json!({"on_anomaly": name}))];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        Ok(self
            .store
            .set_key_anomaly_policy(id, name, &mut audit)
            .await?)
    }

    /// Suspends a key: refused everywhere (like a revoked key, and acknowledged
    /// the same way with [`Backend::await_replicas`]) until resumed. Returns
    /// false when no such key exists or it is revoked.
    pub async fn suspend_key(&self, id: &str, reason: &str) -> Result<bool, StateError> {
        let events = [self.event("keys.suspend", id, serde_json::json!({"reason": reason}))];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        Ok(self
            .store
            .set_key_suspension(id, Some((now(), reason)), &mut audit)
            .await?)
    }

    /// Lifts a suspension. Returns false when no such key exists or it is revoked.
    pub async fn resume_key(&self, id: &str) -> Result<bool, StateError> {
        let events = [self.event("keys.resume", id, serde_json::json!({}))];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        Ok(self.store.set_key_suspension(id, None, &mut audit).await?)
    }

    pub async fn revoke_key(&self, id: &str, reason: &str) -> Result<bool, StateError> {
        let events = [self.event("keys.revoke", id, serde_json::json!({"reason": reason}))];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        Ok(self.store.revoke_key(id, reason, now(), &mut audit).await?)
    }

    /// Handles a leak report: every Keyward key among `tokens` (current or
    /// previous secret) is revoked with the location as reason, and audited.
    /// Returns the ids revoked now and the number of tokens that matched no key.
    /// Token values are never stored or logged.
    pub async fn report_leak(
        &self,
        tokens: &[String],
        location: &str,
    ) -> Result<LeakOutcome, StateError> {
        let keys = self.store.keys().await?;
        let mut out = LeakOutcome::default();
        for t in tokens {
            let hash = self.hash_key.hash_hex(t.trim().as_bytes());
            let found = keys
                .iter()
                .find(|k| k.key_hash == hash || k.prev_key_hash.as_deref() == Some(hash.as_str()));
            match found {
                Some(k) if k.revoked_at.is_some() => out.already_revoked.push(k.id.clone()),
                Some(k) => {
                    let events = [self.event(
                        "keys.leak_reported",
                        &k.id,
                        serde_json::json!({"location": location, "environment": k.environment}),
                    )];
                    let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
                    self.store
                        .revoke_key(
                            &k.id,
                            &format!("leak reported at {location}"),
                            now(),
                            &mut audit,
                        )
                        .await?;
                    out.revoked.push((k.id.clone(), k.environment.clone()));
                }
                None => out.unknown += 1,
            }
        }
        Ok(out)
    }

    /// Waits until every running server (heard from in the last few seconds) serves
    /// from the store's current generation or later, up to `timeout`. Returns how
    /// many confirmed, and the ids of those that did not.
    pub async fn await_replicas(
        &self,
        timeout: Duration,
    ) -> Result<(usize, Vec<String>), StateError> {
        let target = self.store.generation().await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let live = self
                .store
                .live_replicas(now_ms() - STALE_AFTER.as_millis() as i64)
                .await?;
            let behind: Vec<String> = live
                .iter()
                .filter(|(_, g)| *g < target)
                .map(|(id, _)| id.clone())
                .collect();
            if behind.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok((live.len() - behind.len(), behind));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn revoke_admin_key(&self, id: &str) -> Result<bool, StateError> {
        let events = [self.event("admin_keys.revoke", id, serde_json::json!({}))];
        let mut audit = crate::audit::sealer(&self.audit_key, &events, now());
        Ok(self.store.revoke_admin_key(id, now(), &mut audit).await?)
    }

    pub fn hash_key(&self) -> &HashKey {
        &self.hash_key
    }

    /// Reads every key and current credential into a fresh snapshot.
    pub async fn load_snapshot(&self) -> Result<Snapshot, StateError> {
        let generation = self.store.generation().await?;
        let mut keys = KeyDirectory {
            // `put` leaves long-expired keys out of a full load.
            pruned_at: now(),
            ..Default::default()
        };
        self.store.each_key(|r| keys.put(r)).await?;
        self.snapshot_with(generation, keys).await
    }

    /// The snapshot after `old` with only what changed since its generation
    /// read from the store: the keys changed since then, and the admin keys
    /// and credentials (few, read whole).
    pub async fn apply_changes(&self, old: &Snapshot) -> Result<Snapshot, StateError> {
        // The generation first: a change committed after it is read again next
        // time (its keys carry a later generation), never missed.
        let generation = self.store.generation().await?;
        let mut keys = old.keys.clone();
        for r in self.store.keys_changed_since(old.generation).await? {
            keys.put(r);
        }
        let pruned = keys.prune(now());
        if pruned > 0 {
            tracing::info!(
                keys = pruned,
                "dropped keys expired over a day ago from memory"
            );
        }
        self.snapshot_with(generation, keys).await
    }

    async fn snapshot_with(
        &self,
        generation: i64,
        keys: KeyDirectory,
    ) -> Result<Snapshot, StateError> {
        let admin_keys = self
            .store
            .admin_keys()
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| (k.key_hash.clone(), k))
            .collect();
        let master = self.current_master().await?;
        let mut live: HashMap<String, Vec<SecretString>> = HashMap::new();
        let mut credential_created = HashMap::new();
        // Ordered by name and version: the last one seen is the newest.
        for s in self.store.current_secrets().await? {
            let sealed = Sealed {
                wrapped_key: s.wrapped_key,
                ciphertext: s.ciphertext,
            };
            let value = keyward_vault::open(&master, &secret_context(&s.name), &sealed)?;
            credential_created.insert(s.name.clone(), s.created_at);
            live.entry(s.name).or_default().push(value);
        }
        let mut credentials = HashMap::new();
        let mut pools = HashMap::new();
        for (name, mut versions) in live {
            if versions.len() > 1 {
                pools.insert(name, CredentialPool::new(versions));
            } else if let Some(v) = versions.pop() {
                credentials.insert(name, v);
            }
        }
        Ok(Snapshot {
            generation,
            keys,
            admin_keys,
            credentials,
            pools,
            credential_created,
        })
    }
}

/// A random 256-bit key kept in `meta.<name>`, sealed under the master key; made
/// on first use (first writer wins when several processes start at once).
async fn sealed_meta_key(
    store: &Store,
    master: &MasterKey,
    name: &str,
) -> Result<HashKey, StateError> {
    let malformed = || StateError::Invalid(format!("malformed {name} in the store"));
    let fresh = keyward_vault::seal(master, name, HashKey::generate().as_bytes());
    let text = format!(
        "{}.{}",
        B64.encode(&fresh.wrapped_key),
        B64.encode(&fresh.ciphertext)
    );
    let stored = store.meta_init(name, &text).await?;
    let (wk, ct) = stored.split_once('.').ok_or_else(malformed)?;
    let sealed = Sealed {
        wrapped_key: B64.decode(wk).map_err(|_| malformed())?,
        ciphertext: B64.decode(ct).map_err(|_| malformed())?,
    };
    let bytes = keyward_vault::open_bytes(master, name, &sealed)?;
    HashKey::from_bytes(&bytes).ok_or_else(malformed)
}

/// What a leak report did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeakOutcome {
    /// (key id, environment) revoked by this report.
    pub revoked: Vec<(String, String)>,
    pub already_revoked: Vec<String>,
    pub unknown: usize,
}

/// What `keys create` asks for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub environment: String,
    pub models: Vec<String>,
    pub providers: Vec<String>,
    pub endpoints: Vec<String>,
    pub source_cidrs: Vec<String>,
    /// `None`: never expires (only when asked for explicitly).
    pub expires_in: Option<Duration>,
    /// A decoy key: reaches no provider; any use raises an alert.
    pub canary: bool,
    /// This key's redaction policy; unset directions defer to provider and server.
    pub redaction: crate::redact::PolicyConfig,
    /// Scheduled rotation: period, grace for the old secret, and the vault secret
    /// holding the owner's webhook URL for notices and the new key.
    pub rotation: Option<RotationSchedule>,
    /// Who the key belongs to (owner limits, usage reports).
    pub owner: Option<String>,
    /// The key's own rate and concurrency limits.
    pub limits: crate::limits::Limits,
}

/// Checks an owner name and limits as a key may carry them.
pub fn check_owner_and_limits(
    owner: Option<&str>,
    limits: &crate::limits::Limits,
) -> Result<(), StateError> {
    if let Some(o) = owner {
        keys::check_name(o).map_err(|e| StateError::Invalid(format!("owner: {e}")))?;
    }
    for (name, v) in [
        ("daily budget", limits.daily_budget),
        ("monthly budget", limits.monthly_budget),
    ] {
        if v.is_some_and(|v| v <= 0) {
            return Err(StateError::Invalid(format!(
                "the {name} must be a positive amount (leave it out for none)"
            )));
        }
    }
    for (name, v) in [
        ("rpm", limits.rpm),
        ("tpm", limits.tpm),
        ("concurrency", limits.concurrency),
    ] {
        if v.is_some_and(|v| v == 0 || v > i64::MAX as u64) {
            return Err(StateError::Invalid(format!(
                "{name} must be a positive number (leave it out for no limit)"
            )));
        }
    }
    Ok(())
}

/// A key's rotation schedule.
#[derive(Debug, Clone)]
pub struct RotationSchedule {
    pub every: Duration,
    pub grace: Duration,
    pub notify_secret: String,
}

/// A client key found by the hash of the secret presented.
#[derive(Clone)]
pub struct KeyMatch {
    pub entry: Arc<KeyEntry>,
    /// Set when the secret is the key's previous one: accepted until then.
    pub previous_until: Option<i64>,
}

/// Keys expired longer ago than this (seconds) are not kept in memory: a
/// short-lived key exchanged by every CI run would otherwise pile up until the
/// next restart. Presented, such a key is answered like an unknown one; the
/// store keeps its record.
pub const EXPIRED_KEPT_SECS: i64 = 86_400;

/// How often (seconds) the directory drops keys that have aged past
/// [`EXPIRED_KEPT_SECS`] since they were read.
pub const PRUNE_EVERY_SECS: i64 = 3_600;

/// Every client key, found by the keyed hash of its secret. Persistent maps:
/// a copy shares everything with the original, and a change copies only the
/// path to it, so a snapshot with a few keys changed costs little beside a
/// million unchanged ones.
#[derive(Clone, Default)]
pub struct KeyDirectory {
    /// When long-expired keys were last dropped (Unix seconds).
    pruned_at: i64,
    /// Keyed hash of a client key (current or, during a grace window, previous
    /// secret) → entry.
    by_hash: imbl::HashMap<String, KeyMatch>,
    /// Key id → entry (to drop a changed key's old hashes).
    by_id: imbl::HashMap<String, Arc<KeyEntry>>,
    /// The keys with a rotation schedule, by id (the scheduler's work list).
    scheduled: imbl::HashMap<String, Arc<KeyEntry>>,
}

impl KeyDirectory {
    /// The key whose secret has this keyed hash.
    pub fn get(&self, hash: &str) -> Option<&KeyMatch> {
        self.by_hash.get(hash)
    }

    /// The key with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<KeyEntry>> {
        self.by_id.get(id)
    }

    /// The keys with a rotation schedule, once each.
    pub fn scheduled(&self) -> impl Iterator<Item = &Arc<KeyEntry>> {
        self.scheduled.values()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a key, or replaces the key with its id (and drops its old hashes).
    /// A key expired over [`EXPIRED_KEPT_SECS`] ago is dropped instead.
    pub fn put(&mut self, r: KeyRecord) {
        self.remove(&r.id);
        if long_expired(&r, now()) {
            return;
        }
        let prev = r.prev_key_hash.clone().zip(r.prev_valid_until);
        let entry = Arc::new(KeyEntry::new(r));
        if let Some((hash, until)) = prev {
            self.by_hash.insert(
                hash,
                KeyMatch {
                    entry: entry.clone(),
                    previous_until: Some(until),
                },
            );
        }
        self.by_hash.insert(
            entry.record.key_hash.clone(),
            KeyMatch {
                entry: entry.clone(),
                previous_until: None,
            },
        );
        if entry.record.rotate_every.is_some() {
            self.scheduled
                .insert(entry.record.id.clone(), entry.clone());
        } else {
            self.scheduled.remove(&entry.record.id);
        }
        self.by_id.insert(entry.record.id.clone(), entry);
    }

    /// Drops the key with this id and its hashes.
    fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_hash.remove(&old.record.key_hash);
            if let Some(prev) = &old.record.prev_key_hash {
                self.by_hash.remove(prev);
            }
            self.scheduled.remove(id);
        }
    }

    /// Drops the keys expired over [`EXPIRED_KEPT_SECS`] before `now`, at most
    /// once per [`PRUNE_EVERY_SECS`]; returns how many went.
    pub fn prune(&mut self, now: i64) -> usize {
        if now - self.pruned_at < PRUNE_EVERY_SECS {
            return 0;
        }
        self.pruned_at = now;
        let gone: Vec<String> = self
            .by_id
            .values()
            .filter(|e| long_expired(&e.record, now))
            .map(|e| e.record.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone.len()
    }
}

fn long_expired(r: &KeyRecord, now: i64) -> bool {
    r.expires_at
        .is_some_and(|e| e.saturating_add(EXPIRED_KEPT_SECS) < now)
}

/// Everything the request path needs from the store, as of one generation.
pub struct Snapshot {
    pub generation: i64,
    pub keys: KeyDirectory,
    /// Keyed hash of an admin key → its record (revoked ones left out).
    pub admin_keys: HashMap<String, AdminKeyRecord>,
    /// Vault secret name → decrypted credential (secrets with one live version).
    pub credentials: HashMap<String, SecretString>,
    /// Secrets with several live versions, used in turn.
    pub pools: HashMap<String, CredentialPool>,
    /// Vault secret name → when its newest live version was stored (Unix time).
    pub credential_created: HashMap<String, i64>,
}

impl Snapshot {
    /// The credential to use for vault secret `name` on this request.
    pub fn credential(&self, name: &str) -> Option<&SecretString> {
        match self.pools.get(name) {
            Some(p) => Some(p.pick()),
            None => self.credentials.get(name),
        }
    }
}

/// Several live versions of one credential, handed out round-robin.
pub struct CredentialPool {
    versions: Vec<SecretString>,
    next: std::sync::atomic::AtomicUsize,
}

impl CredentialPool {
    fn new(versions: Vec<SecretString>) -> CredentialPool {
        CredentialPool {
            versions,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The next version in turn.
    pub fn pick(&self) -> &SecretString {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.versions.len();
        &self.versions[i]
    }

    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// The current snapshot plus freshness tracking, shared by all requests.
pub struct Live {
    pub snapshot: ArcSwap<Snapshot>,
    /// This server's id in the `replicas` table.
    pub replica_id: String,
    /// Unix time (ms) of the last successful check against the store.
    last_ok_ms: AtomicI64,
    /// The generation served, sent after each new snapshot is swapped in: open
    /// streams watch it to end when their key stops being usable.
    changes: tokio::sync::watch::Sender<i64>,
    /// Woken by a change notice: check the store now, not at the next poll.
    wake: tokio::sync::Notify,
    /// Seconds from a change's commit to this server serving it.
    pub change_lag: prometheus_client::metrics::histogram::Histogram,
}

/// How often the store is asked whether anything changed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// With no successful check for this long, requests are refused (fail closed):
/// a revocation might have been missed.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

impl Live {
    pub fn new(s: Snapshot) -> Live {
        let generation = s.generation;
        Live {
            snapshot: ArcSwap::from_pointee(s),
            replica_id: format!("rep_{}", keyward_vault::random_base62(12)),
            last_ok_ms: AtomicI64::new(now_ms()),
            changes: tokio::sync::watch::Sender::new(generation),
            wake: tokio::sync::Notify::new(),
            change_lag: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 14),
            ),
        }
    }

    /// Follows the store's change notices (PostgreSQL `LISTEN`) forever, waking
    /// [`Live::follow`] on each; returns at once on SQLite, which has none. A
    /// lost listener is reconnected after a second; the poll covers the gap.
    pub async fn listen(self: Arc<Self>, store: Store) {
        loop {
            match store.change_listener().await {
                Ok(None) => return,
                Ok(Some(mut listener)) => {
                    // Anything committed while the listener was away.
                    self.wake.notify_one();
                    while listener.next().await.is_ok() {
                        self.wake.notify_one();
                    }
                    tracing::warn!("lost the store's change notices; reconnecting");
                }
                Err(e) => tracing::warn!("cannot listen for the store's change notices: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Notified each time a new snapshot is served.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changes.subscribe()
    }

    /// True while the snapshot is known to be current.
    pub fn fresh(&self) -> bool {
        now_ms() - self.last_ok_ms.load(Ordering::Relaxed) < STALE_AFTER.as_millis() as i64
    }

    /// Records how long the change this server now serves took to reach it
    /// (when no later one was committed meanwhile; clocks as NTP keeps them).
    async fn observe_lag(&self, store: &Store, serving: i64) {
        if let Ok((g, at_ms)) = store.generation_and_time().await {
            if g == serving && at_ms > 0 {
                self.change_lag
                    .observe((now_ms() - at_ms).max(0) as f64 / 1000.0);
            }
        }
    }

    /// Checks the store every [`POLL_INTERVAL`], and at once on a change notice,
    /// swapping in a new snapshot on every change (only the keys changed are
    /// read), and reports the generation it serves from (see
    /// [`Backend::await_replicas`]): the report follows the swap, so once it is
    /// seen, every request this server authenticates uses the new state.
    pub async fn follow(self: Arc<Self>, backend: Backend) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            let old = self.snapshot.load_full();
            let current = old.generation;
            let serving = match backend.store.generation().await {
                Ok(g) if g == current => Some(g),
                Ok(g) => match if g < current {
                    // A generation below the one served (a store restored from
                    // a backup) has no reliable deltas: read everything again.
                    tracing::warn!(
                        generation = g,
                        "the store's generation went back: reloading every key"
                    );
                    backend.load_snapshot().await
                } else {
                    backend.apply_changes(&old).await
                } {
                    Ok(s) => {
                        let g = s.generation;
                        self.snapshot.store(Arc::new(s));
                        self.changes.send_replace(g);
                        self.observe_lag(&backend.store, g).await;
                        tracing::info!(generation = g, "applied changes from the store");
                        Some(g)
                    }
                    Err(e) => {
                        tracing::error!("cannot reload from the store: {e}");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!("cannot reach the store: {e}");
                    None
                }
            };
            if let Some(g) = serving {
                self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                if let Err(e) = backend
                    .store
                    .replica_heartbeat(&self.replica_id, g, now_ms())
                    .await
                {
                    tracing::warn!("cannot record this server's state in the store: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, expires_at: Option<i64>) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            key_hash: format!("hash-{id}"),
            environment: "prod".into(),
            models: vec!["*".into()],
            expires_at,
            ..Default::default()
        }
    }

    #[test]
    fn keys_expired_over_a_day_ago_leave_the_directory() {
        let now = now();
        let mut d = KeyDirectory::default();
        d.put(key("live", None));
        d.put(key("just-expired", Some(now - 60)));
        d.put(key("long-expired", Some(now - EXPIRED_KEPT_SECS - 60)));
        assert!(d.by_id("live").is_some() && d.get("hash-just-expired").is_some());
        assert!(d.by_id("long-expired").is_none() && d.get("hash-long-expired").is_none());
        // An hour on, nothing has aged out; a day on, the expired one goes.
        assert_eq!(d.prune(now), 0);
        assert_eq!(d.prune(now + PRUNE_EVERY_SECS), 0);
        assert_eq!(d.prune(now + 2 * PRUNE_EVERY_SECS + EXPIRED_KEPT_SECS), 1);
        assert!(d.get("hash-just-expired").is_none() && d.by_id("live").is_some());
        assert_eq!(d.len(), 1);
    }
}
