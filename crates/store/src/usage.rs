//! The `usage_records` table: metered requests, appended in batches, summed by
//! key, environment, provider, model or day.

use crate::{Backend, Result, Store};
use sqlx::Row;

/// One metered request as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub at_ms: i64,
    pub request_id: String,
    pub key_id: String,
    pub environment: String,
    pub provider: String,
    pub model: String,
    pub endpoint: String,
    pub status: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_pico: Option<i64>,
    pub complete: bool,
    /// `issuer:subject` for a request made with a user's identity token.
    pub subject: Option<String>,
    /// The owner the request counted under when it was made.
    pub owner: Option<String>,
}

/// What usage is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    Key,
    /// The key's owner as it is now; for identity-token requests, their
    /// rule's owner when they were made (`-` for none).
    Owner,
    Environment,
    Provider,
    Model,
    /// The UTC calendar day (`2026-12-01`).
    Day,
    /// The end user (`issuer:subject`; `-` for requests made with a key).
    User,
}

/// Totals of one group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotals {
    pub group: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// Summed over the priced requests.
    pub cost_pico: i64,
    /// Requests whose model had no known price (not in `cost_pico`).
    pub unpriced: i64,
    /// Requests whose usage was not reported whole (a lower bound).
    pub incomplete: i64,
}

/// One group's requests, tokens (every kind) and spend on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayTotals {
    /// `2026-12-01`.
    pub day: String,
    pub group: String,
    pub requests: i64,
    pub tokens: i64,
    pub cost_pico: i64,
}

/// The SQL expression a usage row is grouped by.
fn group_sql(by: UsageGroup, backend: Backend) -> &'static str {
    match (by, backend) {
        (UsageGroup::Key, _) => "key_id",
        (UsageGroup::Owner, _) => {
            "COALESCE((SELECT owner FROM client_keys k WHERE k.id = usage_records.key_id), usage_records.owner, '-')"
        }
        (UsageGroup::Environment, _) => "environment",
        (UsageGroup::User, _) => "COALESCE(subject, '-')",
        (UsageGroup::Provider, _) => "provider",
        (UsageGroup::Model, _) => "model",
        (UsageGroup::Day, Backend::Sqlite) => "strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch')",
        (UsageGroup::Day, Backend::Postgres) => {
            "to_char(to_timestamp(at_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    }
}

/// Rows per INSERT statement: 17 parameters each, well under SQLite's and
/// PostgreSQL's parameter limits. One statement per row cost the store's worker
/// thread most of its time under load.
pub const ROWS_PER_INSERT: usize = 64;

/// Columns of a usage row, in the order [`Store::insert_usage`] binds them.
const USAGE_COLUMNS: usize = 17;

/// `INSERT … VALUES ($1, …, $17), ($18, …)` for `rows` rows; on SQLite with
/// anonymous `?` parameters instead, bound in order. (SQLite finds the name of
/// a numbered parameter by walking a list of all of them, and the driver asks
/// for every one: numbered parameters made a 64-row insert cost 1,088² steps,
/// 11% of the gateway's CPU under load.)
fn insert_usage_sql(rows: usize, backend: Backend) -> String {
    let mut sql = String::from(
        "INSERT INTO usage_records (at_ms, request_id, key_id, environment, provider, model, endpoint, status, \
         input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_pico, complete, subject, owner) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..USAGE_COLUMNS {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", r * USAGE_COLUMNS + c + 1)),
            }
        }
        sql.push(')');
    }
    sql
}

impl Store {
    /// Per key and hour (hours since 1970, UTC) since `since_ms`: requests,
    /// tokens of every kind and cost in pico-dollars; the history the anomaly
    /// detectors start from.
    pub async fn usage_hourly(&self, since_ms: i64) -> Result<Vec<(String, i64, i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT key_id, at_ms / 3600000 AS hour, COUNT(*) AS requests, \
             CAST(SUM(input_tokens + output_tokens + cached_input_tokens + cache_write_tokens) AS BIGINT) AS tokens, \
             CAST(SUM(COALESCE(cost_pico, 0)) AS BIGINT) AS cost FROM usage_records \
             WHERE at_ms >= $1 GROUP BY key_id, at_ms / 3600000",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Appends `rows` in one transaction, [`ROWS_PER_INSERT`] rows a statement.
    pub async fn insert_usage(&self, rows: &[UsageRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = insert_usage_sql(chunk.len(), self.backend);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.at_ms)
                    .bind(&r.request_id)
                    .bind(&r.key_id)
                    .bind(&r.environment)
                    .bind(&r.provider)
                    .bind(&r.model)
                    .bind(&r.endpoint)
                    .bind(r.status)
                    .bind(r.input_tokens)
                    .bind(r.output_tokens)
                    .bind(r.cached_input_tokens)
                    .bind(r.cache_write_tokens)
                    .bind(r.reasoning_tokens)
                    .bind(r.cost_pico)
                    .bind(i64::from(r.complete))
                    .bind(&r.subject)
                    .bind(&r.owner);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Totals per group of the requests at or after `since_ms`, ordered by group.
    pub async fn usage_totals(&self, by: UsageGroup, since_ms: i64) -> Result<Vec<UsageTotals>> {
        let group = group_sql(by, self.backend);
        let sum = |c: &str| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)");
        let sql = format!(
            "SELECT {group} AS grp, CAST(COUNT(*) AS BIGINT) AS requests, {}, {}, {}, {}, {}, {}, \
             CAST(SUM(CASE WHEN cost_pico IS NULL THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN complete = 0 THEN 1 ELSE 0 END) AS BIGINT) \
             FROM usage_records WHERE at_ms >= $1 GROUP BY grp ORDER BY grp",
            sum("input_tokens"),
            sum("output_tokens"),
            sum("cached_input_tokens"),
            sum("cache_write_tokens"),
            sum("reasoning_tokens"),
            sum("cost_pico"),
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageTotals {
                    group: r.try_get(0)?,
                    requests: r.try_get(1)?,
                    input_tokens: r.try_get(2)?,
                    output_tokens: r.try_get(3)?,
                    cached_input_tokens: r.try_get(4)?,
                    cache_write_tokens: r.try_get(5)?,
                    reasoning_tokens: r.try_get(6)?,
                    cost_pico: r.try_get(7)?,
                    unpriced: r.try_get(8)?,
                    incomplete: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Per UTC day and group (`by`), the requests at or after `since_ms`:
    /// requests, tokens and spend, ordered by day then group.
    pub async fn usage_daily(&self, by: UsageGroup, since_ms: i64) -> Result<Vec<DayTotals>> {
        let sql = format!(
            "SELECT {} AS day, {} AS grp, CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(input_tokens + output_tokens + cached_input_tokens + cache_write_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost_pico), 0) AS BIGINT) \
             FROM usage_records WHERE at_ms >= $1 GROUP BY day, grp ORDER BY day, grp",
            group_sql(UsageGroup::Day, self.backend),
            group_sql(by, self.backend),
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DayTotals {
                    day: r.try_get(0)?,
                    group: r.try_get(1)?,
                    requests: r.try_get(2)?,
                    tokens: r.try_get(3)?,
                    cost_pico: r.try_get(4)?,
                })
            })
            .collect()
    }
}
