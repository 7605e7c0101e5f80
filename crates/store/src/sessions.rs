//! The `console_sessions` table: signed-in console sessions, by a keyed hash of
//! their id (the id itself is only ever in the browser's cookie). Not part of
//! the key directory: writing it bumps no generation.

use crate::{Result, Store};
use sqlx::Row;

/// One console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Keyed hash of the session id.
    pub id_hash: String,
    /// The admin key the session was opened with.
    pub admin_key_id: String,
    pub created_ms: i64,
    /// Last request seen (for the idle timeout); updated at most once a minute.
    pub seen_ms: i64,
    /// The absolute end of the session.
    pub expires_ms: i64,
}

impl Store {
    /// Stores a new session.
    pub async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, admin_key_id, created_ms, seen_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id_hash)
        .bind(&s.admin_key_id)
        .bind(s.created_ms)
        .bind(s.seen_ms)
        .bind(s.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id hash, if stored (expired or not: the caller decides).
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT id_hash, admin_key_id, created_ms, seen_ms, expires_ms FROM console_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                id_hash: r.try_get("id_hash")?,
                admin_key_id: r.try_get("admin_key_id")?,
                created_ms: r.try_get("created_ms")?,
                seen_ms: r.try_get("seen_ms")?,
                expires_ms: r.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    /// Records activity on a session.
    pub async fn touch_session(&self, id_hash: &str, seen_ms: i64) -> Result<()> {
        sqlx::query("UPDATE console_sessions SET seen_ms = $1 WHERE id_hash = $2")
            .bind(seen_ms)
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session; true if it existed.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes sessions past their absolute end or idle since before
    /// `idle_before_ms`; returns how many.
    pub async fn delete_stale_sessions(&self, now_ms: i64, idle_before_ms: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE expires_ms <= $1 OR seen_ms < $2")
                .bind(now_ms)
                .bind(idle_before_ms)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
