//! Keyward's store: provider credentials (sealed), client-key records (hashed) and
//! a change counter, over SQLite (the embedded default, WAL mode) or PostgreSQL,
//! chosen by URL. The same portable SQL runs on both; migrations run on open.
//!
//! Every mutation bumps the `generation` counter in the same transaction, so a
//! running server notices any change with one cheap query.

use base64::Engine as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Errors from the store. Messages carry no secret (queries never embed values).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store URL `{0}` is not supported: use sqlite://FILE or postgres://…")]
    BadUrl(String),
    #[error("cannot open the store at {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store holds malformed data in {0}")]
    Malformed(&'static str),
    #[error("the master key was changed (vault rekey) since this process loaded it; retry")]
    StaleMasterKey,
    #[error("rekey: {0}")]
    Rekey(String),
}

pub type Result<T> = std::result::Result<T, Error>;

mod usage;
pub use usage::{UsageGroup, UsageRow, UsageTotals};

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A sealed secret version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub name: String,
    pub version: i64,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

/// A client key as stored: never the key, only its keyed hash and a short hint.
/// `Default` is an empty record with no lifecycle state (for tests and builders).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    pub id: String,
    #[serde(skip)]
    pub key_hash: String,
    /// The first characters of the key (prefix and environment), for humans.
    pub hint: String,
    pub name: String,
    pub environment: String,
    pub models: Vec<String>,
    pub providers: Vec<String>,
    pub endpoints: Vec<String>,
    pub source_cidrs: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    /// Hash of the secret this key had before its last rotation.
    #[serde(skip)]
    pub prev_key_hash: Option<String>,
    /// Until when (Unix time) the previous secret is still accepted.
    pub prev_valid_until: Option<i64>,
    /// A decoy: any use is refused and alerted.
    pub canary: bool,
    /// Redaction policy for requests (`redact`, `block`, `alert`, `off`); `None`
    /// defers to the provider's and the server's.
    pub redact_inbound: Option<String>,
    /// Redaction policy for responses, likewise.
    pub redact_outbound: Option<String>,
    /// Scheduled rotation period in seconds, if any.
    pub rotate_every: Option<i64>,
    /// How long (seconds) the previous secret stays valid after a scheduled
    /// rotation.
    pub rotation_grace: Option<i64>,
    /// When (Unix time) the next scheduled rotation is due.
    pub next_rotation_at: Option<i64>,
    /// Vault secret holding the owner's webhook URL for rotation notices.
    pub notify_secret: Option<String>,
    /// Set while the key is suspended (refused until resumed).
    pub suspended_at: Option<i64>,
    pub suspend_reason: Option<String>,
    /// Who the key belongs to: owner limits and usage reports group by it.
    pub owner: Option<String>,
    /// Requests per minute, tokens per minute, requests in flight; `None`: no limit.
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrent: Option<i64>,
    /// Spend budgets per UTC day and month, in pico-dollars; `None`: no budget.
    pub daily_budget_pico: Option<i64>,
    pub monthly_budget_pico: Option<i64>,
}

/// A key for the admin HTTP API: only its keyed hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminKeyRecord {
    pub id: String,
    #[serde(skip)]
    pub key_hash: String,
    pub hint: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// One audit log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    /// JSON object with further context (never a secret).
    pub details: String,
    pub prev_mac: String,
    pub mac: String,
}

/// Audit entries to commit in the same transaction as the change they record:
/// called with the sequence number and MAC of the newest stored entry (0 and `None`
/// when the log is empty), it returns the rows and the new head marker, as for
/// [`Store::append_audit`]. No rows: nothing is appended.
pub type Seal<'a> = &'a mut (dyn FnMut(i64, Option<&str>) -> (Vec<AuditRow>, String) + Send);

/// [`Seal`] for a change whose audit entries carry a number only known inside its
/// transaction (the version stored, the keys re-wrapped): called with it first.
pub type VersionSeal<'a> =
    &'a mut (dyn FnMut(i64, i64, Option<&str>) -> (Vec<AuditRow>, String) + Send);

/// A new version of a secret as [`Store::put_secret`] takes it: sealed by the
/// caller under the master key whose check value is `master_check`.
#[derive(Debug, Clone, Copy)]
pub struct SealedVersion<'a> {
    pub wrapped_key: &'a [u8],
    pub ciphertext: &'a [u8],
    /// Unix time, seconds.
    pub created_at: i64,
    pub master_check: &'a str,
}

/// A connection pool to the store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let mut u = format!("sqlite:{rest}");
            if !rest.contains("mode=") {
                u.push_str(if rest.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
            (Backend::Sqlite, u)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(Error::BadUrl(url.to_string()));
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            // Fail fast with a clear error rather than retrying for the default 30 s.
            .acquire_timeout(std::time::Duration::from_secs(5));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let redacted = redact_url(&url);
        let pool = opts.connect(&url).await.map_err(|source| Error::Open {
            url: redacted,
            source,
        })?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock
    /// first (waiting up to the busy timeout): a transaction that reads first and
    /// writes later can fail at once with "database is locked" when another
    /// writer commits in between, since SQLite cannot upgrade it.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        // Writers take one lock first, so that writes never interleave: SQLite's
        // database write lock, PostgreSQL's lock on the generation row (which every
        // write bumps anyway). A vault write therefore sees any rekey before it.
        let lock = match self.backend {
            Backend::Sqlite => "UPDATE meta SET value = value WHERE name = 'generation'",
            Backend::Postgres => "SELECT value FROM meta WHERE name = 'generation' FOR UPDATE",
        };
        sqlx::query(lock).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// Runs one UPDATE in a write transaction and, when it changed a row, appends
    /// `audit`, bumps the generation and commits. Returns whether a row changed.
    async fn update_bumping<'q>(
        &self,
        update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        audit: Seal<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if update.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        self.append_audit_in(&mut tx, audit).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The change counter: it grows with every mutation.
    pub async fn generation(&self) -> Result<i64> {
        let v: String = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'generation'")
            .fetch_one(&self.pool)
            .await?;
        v.parse().map_err(|_| Error::Malformed("meta.generation"))
    }

    pub async fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stores `value` under `name` unless a value is there already; returns the
    /// value that is stored afterwards (first writer wins).
    pub async fn meta_init(&self, name: &str, value: &str) -> Result<String> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
            }
            Backend::Postgres => {
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
            }
        };
        sqlx::query(sql)
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        self.meta(name).await?.ok_or(Error::Malformed("meta"))
    }

    /// Adds a new version of a secret and makes it current, atomically: it
    /// replaces the live version(s), or with `pooled` joins them (traffic is then
    /// spread over every live version). The secret must be sealed under the master
    /// key whose check value is `master_check`; if the store's master key has
    /// changed since, nothing is written.
    pub async fn put_secret(
        &self,
        name: &str,
        sealed: SealedVersion<'_>,
        pooled: bool,
        audit: VersionSeal<'_>,
    ) -> Result<i64> {
        let SealedVersion {
            wrapped_key,
            ciphertext,
            created_at: now,
            master_check,
        } = sealed;
        let mut tx = self.begin_write().await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'master_key_check'")
                .fetch_optional(&mut *tx)
                .await?;
        if stored.as_deref().is_some_and(|s| s != master_check) {
            return Err(Error::StaleMasterKey);
        }
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        let version = max.unwrap_or(0) + 1;
        if !pooled {
            sqlx::query(
                "UPDATE secrets SET state = 'previous' WHERE name = $1 AND state = 'current'",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO secrets (name, version, wrapped_key, ciphertext, state, created_at) VALUES ($1, $2, $3, $4, 'current', $5)")
            .bind(name)
            .bind(version)
            .bind(B64.encode(wrapped_key))
            .bind(B64.encode(ciphertext))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        self.append_audit_in(&mut tx, &mut |seq, mac| audit(version, seq, mac))
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Master key rotation, in one transaction: every wrapped data key (all
    /// versions of all secrets, and the sealed keys kept in `meta` under the names
    /// in `sealed_meta`) is replaced by `rewrap(kind, name, wrapped)`, where kind is
    /// `"secret"` or `"meta"`, and the stored check value becomes `new_check`.
    /// Ciphertexts are not touched. Fails, changing nothing, when the stored check
    /// value is not `old_check` or `rewrap` fails. Returns how many keys changed.
    pub async fn rekey<F>(
        &self,
        old_check: &str,
        new_check: &str,
        sealed_meta: &[&str],
        mut rewrap: F,
        audit: VersionSeal<'_>,
    ) -> Result<usize>
    where
        F: FnMut(&str, &str, &[u8]) -> std::result::Result<Vec<u8>, String>,
    {
        let mut tx = self.begin_write().await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'master_key_check'")
                .fetch_optional(&mut *tx)
                .await?;
        if stored.as_deref() != Some(old_check) {
            return Err(Error::StaleMasterKey);
        }
        let rows = sqlx::query("SELECT name, version, wrapped_key FROM secrets")
            .fetch_all(&mut *tx)
            .await?;
        let mut n = 0;
        for r in &rows {
            let name: String = r.try_get("name")?;
            let version: i64 = r.try_get("version")?;
            let wk: String = r.try_get("wrapped_key")?;
            let wk = B64
                .decode(wk)
                .map_err(|_| Error::Malformed("secrets.wrapped_key"))?;
            let new = rewrap("secret", &name, &wk).map_err(Error::Rekey)?;
            sqlx::query("UPDATE secrets SET wrapped_key = $1 WHERE name = $2 AND version = $3")
                .bind(B64.encode(new))
                .bind(&name)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        for &name in sealed_meta {
            let value: Option<String> =
                sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(value) = value else { continue };
            let (wk, ct) = value
                .split_once('.')
                .ok_or(Error::Malformed("meta sealed key"))?;
            let wk = B64
                .decode(wk)
                .map_err(|_| Error::Malformed("meta sealed key"))?;
            let new = rewrap("meta", name, &wk).map_err(Error::Rekey)?;
            sqlx::query("UPDATE meta SET value = $1 WHERE name = $2")
                .bind(format!("{}.{ct}", B64.encode(new)))
                .bind(name)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        sqlx::query("UPDATE meta SET value = $1 WHERE name = 'master_key_check'")
            .bind(new_check)
            .execute(&mut *tx)
            .await?;
        let rewrapped = n as i64;
        self.append_audit_in(&mut tx, &mut |seq, mac| audit(rewrapped, seq, mac))
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Takes the newest live version out of service (marked `rolled_back`, kept).
    /// When it was the only live one, the newest earlier version becomes live
    /// again. Returns the newest version live afterwards, or `None` (changing
    /// nothing) when there is nothing to roll back to.
    pub async fn rollback_secret(&self, name: &str, audit: VersionSeal<'_>) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let live: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM secrets WHERE name = $1 AND state = 'current' ORDER BY version DESC",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let Some(&newest) = live.first() else {
            return Ok(None);
        };
        let serving = match live.get(1) {
            Some(&next) => next,
            None => {
                let target: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(version) FROM secrets WHERE name = $1 AND state = 'previous' AND version < $2",
                )
                .bind(name)
                .bind(newest)
                .fetch_one(&mut *tx)
                .await?;
                let Some(target) = target else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE secrets SET state = 'current' WHERE name = $1 AND version = $2",
                )
                .bind(name)
                .bind(target)
                .execute(&mut *tx)
                .await?;
                target
            }
        };
        sqlx::query("UPDATE secrets SET state = 'rolled_back' WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(newest)
            .execute(&mut *tx)
            .await?;
        self.append_audit_in(&mut tx, &mut |seq, mac| audit(serving, seq, mac))
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(serving))
    }

    /// Takes one live version of a pooled secret out of service (kept as
    /// `previous`). Refused (`Ok(false)`) unless another version stays live.
    pub async fn retire_secret_version(
        &self,
        name: &str,
        version: i64,
        audit: Seal<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let live: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM secrets WHERE name = $1 AND state = 'current'")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        if !live.contains(&version) || live.len() < 2 {
            return Ok(false);
        }
        sqlx::query("UPDATE secrets SET state = 'previous' WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        self.append_audit_in(&mut tx, audit).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// `(version, state, created_at)` of every version of `name`, oldest first.
    pub async fn secret_versions(&self, name: &str) -> Result<Vec<(i64, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT version, state, created_at FROM secrets WHERE name = $1 ORDER BY version",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The version of `name` that serves traffic.
    /// The newest live version of `name`.
    pub async fn current_secret(&self, name: &str) -> Result<Option<StoredSecret>> {
        let row = sqlx::query("SELECT name, version, wrapped_key, ciphertext, created_at FROM secrets WHERE name = $1 AND state = 'current' ORDER BY version DESC LIMIT 1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| secret_from_row(&r)).transpose()
    }

    /// Live versions of all secrets (sealed), ordered by name, then version (a
    /// pooled secret has several).
    pub async fn current_secrets(&self) -> Result<Vec<StoredSecret>> {
        let rows = sqlx::query("SELECT name, version, wrapped_key, ciphertext, created_at FROM secrets WHERE state = 'current' ORDER BY name, version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Stores a new key and its audit entries, in one transaction.
    pub async fn insert_key(&self, k: &KeyRecord, audit: Seal<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO client_keys (id, key_hash, hint, name, environment, models, providers, endpoints, source_cidrs, created_at, expires_at, revoked_at, revoke_reason, canary, redact_inbound, redact_outbound, rotate_every, rotation_grace, next_rotation_at, notify_secret, owner, rpm, tpm, max_concurrent, daily_budget_pico, monthly_budget_pico) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        )
        .bind(&k.id)
        .bind(&k.key_hash)
        .bind(&k.hint)
        .bind(&k.name)
        .bind(&k.environment)
        .bind(json(&k.models))
        .bind(json(&k.providers))
        .bind(json(&k.endpoints))
        .bind(json(&k.source_cidrs))
        .bind(k.created_at)
        .bind(k.expires_at)
        .bind(k.revoked_at)
        .bind(k.revoke_reason.clone())
        .bind(i64::from(k.canary))
        .bind(k.redact_inbound.clone())
        .bind(k.redact_outbound.clone())
        .bind(k.rotate_every)
        .bind(k.rotation_grace)
        .bind(k.next_rotation_at)
        .bind(k.notify_secret.clone())
        .bind(k.owner.clone())
        .bind(k.rpm)
        .bind(k.tpm)
        .bind(k.max_concurrent)
        .bind(k.daily_budget_pico)
        .bind(k.monthly_budget_pico)
        .execute(&mut *tx)
        .await?;
        self.append_audit_in(&mut tx, audit).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every client key, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(
            "SELECT id, key_hash, hint, name, environment, models, providers, endpoints, source_cidrs, created_at, expires_at, revoked_at, revoke_reason, prev_key_hash, prev_valid_until, canary, redact_inbound, redact_outbound, rotate_every, rotation_grace, next_rotation_at, notify_secret, suspended_at, suspend_reason, owner, rpm, tpm, max_concurrent, daily_budget_pico, monthly_budget_pico \
             FROM client_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Gives a key a new secret (hash and hint); the old hash stays valid until
    /// `prev_valid_until`. Returns false when no such key exists.
    pub async fn rotate_key(
        &self,
        id: &str,
        new_hash: &str,
        new_hint: &str,
        prev_valid_until: i64,
        audit: Seal<'_>,
    ) -> Result<bool> {
        self.update_bumping(
            sqlx::query(
                "UPDATE client_keys SET prev_key_hash = key_hash, prev_valid_until = $1, key_hash = $2, hint = $3 WHERE id = $4",
            )
            .bind(prev_valid_until)
            .bind(new_hash)
            .bind(new_hint)
            .bind(id),
            audit,
        )
        .await
    }

    /// Suspends (`Some((at, reason))`) or resumes (`None`) a key. Returns false
    /// when no such key exists or it is revoked (a revoked key stays revoked).
    pub async fn set_key_suspension(
        &self,
        id: &str,
        suspension: Option<(i64, &str)>,
        audit: Seal<'_>,
    ) -> Result<bool> {
        self.update_bumping(
            sqlx::query(
                "UPDATE client_keys SET suspended_at = $2, suspend_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(suspension.map(|s| s.0))
            .bind(suspension.map(|s| s.1.to_string())),
            audit,
        )
        .await
    }

    /// Claims the advance notice of the rotation due at `due` for key `id`: true
    /// for exactly one caller across all servers.
    /// Sets a live key's owner and limits (audited in the same transaction).
    /// Returns false when no such key exists or it is revoked.
    pub async fn update_key_limits(
        &self,
        id: &str,
        owner: Option<&str>,
        limits: [Option<i64>; 5],
        audit: Seal<'_>,
    ) -> Result<bool> {
        let [rpm, tpm, max_concurrent, daily, monthly] = limits;
        self.update_bumping(
            sqlx::query(
                "UPDATE client_keys SET owner = $1, rpm = $2, tpm = $3, max_concurrent = $4, \
                 daily_budget_pico = $5, monthly_budget_pico = $6 WHERE id = $7 AND revoked_at IS NULL",
            )
            .bind(owner.map(str::to_string))
            .bind(rpm)
            .bind(tpm)
            .bind(max_concurrent)
            .bind(daily)
            .bind(monthly)
            .bind(id.to_string()),
            audit,
        )
        .await
    }

    pub async fn claim_rotation_notice(&self, id: &str, due: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE client_keys SET rotation_notice_for = $2 \
             WHERE id = $1 AND next_rotation_at = $2 AND (rotation_notice_for IS NULL OR rotation_notice_for <> $2)",
        )
        .bind(id)
        .bind(due)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Claims the rotation due at `due` for key `id` and schedules the next one at
    /// `next`: true for exactly one caller across all servers.
    pub async fn claim_rotation(&self, id: &str, due: i64, next: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE client_keys SET next_rotation_at = $3 WHERE id = $1 AND next_rotation_at = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(due)
        .bind(next)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks a key revoked and appends `audit`, in one transaction. Returns false
    /// (and writes nothing) when no such key exists; revoking a revoked key keeps
    /// the first revocation.
    pub async fn revoke_key(
        &self,
        id: &str,
        reason: &str,
        now: i64,
        audit: Seal<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM client_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query("UPDATE client_keys SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.append_audit_in(&mut tx, audit).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// Stores a new admin key and its audit entries, in one transaction.
    pub async fn insert_admin_key(&self, k: &AdminKeyRecord, audit: Seal<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO admin_keys (id, key_hash, hint, name, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&k.id)
            .bind(&k.key_hash)
            .bind(&k.hint)
            .bind(&k.name)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(&mut *tx)
            .await?;
        self.append_audit_in(&mut tx, audit).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn admin_keys(&self) -> Result<Vec<AdminKeyRecord>> {
        let rows = sqlx::query("SELECT id, key_hash, hint, name, created_at, revoked_at FROM admin_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminKeyRecord {
                    id: r.try_get("id")?,
                    key_hash: r.try_get("key_hash")?,
                    hint: r.try_get("hint")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes an admin key and appends `audit`, in one transaction; false (and
    /// nothing written) when no such key exists.
    pub async fn revoke_admin_key(&self, id: &str, now: i64, audit: Seal<'_>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE admin_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM admin_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            self.append_audit_in(&mut tx, audit).await?;
        }
        if n > 0 {
            bump_generation(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(exists.is_some())
    }
}

impl Store {
    /// Appends audit entries in order. `seal` receives the sequence number and MAC of
    /// the newest stored entry (0 and `None` when the log is empty) and returns the
    /// rows to insert and the new head marker; it is called again with fresh values
    /// if another writer appended in between.
    pub async fn append_audit<F>(&self, mut seal: F) -> Result<()>
    where
        F: FnMut(i64, Option<&str>) -> (Vec<AuditRow>, String) + Send,
    {
        for attempt in 0..64u32 {
            match self.try_append_audit(&mut seal).await {
                Ok(()) => return Ok(()),
                // Another writer got there first (same sequence number, or SQLite's
                // lock upgrade refused): read the new head and try again.
                Err(Error::Db(e)) if is_unique_violation(&e) || is_busy(&e) => {
                    let jitter = (std::process::id() as u64 + attempt as u64 * 7) % 5;
                    tokio::time::sleep(std::time::Duration::from_millis(
                        2 + jitter + attempt as u64,
                    ))
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Malformed("audit_log: too many concurrent writers"))
    }

    async fn try_append_audit<F>(&self, seal: &mut F) -> Result<()>
    where
        F: FnMut(i64, Option<&str>) -> (Vec<AuditRow>, String) + Send,
    {
        // PostgreSQL: no generation lock, so an audit write never waits on a
        // revocation (the audit lock is taken inside). SQLite has one write lock.
        let mut tx = match self.backend {
            Backend::Sqlite => self.begin_write().await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        self.append_audit_in(&mut tx, seal).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends the entries `seal` makes within `tx`, after the newest stored one,
    /// holding the audit lock until `tx` ends.
    async fn append_audit_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        seal: Seal<'_>,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT value FROM meta WHERE name = 'audit_lock' FOR UPDATE")
                .execute(&mut **tx)
                .await?;
        }
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut **tx)
                .await?;
        let (rows, head) = match &last {
            Some((seq, mac)) => seal(*seq, Some(mac)),
            None => seal(0, None),
        };
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            sqlx::query(
                "INSERT INTO audit_log (seq, at, actor, action, target, outcome, details, prev_mac, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(r.seq)
            .bind(r.at)
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.target)
            .bind(&r.outcome)
            .bind(&r.details)
            .bind(&r.prev_mac)
            .bind(&r.mac)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query("UPDATE meta SET value = $1 WHERE name = 'audit_head'")
            .bind(&head)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO meta (name, value) SELECT 'audit_head', $1 WHERE NOT EXISTS (SELECT 1 FROM meta WHERE name = 'audit_head')")
            .bind(&head)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Audit entries with `seq > after`, oldest first, at most `limit`.
    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, outcome, details, prev_mac, mac FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    details: r.try_get("details")?,
                    prev_mac: r.try_get("prev_mac")?,
                    mac: r.try_get("mac")?,
                })
            })
            .collect()
    }

    /// The newest audit sequence number (0 when empty).
    pub async fn audit_last_seq(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }
}

impl Store {
    /// Records when keys were last used: `(key id, Unix time)` pairs; a time older
    /// than the stored one changes nothing. One transaction for the batch.
    pub async fn record_key_use(&self, uses: &[(String, i64)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, at) in uses {
            sqlx::query(
                "INSERT INTO key_last_use (key_id, last_used_at) VALUES ($1, $2) \
                 ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at \
                 WHERE excluded.last_used_at > key_last_use.last_used_at",
            )
            .bind(id)
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When each key that was ever used was last used (key id → Unix time).
    pub async fn key_last_use(&self) -> Result<std::collections::HashMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key_id, last_used_at FROM key_last_use")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records that replica `id` serves from `generation` as of `now_ms`.
    pub async fn replica_heartbeat(&self, id: &str, generation: i64, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (id, generation, seen_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, seen_at_ms = excluded.seen_at_ms",
        )
        .bind(id)
        .bind(generation)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a replica's record (on shutdown).
    pub async fn replica_gone(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `(id, generation)` of replicas heard from since `since_ms`.
    pub async fn live_replicas(&self, since_ms: i64) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as(
                "SELECT id, generation FROM replicas WHERE seen_at_ms >= $1 ORDER BY id",
            )
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?,
        )
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.message().contains("UNIQUE")
                || d.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.message().contains("locked") || d.message().contains("busy") || d.code().as_deref() == Some("40001"))
}

async fn bump_generation(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE name = 'generation'",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

fn list(r: &AnyRow, col: &'static str) -> Result<Vec<String>> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|_| Error::Malformed(col))
}

fn secret_from_row(r: &AnyRow) -> Result<StoredSecret> {
    let wk: String = r.try_get("wrapped_key")?;
    let ct: String = r.try_get("ciphertext")?;
    Ok(StoredSecret {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        wrapped_key: B64
            .decode(wk)
            .map_err(|_| Error::Malformed("secrets.wrapped_key"))?,
        ciphertext: B64
            .decode(ct)
            .map_err(|_| Error::Malformed("secrets.ciphertext"))?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_from_row(r: &AnyRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.try_get("id")?,
        key_hash: r.try_get("key_hash")?,
        hint: r.try_get("hint")?,
        name: r.try_get("name")?,
        environment: r.try_get("environment")?,
        models: list(r, "models")?,
        providers: list(r, "providers")?,
        endpoints: list(r, "endpoints")?,
        source_cidrs: list(r, "source_cidrs")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revoke_reason: r.try_get("revoke_reason")?,
        prev_key_hash: r.try_get("prev_key_hash")?,
        prev_valid_until: r.try_get("prev_valid_until")?,
        canary: r.try_get::<i64, _>("canary")? != 0,
        redact_inbound: r.try_get("redact_inbound")?,
        redact_outbound: r.try_get("redact_outbound")?,
        rotate_every: r.try_get("rotate_every")?,
        rotation_grace: r.try_get("rotation_grace")?,
        next_rotation_at: r.try_get("next_rotation_at")?,
        notify_secret: r.try_get("notify_secret")?,
        suspended_at: r.try_get("suspended_at")?,
        suspend_reason: r.try_get("suspend_reason")?,
        owner: r.try_get("owner")?,
        rpm: r.try_get("rpm")?,
        tpm: r.try_get("tpm")?,
        max_concurrent: r.try_get("max_concurrent")?,
        daily_budget_pico: r.try_get("daily_budget_pico")?,
        monthly_budget_pico: r.try_get("monthly_budget_pico")?,
    })
}

/// The URL with any password replaced, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
