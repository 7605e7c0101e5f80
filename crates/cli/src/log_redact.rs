//! The last line of defence for logs: every line written is searched with the
//! detection engine and any secret in it replaced by `[REDACTED:<rule>]` before it
//! reaches the terminal or a file. Request logs never hold credentials by design;
//! this catches what a future log statement, a dependency or a provider message
//! might let through.

use keyward_detect::Detector;
use std::io::{self, Write};

/// Wraps a writer; complete lines are redacted and passed on, one search per
/// write. Used behind the batched log writer ([`crate::log_writer`]), which hands
/// it a whole batch of lines per write, so the search runs on that thread, once
/// per batch, not on requests.
pub struct RedactingWriter<W: Write> {
    inner: W,
    detector: &'static Detector,
    /// Bytes of a line not yet complete.
    partial: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(inner: W, detector: &'static Detector) -> RedactingWriter<W> {
        RedactingWriter {
            inner,
            detector,
            partial: Vec::new(),
        }
    }

    fn emit(&mut self, line: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(line);
        self.inner.write_all(self.detector.redact(&text).as_bytes())
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        if let Some(last_nl) = memchr::memrchr(b'\n', &self.partial) {
            let lines: Vec<u8> = self.partial.drain(..=last_nl).collect();
            self.emit(&lines)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.emit(&rest)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn token() -> String {
        let seed = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
        keyward_detect::checksum::github_style_seal("ghp_", seed)
    }

    #[test]
    fn a_secret_in_any_log_record_is_redacted_even_when_written_in_pieces() {
        let sink = Sink::default();
        let t = token();
        {
            let mut w = RedactingWriter::new(sink.clone(), Detector::builtin());
            let line = format!("WARN provider said: bad key {t} (request id: r1)\nnext\n");
            let (a, b) = line.split_at(20);
            w.write_all(a.as_bytes()).unwrap();
            w.write_all(b.as_bytes()).unwrap();
            w.write_all(b"unterminated").unwrap();
        }
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            "WARN provider said: bad key [REDACTED:github-classic-pat] (request id: r1)\nnext\nunterminated"
        );
    }

    #[test]
    fn tracing_records_pass_through_the_redactor() {
        let sink = Sink::default();
        let t = token();
        let writer = RedactingWriter::new(sink.clone(), Detector::builtin());
        let writer = Arc::new(Mutex::new(writer));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || WriterRef(writer.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(upstream_message = %format!("invalid key {t}"), "upstream refused");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("upstream refused"), "{out}");
        assert!(out.contains("[REDACTED:github-classic-pat]"), "{out}");
        assert!(!out.contains(&t));
    }

    struct WriterRef(Arc<Mutex<RedactingWriter<Sink>>>);
    impl Write for WriterRef {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().flush()
        }
    }
}
