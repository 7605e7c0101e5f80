//! Keyward's store: provider credentials (sealed, `secrets`), client-key records
//! (hashed, `keys`), admin keys, the audit log, usage records, replicas and a
//! change counter, one module per table family, over SQLite (the embedded default, WAL mode) or PostgreSQL,
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

mod admins;
mod alerts;
mod audit;
mod keys;
mod leases;
mod replicas;
mod secrets;
mod sessions;
mod usage;
pub use admins::AdminKeyRecord;
pub use alerts::AlertRow;
pub use audit::{AuditFilter, AuditRow, Seal, VersionSeal};
pub use keys::KeyRecord;
pub use secrets::{SealedVersion, StoredSecret};
pub use sessions::SessionRow;
pub use usage::{DayTotals, UsageGroup, UsageRow, UsageTotals};

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL's URL, for the change listener's own connection.
    listen_url: Option<Hidden>,
}

/// A URL that may carry a password: never shown by `Debug`.
#[derive(Clone)]
struct Hidden(String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// The PostgreSQL channel every committed change is announced on.
pub const CHANGES_CHANNEL: &str = "keyward_changes";

/// Notices of committed changes (PostgreSQL `LISTEN`), for servers to apply
/// them at once instead of at their next poll.
pub struct ChangeListener(sqlx::postgres::PgListener);

impl ChangeListener {
    /// Waits for the next change notice. After a lost connection it reconnects
    /// by itself; notices sent meanwhile are lost (the poll catches those).
    pub async fn next(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
    }
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
        let listen_url = (backend == Backend::Postgres).then(|| Hidden(url.clone()));
        Ok(Store {
            pool,
            backend,
            listen_url,
        })
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
        self.commit_change(tx, audit).await?;
        Ok(true)
    }

    /// A listener for committed changes: `None` on SQLite, which has no
    /// notices (servers poll it).
    pub async fn change_listener(&self) -> Result<Option<ChangeListener>> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let mut l = sqlx::postgres::PgListener::connect(&url.0).await?;
        l.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener(l)))
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

    /// The generation and when it was committed (Unix ms), read together.
    pub async fn generation_and_time(&self) -> Result<(i64, i64)> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, value FROM meta WHERE name IN ('generation', 'generation_at')",
        )
        .fetch_all(&self.pool)
        .await?;
        let get = |n: &'static str| {
            rows.iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.parse().ok())
                .ok_or(Error::Malformed("meta.generation"))
        };
        Ok((get("generation")?, get("generation_at").unwrap_or(0)))
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
}

impl Store {
    /// Ends a change: its audit entries and the generation bump commit with it,
    /// in one transaction, so a change is never without its record and every
    /// server notices it.
    async fn commit_change(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        audit: Seal<'_>,
    ) -> Result<()> {
        self.append_audit_in(&mut tx, audit).await?;
        self.bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bumps the change counter and, on PostgreSQL, announces the change to
    /// every listening server (delivered when the transaction commits).
    async fn bump_generation(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
        sqlx::query(
            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE name = 'generation'",
        )
        .execute(&mut **tx)
        .await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        sqlx::query("UPDATE meta SET value = $1 WHERE name = 'generation_at'")
            .bind(now_ms.to_string())
            .execute(&mut **tx)
            .await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
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

fn json(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

fn list(r: &AnyRow, col: &'static str) -> Result<Vec<String>> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|_| Error::Malformed(col))
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
