//! Scale-out backends (`[cluster] redis_url`): the rate, token and concurrency
//! counters ([`limiter::RedisLimiter`]) and the budget ledger
//! ([`ledger::RedisLedger`]) in one Redis that every replica shares, each
//! decision one atomic Lua script, so limits and budgets stay exact however many
//! replicas serve.
//!
//! Contracts:
//! - Fail closed: when Redis cannot be reached within [`TIMEOUT`], a request
//!   that needs a counter is refused with 503 in the provider's format; service
//!   resumes by itself once Redis answers again (the connection manager
//!   reconnects in the background).
//! - Windows of the per-minute limits run on Redis's clock (`TIME`), not the
//!   replicas'; budget periods (UTC day and month) on the replica's clock.
//! - Concurrency slots and budget reservations are leased for [`LEASE`]: a
//!   replica that dies holding one does not hold it forever (a slot frees, a
//!   reservation is charged in full).
//! - Work after a response (releasing a slot, charging tokens, settling a
//!   reservation) never delays it: one background writer sends it in
//!   pipelines, many responses' worth to a round trip, retried with backoff for
//!   about half a minute.
//! - One Redis (a primary, with replicas for failover if wanted); Redis Cluster
//!   is not supported (the scripts touch several keys of one scope).

pub mod ledger;
pub mod limiter;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// How long a Redis call may take before the request it serves is refused.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a concurrency slot or a budget reservation is held at most (by
/// default: see [`Redis::with_lease`]).
pub const LEASE: Duration = Duration::from_secs(15 * 60);

/// A shared connection to the cluster's Redis and the prefix of every key.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    lease: Duration,
    /// Work after responses, for the background writer.
    queue: tokio::sync::mpsc::Sender<(&'static str, BackgroundCall)>,
}

impl Redis {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` for TLS); `prefix` starts every key Keyward writes.
    pub async fn connect(url: &str, prefix: &str) -> Result<Redis, String> {
        let shown = keyward_store::redact_url(url);
        let client = redis::Client::open(url).map_err(|e| {
            format!("[cluster] redis_url `{shown}` is not a Redis URL: {e} (expected redis://host:6379)")
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| {
                format!(
                    "cannot reach Redis at `{shown}`: {e}; start it, or leave [cluster] redis_url \
                     out to keep the counters in this process"
                )
            })?;
        let (queue, queued) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(background(conn.clone(), queued));
        Ok(Redis {
            conn,
            prefix: prefix.to_string(),
            lease: LEASE,
            queue,
        })
    }

    /// The same connection with slots and reservations leased for `lease`
    /// instead of [`LEASE`] (tests).
    pub fn with_lease(mut self, lease: Duration) -> Redis {
        self.lease = lease;
        self
    }

    /// The key `<prefix><kind>:<scope>`.
    fn key(&self, kind: &str, scope: &str) -> String {
        format!("{}{kind}:{scope}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Queues `call` to run after the response (see [`background`]); `what`
    /// names it in the log if it never succeeds. When the queue is full (Redis
    /// unreachable for long), the call is dropped and logged: the lease ends
    /// what it would have ended.
    fn in_background(&self, what: &'static str, call: BackgroundCall) {
        if self.queue.try_send((what, call)).is_err() {
            tracing::error!(
                "Redis: could not {what}: the background queue is full; the lease ends it"
            );
        }
    }
}

/// Work after a response, for [`Redis::in_background`].
pub(crate) enum BackgroundCall {
    /// A script with its keys and arguments.
    Script(&'static redis::Script, ScriptArgs),
    Command(redis::Cmd),
}

/// Most calls queued for the background writer.
const QUEUE: usize = 100_000;
/// Most calls sent in one pipeline.
const BATCH: usize = 512;

/// The background writer: sends queued calls in pipelines of up to [`BATCH`]
/// (one round trip for many responses' releases, token charges and
/// settlements), retrying the ones that failed for want of a connection with
/// backoff (1, 2, 4, 8, 16 s). A call Redis refused for another reason is
/// logged, not retried.
async fn background(
    mut conn: ConnectionManager,
    mut queue: tokio::sync::mpsc::Receiver<(&'static str, BackgroundCall)>,
) {
    while let Some(first) = queue.recv().await {
        let mut pending = vec![first];
        while pending.len() < BATCH {
            match queue.try_recv() {
                Ok(call) => pending.push(call),
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_secs(1);
        for attempt in 0..6 {
            let mut p = redis::pipe();
            p.ignore_errors();
            for (_, call) in &pending {
                p.add_command(match call {
                    BackgroundCall::Command(c) => c.clone(),
                    BackgroundCall::Script(script, a) => {
                        let mut c = redis::cmd("EVALSHA");
                        c.arg(script.get_hash())
                            .arg(a.keys.len())
                            .arg(&a.keys)
                            .arg(&a.args);
                        c
                    }
                });
            }
            let retry: Vec<(&'static str, BackgroundCall)> = match p
                .query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut conn)
                .await
            {
                Ok(results) => {
                    let mut retry = Vec::new();
                    let mut unloaded = false;
                    for ((what, call), result) in pending.into_iter().zip(results) {
                        match result {
                            Ok(_) => {}
                            Err(e) if e.code() == Some("NOSCRIPT") => {
                                // Redis restarted and forgot the scripts.
                                unloaded = true;
                                retry.push((what, call));
                            }
                            Err(e) if e.is_io_error() || e.is_timeout() => retry.push((what, call)),
                            Err(e) => tracing::error!("Redis: could not {what}: {e}"),
                        }
                    }
                    if unloaded {
                        for (_, call) in &retry {
                            if let BackgroundCall::Script(script, _) = call {
                                let _ = script.load_async(&mut conn).await;
                            }
                        }
                    }
                    retry
                }
                Err(_) => pending,
            };
            pending = retry;
            if pending.is_empty() {
                break;
            }
            if attempt == 5 {
                for (what, _) in &pending {
                    tracing::error!("Redis: could not {what}; giving up (the lease ends it)");
                }
                break;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
}

/// A script invocation's keys and arguments, kept to retry it.
#[derive(Default)]
pub(crate) struct ScriptArgs {
    keys: Vec<String>,
    args: Vec<String>,
}

fn invocation_of<'a>(script: &'a redis::Script, a: &ScriptArgs) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for k in &a.keys {
        inv.key(k);
    }
    for v in &a.args {
        inv.arg(v);
    }
    inv
}

/// A random id for a slot, a token charge or a reservation.
fn new_id() -> String {
    keyward_vault::random_base62(16)
}

/// Redis's own message, for the log (never shown to clients).
fn unavailable(e: redis::RedisError) -> String {
    format!("Redis: {e}")
}
