//! A command that changes what the servers accept returns only once every running
//! server applies the change, so that the next request anywhere sees it.

use keyward_gateway::Backend;
use std::time::Duration;

/// How long a command waits for the running servers before it warns and returns.
pub const WAIT: Duration = Duration::from_secs(3);

/// Waits until every running server serves the store's current generation, then
/// tells stderr how many did, and warns about any that have not (they apply it
/// once they reach the store again; until then they refuse requests as stale
/// after a few seconds).
pub async fn confirm(backend: &Backend) -> anyhow::Result<()> {
    let (confirmed, behind) = backend.await_replicas(WAIT).await?;
    if confirmed > 0 || !behind.is_empty() {
        eprintln!("applied by {confirmed} running server(s)");
    }
    if !behind.is_empty() {
        eprintln!(
            "warning: not yet confirmed by {}: they apply it once they reach the store",
            behind.join(", ")
        );
    }
    Ok(())
}
