//! The rate, token and concurrency limiter in Redis: the same limits, the same
//! answers as [`crate::limits::LocalLimiter`], shared by every replica.
//!
//! Per scope four keys: the request log (a sorted set of admission times, for
//! the sliding requests-per-minute window), the token log and its running sum
//! (tokens of requests that finished in the last minute) and the concurrency
//! slots (a sorted set of lease ends). `admit.lua` checks every scope and then
//! takes every scope in one atomic step.

use super::{invocation_of, new_id, unavailable, BackgroundCall, Redis, ScriptArgs};
use crate::limits::{Exceeded, LimitError, LimitKind, Limiter, Limits, Permit, Remaining};
use futures_util::future::BoxFuture;
use std::sync::LazyLock;

static ADMIT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("admit.lua")));
static CHARGE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("charge.lua")));

/// The limiter port on Redis.
pub struct RedisLimiter {
    redis: Redis,
}

impl RedisLimiter {
    pub fn new(redis: Redis) -> RedisLimiter {
        RedisLimiter { redis }
    }

    async fn admit_limited(
        &self,
        limited: Vec<&(String, String, Limits)>,
    ) -> Result<Permit, LimitError> {
        let id = new_id();
        let mut args = ScriptArgs::default();
        for (scope, _, _) in &limited {
            for kind in ["r", "t", "ts", "c"] {
                args.keys.push(self.redis.key(kind, scope));
            }
        }
        args.args.push(id.clone());
        args.args.push(self.redis.lease.as_millis().to_string());
        for (_, _, l) in &limited {
            for v in [l.rpm, l.tpm, l.concurrency] {
                args.args.push(v.unwrap_or(0).to_string());
            }
        }
        let answer: Vec<i64> = invocation_of(&ADMIT, &args)
            .invoke_async(&mut self.redis.conn())
            .await
            .map_err(|e| LimitError::Unavailable(unavailable(e)))?;
        let bad = || LimitError::Unavailable(format!("Redis: unexpected answer {answer:?}"));
        match answer.as_slice() {
            [0, i, kind, limit, retry] => {
                let (_, label, _) = limited.get((*i as usize).wrapping_sub(1)).ok_or_else(bad)?;
                let kind = match kind {
                    1 => LimitKind::Requests,
                    2 => LimitKind::Tokens,
                    _ => LimitKind::Concurrency,
                };
                Err(LimitError::Exceeded(Exceeded {
                    scope: label.clone(),
                    kind,
                    limit: *limit as u64,
                    retry_after_ms: (*retry).max(1),
                }))
            }
            [1, limit, left, reset] => {
                let requests = (*limit >= 0).then(|| Remaining {
                    limit: *limit as u64,
                    remaining: (*left).max(0) as u64,
                    reset_ms: (*reset).max(0),
                });
                let slots: Vec<String> = limited
                    .iter()
                    .filter(|(_, _, l)| l.concurrency.is_some())
                    .map(|(scope, _, _)| self.redis.key("c", scope))
                    .collect();
                if slots.is_empty() {
                    let mut permit = Permit::none();
                    permit.requests = requests;
                    return Ok(permit);
                }
                let redis = self.redis.clone();
                Ok(Permit::releasing(
                    Box::new(move || {
                        for key in &slots {
                            let mut zrem = redis::cmd("ZREM");
                            zrem.arg(key).arg(&id);
                            redis.in_background(
                                "release a concurrency slot",
                                BackgroundCall::Command(zrem),
                            );
                        }
                    }),
                    requests,
                ))
            }
            _ => Err(bad()),
        }
    }
}

impl Limiter for RedisLimiter {
    fn admit<'a>(
        &'a self,
        scopes: &'a [(String, String, Limits)],
    ) -> BoxFuture<'a, Result<Permit, LimitError>> {
        let limited: Vec<&(String, String, Limits)> =
            scopes.iter().filter(|(_, _, l)| !l.is_empty()).collect();
        if limited.is_empty() {
            // Nothing to count: no round trip.
            return Box::pin(std::future::ready(Ok(Permit::none())));
        }
        Box::pin(self.admit_limited(limited))
    }

    fn charge_tokens(&self, scopes: &[String], tokens: u64) {
        if tokens == 0 || scopes.is_empty() {
            return;
        }
        let mut args = ScriptArgs::default();
        for scope in scopes {
            args.keys.push(self.redis.key("t", scope));
            args.keys.push(self.redis.key("ts", scope));
        }
        args.args = vec![new_id(), tokens.to_string()];
        self.redis
            .in_background("charge tokens", BackgroundCall::Script(&CHARGE, args));
    }
}
