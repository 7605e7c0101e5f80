//! Running servers: which generation each serves, for changes that wait until
//! every replica applied them.

use super::*;

impl Store {
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
