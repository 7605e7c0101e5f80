//! The budget ledger in Redis: reservations and spend per scope and period,
//! shared by every replica, with the same contract as
//! [`crate::budget::LocalLedger`] (see `reserve.lua` for the layout).
//!
//! Spend kept in Redis is seeded once from the stored usage records, by the
//! first replica that finds the ledger empty (a fresh or restarted Redis); the
//! others wait for it (their requests get 503 meanwhile). Spend settled between
//! a Redis restart and the seeding may be counted twice: the ledger errs towards
//! refusing, never towards overspending.

use super::{invocation_of, new_id, unavailable, BackgroundCall, Redis, ScriptArgs};
use crate::budget::{
    check, left_of, periods, stored_spend, Booking, Budget, BudgetError, BudgetLedger, Reservation,
    Settle, Spent,
};
use crate::time::{Clock, SystemClock};
use futures_util::future::BoxFuture;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static RESERVE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("reserve.lua")));
static SETTLE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("settle.lua")));

/// Scopes written per command while seeding.
const SEED_BATCH: usize = 1000;
/// How long one replica may hold the right to seed.
const SEED_CLAIM: Duration = Duration::from_secs(60);

/// The budget ledger port on Redis.
pub struct RedisLedger {
    redis: Redis,
    store: keyward_store::Store,
    clock: Arc<dyn Clock>,
    settler: Arc<RedisSettler>,
    /// One seeding at a time in this process.
    seeding: tokio::sync::Mutex<()>,
}

struct RedisSettler {
    redis: Redis,
    clock: Arc<dyn Clock>,
}

impl Settle for RedisSettler {
    fn settle(&self, booking: &Booking, cost: i64) {
        let (day, month) = periods(self.clock.now_ms());
        let mut args = ScriptArgs {
            args: vec![
                self.redis.prefix.clone(),
                booking.id.clone(),
                booking.amount.to_string(),
                booking.day.to_string(),
                booking.month.to_string(),
                cost.to_string(),
                day.to_string(),
                month.to_string(),
            ],
            ..Default::default()
        };
        args.args.extend(booking.scopes.iter().cloned());
        self.redis.in_background(
            "settle a budget reservation",
            BackgroundCall::Script(&SETTLE, args),
        );
    }
}

impl RedisLedger {
    /// A ledger on `redis`, seeded (when Redis has no ledger yet) from `store`.
    pub fn new(redis: Redis, store: keyward_store::Store) -> RedisLedger {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        RedisLedger {
            settler: Arc::new(RedisSettler {
                redis: redis.clone(),
                clock: clock.clone(),
            }),
            redis,
            store,
            clock,
            seeding: tokio::sync::Mutex::new(()),
        }
    }

    fn seeded_key(&self) -> String {
        format!("{}b:seeded", self.redis.prefix)
    }

    /// Writes the stored spend into an empty ledger, unless another replica
    /// does or did; returns once the ledger is seeded or after a few seconds.
    async fn seed(&self) -> Result<(), BudgetError> {
        let _one = self.seeding.lock().await;
        let mut conn = self.redis.conn();
        let seeded = self.seeded_key();
        let claim = format!("{}b:seeding", self.redis.prefix);
        let redis_err = |e| BudgetError::Unavailable(unavailable(e));
        for _ in 0..50 {
            let done: bool = redis::cmd("EXISTS")
                .arg(&seeded)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if done {
                return Ok(());
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&claim)
                .arg(new_id())
                .arg("NX")
                .arg("PX")
                .arg(SEED_CLAIM.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if claimed.is_none() {
                // Another replica is seeding.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let now = self.clock.now_ms();
            let (day, month) = periods(now);
            let spend = stored_spend(&self.store, now).await.map_err(|e| {
                BudgetError::Unavailable(format!("cannot read stored spend to seed Redis: {e}"))
            })?;
            let entries: Vec<(String, (i64, i64))> = spend.into_iter().collect();
            for batch in entries.chunks(SEED_BATCH) {
                let mut p = redis::pipe();
                for (scope, (day_spent, month_spent)) in batch {
                    let d = format!("{}b:{scope}:d:{day}", self.redis.prefix);
                    let m = format!("{}b:{scope}:m:{month}", self.redis.prefix);
                    p.hincr(&d, "spent", *day_spent).ignore();
                    p.hincr(&m, "spent", *month_spent).ignore();
                    p.pexpire(&d, 3 * 86_400_000).ignore();
                    p.pexpire(&m, 40 * 86_400_000).ignore();
                }
                let _: () = p.query_async(&mut conn).await.map_err(redis_err)?;
            }
            let _: () = redis::pipe()
                .set(&seeded, now)
                .ignore()
                .del(&claim)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            tracing::info!(
                scopes = entries.len(),
                "budget ledger seeded in Redis from the stored usage"
            );
            return Ok(());
        }
        Err(BudgetError::Unavailable(
            "the budget ledger in Redis is still being seeded by another replica".into(),
        ))
    }

    async fn reserve_budgeted(
        &self,
        scopes: &[(String, String, Budget)],
        amount: i64,
    ) -> Result<Reservation, BudgetError> {
        let now = self.clock.now_ms();
        let (day, month) = periods(now);
        let id = new_id();
        let mut args = ScriptArgs {
            args: vec![
                self.redis.prefix.clone(),
                id.clone(),
                amount.to_string(),
                (now + self.redis.lease.as_millis() as i64).to_string(),
                day.to_string(),
                month.to_string(),
            ],
            ..Default::default()
        };
        for (scope, _, b) in scopes {
            args.args.push(scope.clone());
            args.args.push(b.daily.unwrap_or(-1).to_string());
            args.args.push(b.monthly.unwrap_or(-1).to_string());
        }
        for attempt in 0..2 {
            let answer: Vec<i64> = invocation_of(&RESERVE, &args)
                .invoke_async(&mut self.redis.conn())
                .await
                .map_err(|e| BudgetError::Unavailable(unavailable(e)))?;
            match answer.as_slice() {
                [1, spent @ ..] if spent.len() == 2 * scopes.len() => {
                    return Ok(Reservation::new(
                        self.settler.clone(),
                        Booking {
                            id,
                            scopes: scopes.iter().map(|(s, _, _)| s.clone()).collect(),
                            amount,
                            day,
                            month,
                        },
                        spent.chunks(2).map(|c| (day, c[0], month, c[1])).collect(),
                    ));
                }
                [0, i, day_committed, month_committed] => {
                    let Some((_, label, b)) = scopes.get((*i as usize).wrapping_sub(1)) else {
                        break;
                    };
                    return Err(BudgetError::Over(
                        check(label, b, (*day_committed, *month_committed), amount, now)
                            .err()
                            .unwrap_or_else(|| crate::budget::OverBudget {
                                scope: label.clone(),
                                period: "daily",
                                budget: b.daily.or(b.monthly).unwrap_or(0),
                                committed: *day_committed,
                                resets_in_ms: 1000,
                            }),
                    ));
                }
                [-1] if attempt == 0 => self.seed().await?,
                _ => break,
            }
        }
        Err(BudgetError::Unavailable(
            "Redis: unexpected answer from the reserve script".into(),
        ))
    }

    /// `(day committed, month committed, day spent, month spent)` per scope.
    async fn read(&self, scopes: &[&str]) -> Result<Vec<[i64; 4]>, BudgetError> {
        let (day, month) = periods(self.clock.now_ms());
        let mut p = redis::pipe();
        for scope in scopes {
            p.cmd("HMGET")
                .arg(format!("{}b:{scope}:d:{day}", self.redis.prefix))
                .arg("spent")
                .arg("reserved");
            p.cmd("HMGET")
                .arg(format!("{}b:{scope}:m:{month}", self.redis.prefix))
                .arg("spent")
                .arg("reserved");
        }
        let rows: Vec<(Option<i64>, Option<i64>)> = p
            .query_async(&mut self.redis.conn())
            .await
            .map_err(|e| BudgetError::Unavailable(unavailable(e)))?;
        Ok(rows
            .chunks(2)
            .map(|c| {
                let (ds, dr) = (c[0].0.unwrap_or(0), c[0].1.unwrap_or(0));
                let (ms, mr) = (c[1].0.unwrap_or(0), c[1].1.unwrap_or(0));
                [ds + dr, ms + mr, ds, ms]
            })
            .collect())
    }
}

impl BudgetLedger for RedisLedger {
    fn reserve<'a>(
        &'a self,
        scopes: &'a [(String, String, Budget)],
        amount: i64,
    ) -> BoxFuture<'a, Result<Reservation, BudgetError>> {
        if scopes.iter().all(|(_, _, b)| b.is_empty()) {
            // Nothing to check: no round trip now, the real cost booked at the end.
            let (day, month) = periods(self.clock.now_ms());
            let booking = Booking {
                id: new_id(),
                scopes: scopes.iter().map(|(s, _, _)| s.clone()).collect(),
                amount: 0,
                day,
                month,
            };
            let settler: Arc<dyn Settle> = self.settler.clone();
            return Box::pin(std::future::ready(Ok(Reservation::new(
                settler,
                booking,
                Vec::new(),
            ))));
        }
        Box::pin(self.reserve_budgeted(scopes, amount))
    }

    fn remaining<'a>(
        &'a self,
        scopes: &'a [(String, String, Budget)],
    ) -> BoxFuture<'a, Result<Option<i64>, BudgetError>> {
        Box::pin(async move {
            let budgeted: Vec<&(String, String, Budget)> =
                scopes.iter().filter(|(_, _, b)| !b.is_empty()).collect();
            if budgeted.is_empty() {
                return Ok(None);
            }
            let ids: Vec<&str> = budgeted.iter().map(|(s, _, _)| s.as_str()).collect();
            let rows = self.read(&ids).await?;
            Ok(budgeted
                .iter()
                .zip(rows)
                .filter_map(|((_, _, b), r)| left_of(b, (r[0], r[1])))
                .min())
        })
    }

    fn spent<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Spent, BudgetError>> {
        Box::pin(async move {
            let (day, month) = periods(self.clock.now_ms());
            let r = self.read(&[scope]).await?;
            Ok((day, r[0][2], month, r[0][3]))
        })
    }
}
