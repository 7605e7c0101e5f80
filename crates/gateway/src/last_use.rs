//! When each client key was last used: marked in memory on the request path (one
//! short lock, no I/O) and written to the store in batches by a background task,
//! so `keys list` can show it without a write per request.

use keyward_store::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often marks are written to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Keys used since the last flush, with the latest time each was used.
#[derive(Default)]
pub struct LastUse {
    pending: Mutex<HashMap<String, i64>>,
}

impl LastUse {
    /// Notes that key `id` was used at `at` (Unix seconds).
    pub fn mark(&self, id: &str, at: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(id) {
            Some(t) => *t = (*t).max(at),
            None => {
                pending.insert(id.to_string(), at);
            }
        }
    }

    /// Writes every pending mark; on failure they are kept for the next try.
    pub async fn flush(&self, store: &Store) {
        let batch: Vec<(String, i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if let Err(e) = store.record_key_use(&batch).await {
            tracing::warn!("cannot record key last use (kept for the next try): {e}");
            for (id, at) in batch {
                self.mark(&id, at);
            }
        }
    }

    /// Flushes every [`FLUSH_INTERVAL`], forever.
    pub async fn run(self: std::sync::Arc<Self>, store: Store) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush(&store).await;
        }
    }
}
