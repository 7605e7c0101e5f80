//! The `alerts` table (every alert raised, with its delivery state) and the
//! `key_sources` table (the networks each key was used from). Neither is part of
//! the key directory: writing them bumps no generation.

use crate::{Result, Store};
use sqlx::Row;

/// One alert as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRow {
    pub id: String,
    pub at_ms: i64,
    pub kind: String,
    pub severity: String,
    pub key_id: Option<String>,
    /// The alert as sent, a JSON object.
    pub body: String,
    /// `pending`, `delivered`, `undeliverable` or `log_only`.
    pub delivery: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When an operator acknowledged it (Unix milliseconds), and who.
    pub acked_ms: Option<i64>,
    pub acked_by: Option<String>,
}

impl Store {
    /// Stores a new alert.
    pub async fn insert_alert(&self, a: &AlertRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO alerts (id, at_ms, kind, severity, key_id, body, delivery, attempts, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(a.at_ms)
        .bind(&a.kind)
        .bind(&a.severity)
        .bind(&a.key_id)
        .bind(&a.body)
        .bind(&a.delivery)
        .bind(a.attempts)
        .bind(&a.last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a delivery attempt's outcome.
    pub async fn set_alert_delivery(
        &self,
        id: &str,
        delivery: &str,
        attempts: i64,
        last_error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE alerts SET delivery = $1, attempts = $2, last_error = $3 WHERE id = $4",
        )
        .bind(delivery)
        .bind(attempts)
        .bind(last_error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Alerts raised at or after `since_ms`, newest first, at most `limit`;
    /// with `undelivered`, only those no webhook took.
    pub async fn alerts(
        &self,
        since_ms: i64,
        undelivered: bool,
        limit: i64,
    ) -> Result<Vec<AlertRow>> {
        let sql = if undelivered {
            "SELECT id, at_ms, kind, severity, key_id, body, delivery, attempts, last_error, acked_ms, acked_by FROM alerts \
             WHERE at_ms >= $1 AND delivery IN ('pending', 'undeliverable') ORDER BY at_ms DESC, id LIMIT $2"
        } else {
            "SELECT id, at_ms, kind, severity, key_id, body, delivery, attempts, last_error, acked_ms, acked_by FROM alerts \
             WHERE at_ms >= $1 ORDER BY at_ms DESC, id LIMIT $2"
        };
        let rows = sqlx::query(sql)
            .bind(since_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Alerts raised at or after `since_ms` that no one acknowledged, newest
    /// first, at most `limit`, and how many there are in all.
    pub async fn open_alerts(&self, since_ms: i64, limit: i64) -> Result<(Vec<AlertRow>, i64)> {
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, severity, key_id, body, delivery, attempts, last_error, acked_ms, acked_by FROM alerts \
             WHERE at_ms >= $1 AND acked_ms IS NULL ORDER BY at_ms DESC, id LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM alerts WHERE at_ms >= $1 AND acked_ms IS NULL",
        )
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            rows.iter().map(alert_from_row).collect::<Result<_>>()?,
            count,
        ))
    }

    /// Marks an alert acknowledged by `by`; false if there is no such alert
    /// or it was acknowledged already (the first acknowledgement stands).
    pub async fn acknowledge_alert(&self, id: &str, by: &str, at_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET acked_ms = $1, acked_by = $2 WHERE id = $3 AND acked_ms IS NULL",
        )
        .bind(at_ms)
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that `key_id` was used from `network`; true if it was new.
    pub async fn add_key_source(&self, key_id: &str, network: &str, at_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO key_sources (key_id, network, first_seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id, network) DO NOTHING",
        )
        .bind(key_id)
        .bind(network)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every (key id, network, first seen) pair known.
    pub async fn key_sources(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(
            sqlx::query_as("SELECT key_id, network, first_seen_ms FROM key_sources")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

fn alert_from_row(r: &sqlx::any::AnyRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: r.try_get("id")?,
        at_ms: r.try_get("at_ms")?,
        kind: r.try_get("kind")?,
        severity: r.try_get("severity")?,
        key_id: r.try_get("key_id")?,
        body: r.try_get("body")?,
        delivery: r.try_get("delivery")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        acked_ms: r.try_get("acked_ms")?,
        acked_by: r.try_get("acked_by")?,
    })
}
