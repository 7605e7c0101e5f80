//! Work whose cost grows with a body (parsing it, screening it) runs off the async
//! workers once the body is large, so that a few large requests never hold the
//! workers that `/healthz` and every other request share.

/// Bodies up to this size are worked on inline: tens of microseconds, less than a
/// hop to the blocking pool costs.
pub const INLINE_MAX: usize = 64 << 10;

/// Runs `work` over a body of `len` bytes: inline when `len <= INLINE_MAX`, else
/// [`off_worker`].
pub async fn by_size<T, F>(len: usize, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if len <= INLINE_MAX {
        work()
    } else {
        off_worker(work).await
    }
}

/// Runs `work` on the blocking pool. A panic in `work` is resumed here; if the
/// runtime is shutting down and the pool refuses the work, it runs inline (it is
/// never skipped).
pub async fn off_worker<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // The closure is kept reachable for the shutdown case: a `JoinError` that is not
    // a panic means the task never ran.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(work)));
    let remote = slot.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let work = remote.lock().unwrap_or_else(|e| e.into_inner()).take();
        work.map(|w| w())
    })
    .await;
    match ran {
        Ok(Some(out)) => out,
        Ok(None) => unreachable!("the closure is taken only by the task that runs it"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {
            let work = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            work.expect("a cancelled blocking task never ran its closure")()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn small_work_runs_on_the_calling_thread_and_large_work_elsewhere() {
        let here = std::thread::current().id();
        let small = by_size(INLINE_MAX, || std::thread::current().id()).await;
        let large = by_size(INLINE_MAX + 1, || std::thread::current().id()).await;
        assert_eq!(small, here);
        assert_ne!(large, here);
    }
}
