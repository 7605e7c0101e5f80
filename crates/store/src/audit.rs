//! The audit log's rows, appended in the same transaction as the change they
//! record and chained by the caller's MACs.

use super::*;

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

/// What [`Store::audit_search`] selects; every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries whose actor starts with this.
    pub actor: Option<String>,
    /// Entries whose action starts with this (`keys.` for every key action).
    pub action: Option<String>,
    /// Entries about this key: it is the actor or the target.
    pub key: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
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
    pub(crate) async fn append_audit_in(
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
        rows.iter().map(audit_from_row).collect()
    }

    /// The newest entries that `filter` selects, newest first, at most `limit`.
    /// Prefixes are compared with `substr`, not `LIKE`, so `_` and `%` in them
    /// match only themselves.
    pub async fn audit_search(&self, filter: &AuditFilter, limit: i64) -> Result<Vec<AuditRow>> {
        let mut sql = String::from(
            "SELECT seq, at, actor, action, target, outcome, details, prev_mac, mac FROM audit_log WHERE 1 = 1",
        );
        let mut n = 0;
        let mut param = || {
            n += 1;
            format!("${n}")
        };
        if filter.actor.is_some() {
            let p = param();
            sql.push_str(&format!(" AND substr(actor, 1, length({p})) = {p}"));
        }
        if filter.action.is_some() {
            let p = param();
            sql.push_str(&format!(" AND substr(action, 1, length({p})) = {p}"));
        }
        if filter.key.is_some() {
            let p = param();
            sql.push_str(&format!(" AND (actor = {p} OR target = {p})"));
        }
        if filter.since.is_some() {
            sql.push_str(&format!(" AND at >= {}", param()));
        }
        if filter.until.is_some() {
            sql.push_str(&format!(" AND at < {}", param()));
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", param()));
        let mut q = sqlx::query(&sql);
        for text in [&filter.actor, &filter.action, &filter.key]
            .into_iter()
            .flatten()
        {
            q = q.bind(text.as_str());
        }
        for at in [filter.since, filter.until].into_iter().flatten() {
            q = q.bind(at);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// The newest audit sequence number (0 when empty).
    pub async fn audit_last_seq(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }
}

fn audit_from_row(r: &AnyRow) -> Result<AuditRow> {
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
}
