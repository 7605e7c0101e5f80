//! Jobs that must run on one server at a time (scheduled rotation,
//! credential-age alerts): each holds a lease in the store while it works, and
//! a server only does the job's work while it holds the lease. A server that
//! stops renewing (stopped, partitioned, dead) loses it after [`TTL`]; the next
//! server that asks takes it over.

use std::time::{Duration, Instant};

/// How long a lease lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(15);
/// How often a holder renews it (well within [`TTL`]).
pub const RENEW: Duration = Duration::from_secs(5);

/// One job's lease, as seen by one server.
pub struct JobLease {
    store: keyward_store::Store,
    name: &'static str,
    holder: String,
    /// When the store last answered, and whether this server held the lease.
    checked: Option<(Instant, bool)>,
}

impl JobLease {
    /// The lease of job `name` for server `holder` (its replica id).
    pub fn new(store: keyward_store::Store, name: &'static str, holder: &str) -> JobLease {
        JobLease {
            store,
            name,
            holder: holder.to_string(),
            checked: None,
        }
    }

    /// Whether this server may do the job's work now: asks the store (taking or
    /// renewing the lease) at most every [`RENEW`]. When the store cannot be
    /// asked, the answer is no.
    pub async fn held(&mut self) -> bool {
        if let Some((at, held)) = self.checked {
            if at.elapsed() < RENEW {
                return held;
            }
        }
        let held = match self
            .store
            .hold_lease(
                self.name,
                &self.holder,
                crate::time::now_ms(),
                TTL.as_millis() as i64,
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(job = self.name, "cannot renew the job's lease: {e}");
                false
            }
        };
        if held && !self.checked.is_some_and(|(_, was)| was) {
            tracing::info!(job = self.name, "this server now runs the job");
        }
        self.checked = Some((Instant::now(), held));
        held
    }
}
