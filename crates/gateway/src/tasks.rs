//! Background jobs that run for the server's whole life (the store follower, the
//! rotation schedule, credential-age alerts) under supervision: a job that panics
//! or returns is logged as an error, counted, and started again after a pause that
//! doubles from 1 s to 60 s (back to 1 s once a run has lasted ten minutes). A job
//! never dies silently; a job that stalls shows elsewhere (the follower's staleness
//! makes the server refuse requests and fail `/readyz`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A run this long is taken as healthy: the next failure pauses from scratch.
const HEALTHY_RUN: Duration = Duration::from_secs(600);

/// How often each supervised job had to be restarted.
#[derive(Debug, Default)]
pub struct Restarts(AtomicU64);

impl Restarts {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `make()` under supervision until the runtime shuts down.
pub fn supervise<F, Fut>(name: &'static str, make: F) -> Arc<Restarts>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let restarts = Arc::new(Restarts::default());
    let counted = restarts.clone();
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            let started = tokio::time::Instant::now();
            let ended = tokio::spawn(make()).await;
            match ended {
                Ok(()) => tracing::error!(job = name, "background job ended; restarting it"),
                Err(e) if e.is_panic() => {
                    tracing::error!(job = name, "background job panicked; restarting it")
                }
                // The runtime is shutting down.
                Err(_) => return,
            }
            counted.0.fetch_add(1, Ordering::Relaxed);
            if started.elapsed() >= HEALTHY_RUN {
                pause = FIRST_PAUSE;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    });
    restarts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_job_that_panics_is_started_again() {
        let runs = Arc::new(AtomicU64::new(0));
        let counted = runs.clone();
        let restarts = supervise("test", move || {
            let counted = counted.clone();
            async move {
                let n = counted.fetch_add(1, Ordering::Relaxed);
                if n < 3 {
                    panic!("run {n} fails");
                }
                std::future::pending::<()>().await
            }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            runs.load(Ordering::Relaxed),
            4,
            "three failures, then a run that lasts"
        );
        assert_eq!(restarts.get(), 3);
    }
}
