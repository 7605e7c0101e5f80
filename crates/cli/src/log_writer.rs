//! The server's log writer: request threads append finished lines to a shared
//! buffer, and one thread writes the buffer out every [`INTERVAL`] (sooner when
//! [`WAKE_AT`] bytes wait), through the redactor.
//!
//! A line handed to a channel woke the writing thread for every line: at 3,000
//! requests a second the access log cost the gateway about 30 µs of CPU per
//! request (a futex wake, two context switches, a search and a `write(2)` per
//! line), a sixth of all it spent. Appending is a short lock and a copy; the
//! writer thread wakes at most a few dozen times a second, whatever the rate.
//!
//! Bounded: past [`MAX_PENDING`] bytes waiting, lines are dropped and counted,
//! and the count is logged once the writer catches up, so a flood of log lines
//! never slows requests or exhausts memory. [`Guard`] writes everything still
//! waiting when dropped (at the end of `serve`).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait before it is written.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// Bytes waiting that wake the writer before [`INTERVAL`] has passed.
pub const WAKE_AT: usize = 64 << 10;
/// Bytes waiting beyond which new lines are dropped.
pub const MAX_PENDING: usize = 16 << 20;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    dropped: u64,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The [`tracing_subscriber::fmt::MakeWriter`] for the subscriber; cheap to clone.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread once everything waiting is written.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes to `out` and returns the writer to log through.
pub fn batched<W: Write + Send + 'static>(out: W) -> (BatchedWriter, Guard) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("keyward-log".into())
            .spawn(move || write_forever(&shared, out))
            .expect("the log writer thread starts")
    };
    (
        BatchedWriter {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    )
}

fn write_forever<W: Write>(shared: &Shared, mut out: W) {
    let mut lines = Vec::new();
    loop {
        let (dropped, closing) = {
            let mut p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            if !p.closing && p.lines.len() < WAKE_AT {
                p = shared
                    .wake
                    .wait_timeout(p, INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut lines, &mut p.lines);
            (std::mem::take(&mut p.dropped), p.closing)
        };
        // A failing stderr has nowhere to report to: the lines are let go.
        if !lines.is_empty() {
            let _ = out.write_all(&lines);
            lines.clear();
        }
        if dropped > 0 {
            let _ = writeln!(
                out,
                "WARN {dropped} log lines were dropped: they arrived faster than they could be written"
            );
        }
        let _ = out.flush();
        if closing {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One log event's handle on the buffer.
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut p = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.closing || p.lines.len() + buf.len() > MAX_PENDING {
            p.dropped += 1;
            return Ok(buf.len());
        }
        p.lines.extend_from_slice(buf);
        if p.lines.len() >= WAKE_AT && p.lines.len() - buf.len() < WAKE_AT {
            self.0.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn write_line(w: &BatchedWriter, line: &str) {
        use tracing_subscriber::fmt::MakeWriter;
        w.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_are_written_in_order_within_the_interval_and_in_few_writes() {
        let sink = Sink::default();
        let (w, _guard) = batched(sink.clone());
        for i in 0..1000 {
            write_line(&w, &format!("line {i}\n"));
        }
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let started = Instant::now();
        while sink.0.lock().unwrap().0.len() < expected.len() {
            assert!(
                started.elapsed() < INTERVAL * 40,
                "lines not written in time"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (out, writes) = sink.0.lock().unwrap().clone();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert!(writes < 20, "{writes} writes for 1000 lines");
    }

    #[test]
    fn dropping_the_guard_writes_everything_waiting() {
        let sink = Sink::default();
        let (w, guard) = batched(sink.clone());
        write_line(&w, "last words\n");
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0, b"last words\n");
        write_line(&w, "after the end\n");
        assert_eq!(sink.0.lock().unwrap().0, b"last words\n");
    }

    #[test]
    fn a_flood_beyond_the_bound_is_dropped_and_counted_not_kept() {
        /// A writer that blocks until released, as a stalled terminal would.
        struct Stalled(Arc<(Mutex<bool>, Condvar)>, Sink);
        impl Write for Stalled {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let (m, c) = &*self.0;
                let _released = c.wait_while(m.lock().unwrap(), |r| !*r).unwrap();
                self.1.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (w, guard) = batched(Stalled(gate.clone(), sink.clone()));
        let line = "x".repeat(1023) + "\n";
        // Wait for the writer to take a first batch and block in it.
        write_line(&w, &line);
        std::thread::sleep(INTERVAL * 3);
        let flood = MAX_PENDING / line.len() + 100;
        for _ in 0..flood {
            write_line(&w, &line);
        }
        let waiting = w.shared.pending.lock().unwrap().lines.len();
        assert!(waiting <= MAX_PENDING, "{waiting} bytes kept");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        let kept = out.matches(&line).count();
        assert_eq!(kept, 1 + MAX_PENDING / line.len());
        let dropped = 1 + flood - kept;
        assert!(
            out.ends_with(&format!(
                "WARN {dropped} log lines were dropped: they arrived faster than they could be written\n"
            )),
            "{}",
            &out[out.len() - 200..]
        );
    }
}
