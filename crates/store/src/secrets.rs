//! Provider credentials: sealed versions per name, current, pooled, retired,
//! rolled back and re-wrapped under a new master key.

use super::*;

/// A sealed secret version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub name: String,
    pub version: i64,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

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

impl Store {
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
        self.commit_change(tx, &mut |seq, mac| audit(version, seq, mac))
            .await?;
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
        self.commit_change(tx, &mut |seq, mac| audit(rewrapped, seq, mac))
            .await?;
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
        self.commit_change(tx, &mut |seq, mac| audit(serving, seq, mac))
            .await?;
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
        self.commit_change(tx, audit).await?;
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
