//! Spend budgets per day and per month (UTC), exact under concurrency: before a
//! call its worst-case cost is reserved against every budget that applies, and
//! the call is refused when any cannot cover it; when it ends, the reservation
//! is settled to what it really cost. So concurrent requests can never spend
//! past a budget together, and no reservation outlives its request.
//!
//! [`BudgetLedger`] is the port; [`LocalLedger`] keeps the ledger in this
//! process, seeded at start from the stored usage records of the current day and
//! month; `cluster::RedisLedger` keeps it in Redis, shared by every replica. A
//! ledger that cannot be reached refuses ([`BudgetError::Unavailable`]).

use crate::time::Clock;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Budgets of one scope, in pico-dollars; `None`: no budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Budget {
    pub daily: Option<i64>,
    pub monthly: Option<i64>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        self.daily.is_none() && self.monthly.is_none()
    }
}

/// The UTC day number and the UTC month (`year * 12 + month0`) of a time.
pub fn periods(now_ms: i64) -> (i64, i64) {
    let day = now_ms.div_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (day, year * 12 + (month - 1))
}

/// Unix milliseconds at the start of the UTC month `m` (as [`periods`] counts).
pub fn month_start_ms(m: i64) -> i64 {
    let (year, month) = (m.div_euclid(12), m.rem_euclid(12) + 1);
    // Days from civil (the inverse of the above).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400_000
}

/// Which budget refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    /// `key`, `owner `x``, `environment `y``.
    pub scope: String,
    /// `daily` or `monthly`.
    pub period: &'static str,
    pub budget: i64,
    /// Spent and reserved in the period so far.
    pub committed: i64,
    /// Milliseconds until the period ends.
    pub resets_in_ms: i64,
}

#[derive(Default)]
struct Spend {
    day: i64,
    month: i64,
    day_spent: i64,
    month_spent: i64,
    day_reserved: i64,
    month_reserved: i64,
}

impl Spend {
    fn roll(&mut self, day: i64, month: i64) {
        if self.day != day {
            self.day = day;
            self.day_spent = 0;
        }
        if self.month != month {
            self.month = month;
            self.month_spent = 0;
        }
    }
}

/// What one reservation booked: enough for its backend to settle it.
#[derive(Debug, Clone, Default)]
pub struct Booking {
    /// Unique per reservation (backends that keep reservations by name).
    pub id: String,
    /// Every scope booked, budgeted or not.
    pub scopes: Vec<String>,
    /// The worst case reserved (pico-dollars).
    pub amount: i64,
    /// The UTC day and month it was taken in, as [`periods`] counts them.
    pub day: i64,
    pub month: i64,
}

/// A backend's half of a reservation: turns the booking into spend.
pub trait Settle: Send + Sync {
    /// Releases `booking.amount` from the period it was reserved in and adds
    /// `cost` to the current period's spend of every scope (without waiting: a
    /// backend with I/O does it in the background).
    fn settle(&self, booking: &Booking, cost: i64);
}

/// A reservation: settled once with [`Reservation::settle`], or on drop with its
/// whole amount (a request whose cost is unknown is charged its worst case).
pub struct Reservation {
    settler: Option<Arc<dyn Settle>>,
    booking: Booking,
    /// What each booked scope had spent when it was reserved (for the budget
    /// threshold alerts, without asking the ledger again), in `booking.scopes`
    /// order; empty when the backend did not read it.
    spent: Vec<Spent>,
}

impl Reservation {
    /// A reservation that holds nothing (no budget applies).
    pub fn none() -> Reservation {
        Reservation {
            settler: None,
            booking: Booking::default(),
            spent: Vec::new(),
        }
    }

    /// A reservation that `settler` settles; `spent` as [`Reservation::spent_of`]
    /// reports it.
    pub fn new(settler: Arc<dyn Settle>, booking: Booking, spent: Vec<Spent>) -> Reservation {
        Reservation {
            settler: Some(settler),
            booking,
            spent,
        }
    }

    /// What `scope` had spent (settled) when this was reserved, if known.
    pub fn spent_of(&self, scope: &str) -> Option<Spent> {
        let i = self.booking.scopes.iter().position(|s| s == scope)?;
        self.spent.get(i).copied()
    }

    /// The amount reserved (pico-dollars).
    pub fn amount(&self) -> i64 {
        self.booking.amount
    }

    /// Replaces the reservation with the request's real cost.
    pub fn settle(mut self, cost: i64) {
        self.finish(cost);
    }

    fn finish(&mut self, cost: i64) {
        if let Some(settler) = self.settler.take() {
            settler.settle(&self.booking, cost);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let amount = self.booking.amount;
        self.finish(amount);
    }
}

/// Why a reservation (or a read of the ledger) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetError {
    /// A budget cannot cover the request's worst case.
    Over(OverBudget),
    /// The ledger cannot be reached: nothing can be reserved (fail closed). The
    /// text is for the log, never for the client.
    Unavailable(String),
}

/// A scope's settled spend: `(day, day_spent, month, month_spent)`, the
/// periods numbered as [`periods`] counts them.
pub type Spent = (i64, i64, i64, i64);

/// The port.
pub trait BudgetLedger: Send + Sync {
    /// Reserves `amount` under every `(scope id, label, budget)` given, or
    /// refuses with the first budget it would exceed (reserving nothing). Scopes
    /// without a budget are booked too, so that one set later knows the spend.
    fn reserve<'a>(
        &'a self,
        scopes: &'a [(String, String, Budget)],
        amount: i64,
    ) -> BoxFuture<'a, Result<Reservation, BudgetError>>;
    /// What is left of the tightest budget among `scopes` (`None`: no budget).
    fn remaining<'a>(
        &'a self,
        scopes: &'a [(String, String, Budget)],
    ) -> BoxFuture<'a, Result<Option<i64>, BudgetError>>;
    /// What `scope` really spent (settled) this UTC day and month.
    fn spent<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Spent, BudgetError>>;
}

struct LocalLedgerState {
    clock: Arc<dyn Clock>,
    spend: Mutex<HashMap<String, Spend>>,
}

impl Settle for LocalLedgerState {
    fn settle(&self, booking: &Booking, cost: i64) {
        let mut state = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let (day, month) = periods(self.clock.now_ms());
        for id in &booking.scopes {
            let s = state.entry(id.clone()).or_default();
            // Released in the period it was taken in; spent in the current one.
            if s.day == booking.day {
                s.day_reserved -= booking.amount;
            }
            if s.month == booking.month {
                s.month_reserved -= booking.amount;
            }
            s.roll(day, month);
            s.day_spent += cost;
            s.month_spent += cost;
        }
    }
}

/// The in-process ledger.
pub struct LocalLedger(Arc<LocalLedgerState>);

impl LocalLedger {
    pub fn new(clock: Arc<dyn Clock>) -> LocalLedger {
        LocalLedger(Arc::new(LocalLedgerState {
            clock,
            spend: Default::default(),
        }))
    }

    /// Records what a scope already spent today and this month (at start).
    pub fn seed(&self, scope: &str, day_spent: i64, month_spent: i64) {
        let (day, month) = periods(self.0.clock.now_ms());
        let mut state = self.0.spend.lock().unwrap_or_else(|e| e.into_inner());
        let s = state.entry(scope.to_string()).or_default();
        s.roll(day, month);
        s.day_spent += day_spent;
        s.month_spent += month_spent;
    }

    /// [`BudgetLedger::reserve`], at once.
    pub fn try_reserve(
        &self,
        scopes: &[(String, String, Budget)],
        amount: i64,
    ) -> Result<Reservation, OverBudget> {
        let now = self.0.clock.now_ms();
        let (day, month) = periods(now);
        let mut state = self.0.spend.lock().unwrap_or_else(|e| e.into_inner());
        for (id, label, b) in scopes.iter().filter(|s| !s.2.is_empty()) {
            let s = state.entry(id.clone()).or_default();
            s.roll(day, month);
            check(
                label,
                b,
                (
                    s.day_spent + s.day_reserved,
                    s.month_spent + s.month_reserved,
                ),
                amount,
                now,
            )?;
        }
        // Every scope is booked, budgeted or not: a budget set later starts from
        // what was really spent.
        let mut spent = Vec::with_capacity(scopes.len());
        for (id, _, _) in scopes {
            let s = state.entry(id.clone()).or_default();
            s.roll(day, month);
            s.day_reserved += amount;
            s.month_reserved += amount;
            spent.push((day, s.day_spent, month, s.month_spent));
        }
        Ok(Reservation::new(
            self.0.clone(),
            Booking {
                id: String::new(),
                scopes: scopes.iter().map(|(id, _, _)| id.clone()).collect(),
                amount,
                day,
                month,
            },
            spent,
        ))
    }

    /// [`BudgetLedger::spent`], at once.
    pub fn spent_now(&self, scope: &str) -> Spent {
        let (day, month) = periods(self.0.clock.now_ms());
        let mut state = self.0.spend.lock().unwrap_or_else(|e| e.into_inner());
        match state.get_mut(scope) {
            Some(s) => {
                s.roll(day, month);
                (day, s.day_spent, month, s.month_spent)
            }
            None => (day, 0, month, 0),
        }
    }

    /// [`BudgetLedger::remaining`], at once.
    pub fn remaining_now(&self, scopes: &[(String, String, Budget)]) -> Option<i64> {
        let (day, month) = periods(self.0.clock.now_ms());
        let mut state = self.0.spend.lock().unwrap_or_else(|e| e.into_inner());
        let mut least: Option<i64> = None;
        for (id, _, b) in scopes.iter().filter(|s| !s.2.is_empty()) {
            let s = state.entry(id.clone()).or_default();
            s.roll(day, month);
            let left = left_of(
                b,
                (
                    s.day_spent + s.day_reserved,
                    s.month_spent + s.month_reserved,
                ),
            );
            least = min_left(least, left);
        }
        least
    }
}

/// Refuses `amount` on top of `committed` (day, month) when a budget of `b`
/// cannot cover it; `now` dates the refusal's reset.
pub fn check(
    label: &str,
    b: &Budget,
    committed: (i64, i64),
    amount: i64,
    now: i64,
) -> Result<(), OverBudget> {
    let (day, month) = periods(now);
    let checks = [
        ("daily", b.daily, committed.0, (day + 1) * 86_400_000),
        ("monthly", b.monthly, committed.1, month_start_ms(month + 1)),
    ];
    for (period, limit, committed, ends) in checks {
        if let Some(limit) = limit {
            if committed.saturating_add(amount) > limit {
                return Err(OverBudget {
                    scope: label.to_string(),
                    period,
                    budget: limit,
                    committed,
                    resets_in_ms: (ends - now).max(1),
                });
            }
        }
    }
    Ok(())
}

/// What is left of `b` with `committed` (day, month) spent and reserved.
pub fn left_of(b: &Budget, committed: (i64, i64)) -> Option<i64> {
    let day = b.daily.map(|l| (l - committed.0).max(0));
    let month = b.monthly.map(|l| (l - committed.1).max(0));
    min_left(day, month)
}

fn min_left(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl BudgetLedger for LocalLedger {
    fn reserve<'a>(
        &'a self,
        scopes: &'a [(String, String, Budget)],
        amount: i64,
    ) -> BoxFuture<'a, Result<Reservation, BudgetError>> {
        Box::pin(std::future::ready(
            self.try_reserve(scopes, amount).map_err(BudgetError::Over),
        ))
    }

    fn remaining<'a>(
        &'a self,
        scopes: &'a [(String, String, Budget)],
    ) -> BoxFuture<'a, Result<Option<i64>, BudgetError>> {
        Box::pin(std::future::ready(Ok(self.remaining_now(scopes))))
    }

    fn spent<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Spent, BudgetError>> {
        Box::pin(std::future::ready(Ok(self.spent_now(scope))))
    }
}

/// What every key, owner, environment and identity-token user spent so far this
/// UTC day and month, from the stored usage: scope id → (day spent, month spent).
pub async fn stored_spend(
    store: &keyward_store::Store,
    now: i64,
) -> Result<HashMap<String, (i64, i64)>, keyward_store::Error> {
    use keyward_store::UsageGroup;
    let (day, month) = periods(now);
    let (day_start, month_start) = (day * 86_400_000, month_start_ms(month));
    let mut spend: HashMap<String, (i64, i64)> = HashMap::new();
    for (group, prefix) in [
        (UsageGroup::Key, "key:"),
        (UsageGroup::Owner, "owner:"),
        (UsageGroup::Environment, "env:"),
        (UsageGroup::User, "user:"),
    ] {
        for (since, daily) in [(month_start, false), (day_start, true)] {
            for t in store.usage_totals(group, since).await? {
                // `-`: no owner, or no user (a request made with a key).
                if matches!(group, UsageGroup::Owner | UsageGroup::User) && t.group == "-" {
                    continue;
                }
                let e = spend.entry(format!("{prefix}{}", t.group)).or_default();
                if daily {
                    e.0 += t.cost_pico;
                } else {
                    e.1 += t.cost_pico;
                }
            }
        }
    }
    Ok(spend)
}

/// A ledger on the system clock, seeded with what every key, owner and
/// environment spent so far this UTC day and month, from the stored usage.
pub async fn seeded(store: &keyward_store::Store) -> Result<LocalLedger, keyward_store::Error> {
    let ledger = LocalLedger::new(Arc::new(crate::time::SystemClock));
    for (id, (day_spent, month_spent)) in stored_spend(store, crate::time::now_ms()).await? {
        ledger.seed(&id, day_spent, month_spent);
    }
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;

    fn key(daily: Option<i64>, monthly: Option<i64>) -> Vec<(String, String, Budget)> {
        vec![("key:k".into(), "key".into(), Budget { daily, monthly })]
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-12-01T10:00:00Z
        let (day, month) = periods(1_796_119_200_000);
        assert_eq!(day, 20_788);
        assert_eq!(month, 2026 * 12 + 11);
        assert_eq!(month_start_ms(month), 1_796_083_200_000); // 2026-12-01T00:00:00Z
        assert_eq!(month_start_ms(month + 1), 1_798_761_600_000); // 2027-01-01T00:00:00Z
        assert_eq!(periods(month_start_ms(month + 1)).1, month + 1);
        assert_eq!(periods(month_start_ms(month + 1) - 1).1, month);
    }

    #[test]
    fn reservations_never_overcommit_and_settle_to_the_real_cost() {
        let l = LocalLedger::new(Arc::new(ManualClock::at(1_796_119_200_000)));
        let b = key(Some(100), None);
        let r1 = l.try_reserve(&b, 60).unwrap();
        let e = l.try_reserve(&b, 50).err().unwrap();
        assert_eq!((e.period, e.committed), ("daily", 60));
        assert_eq!(l.remaining_now(&b), Some(40));
        r1.settle(10);
        assert_eq!(l.remaining_now(&b), Some(90));
        assert_eq!(
            l.try_reserve(&b, 0).unwrap().spent_of("key:k").map(|s| s.1),
            Some(10)
        );
        let r2 = l.try_reserve(&b, 90).unwrap();
        drop(r2); // never settled: charged in full
        assert_eq!(l.remaining_now(&b), Some(0));
        assert!(l.try_reserve(&b, 1).is_err());
    }

    #[test]
    fn a_new_day_starts_afresh_and_the_month_remembers() {
        let clock = Arc::new(ManualClock::at(1_796_119_200_000));
        let l = LocalLedger::new(clock.clone());
        let b = key(Some(100), Some(150));
        l.try_reserve(&b, 100).unwrap().settle(100);
        assert!(l.try_reserve(&b, 1).is_err());
        clock.advance(86_400_000);
        l.try_reserve(&b, 50).unwrap().settle(50);
        let e = l.try_reserve(&b, 1).err().unwrap();
        assert_eq!(e.period, "monthly");
    }

    #[test]
    fn parallel_reservations_stay_within_the_budget() {
        let l = Arc::new(LocalLedger::new(Arc::new(ManualClock::at(0))));
        let b = Arc::new(key(Some(1_000), None));
        let spent = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|t| {
            for _ in 0..8 {
                t.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(r) = l.try_reserve(&b, 30) {
                            spent.fetch_add(7, std::sync::atomic::Ordering::SeqCst);
                            r.settle(7);
                        }
                    }
                });
            }
        });
        let total = spent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(total <= 1_000, "{total}");
        assert_eq!(l.remaining_now(&b), Some(1_000 - total));
        assert!(
            total >= 1_000 - 30,
            "the budget was used up to its last worst case: {total}"
        );
    }
}
