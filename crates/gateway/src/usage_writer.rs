//! The in-process [`UsageSink`]: records queue in memory and a task writes them
//! to the store in batches (at most [`BATCH_WINDOW`] late, or [`BATCH_MAX`] at a
//! time). A clean shutdown ([`UsageWriter::close`]) writes everything queued; a
//! crash loses at most the last window. While the store refuses a batch it is
//! retried, never dropped.

use crate::usage::{UsageRecord, UsageSink};
use keyward_store::{Store, UsageRow};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a record may wait before its batch is written.
pub const BATCH_WINDOW: Duration = Duration::from_secs(1);
/// Most records in one write.
pub const BATCH_MAX: usize = 2000;

enum Command {
    Record(Box<UsageRecord>),
    Close(oneshot::Sender<()>),
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct UsageWriter {
    tx: mpsc::UnboundedSender<Command>,
}

impl UsageSink for UsageWriter {
    fn record(&self, r: UsageRecord) {
        // The task lives as long as any handle: sending fails only at exit.
        let _ = self.tx.send(Command::Record(Box::new(r)));
    }
}

fn row(r: UsageRecord) -> UsageRow {
    let t = |n: u64| n.min(i64::MAX as u64) as i64;
    UsageRow {
        at_ms: r.at_ms,
        request_id: r.request_id,
        key_id: r.key_id,
        environment: r.environment,
        provider: r.provider,
        model: r.model,
        endpoint: r.endpoint,
        status: i64::from(r.status),
        input_tokens: t(r.usage.input),
        output_tokens: t(r.usage.output),
        cached_input_tokens: t(r.usage.cached_input),
        cache_write_tokens: t(r.usage.cache_write),
        reasoning_tokens: t(r.usage.reasoning),
        cost_pico: r.cost_pico,
        complete: r.complete,
        subject: r.subject,
        owner: r.owner,
    }
}

/// Writes a batch, retrying (100 ms, doubling to 5 s) while the store refuses it.
async fn write(store: &Store, batch: &[UsageRow]) {
    let mut pause = Duration::from_millis(100);
    while let Err(e) = store.insert_usage(batch).await {
        tracing::error!(
            "cannot write {} usage records ({e}); retrying in {pause:?}",
            batch.len()
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

impl UsageWriter {
    /// Starts the writer task.
    pub fn spawn(store: Store) -> UsageWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                let mut closed = None;
                match rx.recv().await {
                    Some(Command::Record(r)) => batch.push(row(*r)),
                    Some(Command::Close(done)) => closed = Some(done),
                    None => return,
                }
                let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
                while closed.is_none() && batch.len() < BATCH_MAX {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Command::Record(r))) => batch.push(row(*r)),
                        Ok(Some(Command::Close(done))) => closed = Some(done),
                        _ => break,
                    }
                }
                if closed.is_some() {
                    while let Ok(Command::Record(r)) = rx.try_recv() {
                        batch.push(row(*r));
                    }
                }
                for chunk in batch.chunks(BATCH_MAX) {
                    write(&store, chunk).await;
                }
                if let Some(done) = closed {
                    let _ = done.send(());
                }
            }
        });
        UsageWriter { tx }
    }

    /// Writes everything queued so far; returns once it is stored.
    pub async fn close(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Command::Close(done)).is_ok() {
            let _ = written.await;
        }
    }
}
