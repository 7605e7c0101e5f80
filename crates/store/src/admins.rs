//! Keys for the admin HTTP API (hashed).

use super::*;

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
        self.commit_change(tx, audit).await?;
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
            self.bump_generation(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(exists.is_some())
    }
}
