//! Client-key records (hashed, never the key) and when each was last used.

use super::*;

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
    /// The key's own response to severe anomalies (`alert`, `suspend`); `None`:
    /// the server's.
    pub on_anomaly: Option<String>,
}

/// The generation the change being written will have (the transaction bumps
/// it at commit; writers hold the generation row, so no other change is between).
macro_rules! next_generation {
    () => {
        "(SELECT CAST(value AS BIGINT) + 1 FROM meta WHERE name = 'generation')"
    };
}

/// Every column of a key record, for `key_from_row`.
macro_rules! key_columns {
    () => {
        "SELECT id, key_hash, hint, name, environment, models, providers, endpoints, source_cidrs, created_at, expires_at, revoked_at, revoke_reason, prev_key_hash, prev_valid_until, canary, redact_inbound, redact_outbound, rotate_every, rotation_grace, next_rotation_at, notify_secret, suspended_at, suspend_reason, owner, rpm, tpm, max_concurrent, daily_budget_pico, monthly_budget_pico, on_anomaly"
    };
}

impl Store {
    /// Stores a new key and its audit entries, in one transaction.
    pub async fn insert_key(&self, k: &KeyRecord, audit: Seal<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "INSERT INTO client_keys (id, key_hash, hint, name, environment, models, providers, endpoints, source_cidrs, created_at, expires_at, revoked_at, revoke_reason, canary, redact_inbound, redact_outbound, rotate_every, rotation_grace, next_rotation_at, notify_secret, owner, rpm, tpm, max_concurrent, daily_budget_pico, monthly_budget_pico, changed_gen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, ",
            next_generation!(),
            ")"
        ))
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
        self.commit_change(tx, audit).await?;
        Ok(())
    }

    /// Every client key, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(concat!(
            key_columns!(),
            " FROM client_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// The client key with this id, if any (revoked and expired ones too).
    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(concat!(key_columns!(), " FROM client_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Calls `each` with every client key, in no particular order, reading them
    /// as a stream: a million keys never sit in memory as rows all at once.
    pub async fn each_key(&self, mut each: impl FnMut(KeyRecord)) -> Result<()> {
        use futures_util::TryStreamExt as _;
        let mut rows = sqlx::query(concat!(key_columns!(), " FROM client_keys")).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            each(key_from_row(&row)?);
        }
        Ok(())
    }

    /// The keys changed after generation `since` (created, rotated, suspended,
    /// resumed, limited or revoked), by id.
    pub async fn keys_changed_since(&self, since: i64) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(concat!(
            key_columns!(),
            " FROM client_keys WHERE changed_gen > $1 ORDER BY id"
        ))
        .bind(since)
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
                concat!("UPDATE client_keys SET prev_key_hash = key_hash, prev_valid_until = $1, key_hash = $2, hint = $3, changed_gen = ", next_generation!(), " WHERE id = $4"),
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
            sqlx::query(concat!(
                "UPDATE client_keys SET suspended_at = $2, suspend_reason = $3, changed_gen = ",
                next_generation!(),
                " WHERE id = $1 AND revoked_at IS NULL"
            ))
            .bind(id)
            .bind(suspension.map(|s| s.0))
            .bind(suspension.map(|s| s.1.to_string())),
            audit,
        )
        .await
    }

    /// Sets a live key's own anomaly policy (`None`: the server's), audited in
    /// the same transaction. Returns false when no such key exists or it is
    /// revoked.
    pub async fn set_key_anomaly_policy(
        &self,
        id: &str,
        policy: Option<&str>,
        audit: Seal<'_>,
    ) -> Result<bool> {
        self.update_bumping(
            sqlx::query(concat!(
                "UPDATE client_keys SET on_anomaly = $1, changed_gen = ",
                next_generation!(),
                " WHERE id = $2 AND revoked_at IS NULL"
            ))
            .bind(policy.map(str::to_string))
            .bind(id.to_string()),
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
            sqlx::query(concat!(
                "UPDATE client_keys SET owner = $1, rpm = $2, tpm = $3, max_concurrent = $4, \
                 daily_budget_pico = $5, monthly_budget_pico = $6, changed_gen = ",
                next_generation!(),
                " WHERE id = $7 AND revoked_at IS NULL"
            ))
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
        let n = sqlx::query(concat!(
            "UPDATE client_keys SET next_rotation_at = $3, changed_gen = ",
            next_generation!(),
            " WHERE id = $1 AND next_rotation_at = $2 AND revoked_at IS NULL"
        ))
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
        sqlx::query(concat!(
            "UPDATE client_keys SET revoked_at = $1, revoke_reason = $2, changed_gen = ",
            next_generation!(),
            " WHERE id = $3 AND revoked_at IS NULL"
        ))
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.commit_change(tx, audit).await?;
        Ok(true)
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
        on_anomaly: r.try_get("on_anomaly")?,
    })
}
