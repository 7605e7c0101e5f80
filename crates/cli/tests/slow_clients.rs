//! A real `keyward serve` under a low open-file limit (128) against clients that
//! hold connections open: idle ones, ones that send their header or body a byte at
//! a time, keep-alive connections left idle. The server closes each within its
//! timeouts, holds no more connections than its cap, and a real request still gets
//! through. Before the limits existed, 200 idle connections exhausted the server's
//! descriptors and every later request hung.

mod common;
use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const CRED: &str = "sk-fakeprov-slowclients-4b8d2f6a1c3e5f7a9b0d";

/// A provider on loopback that answers every request with a small completion.
fn fake_provider() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn answer(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Header, then as many body bytes as it announces.
    loop {
        let Ok(n) = s.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let body = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

struct Server {
    child: Child,
    addr: SocketAddr,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server() -> Server {
    let upstream = fake_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("keyward.toml");
    fs::write(
        &cfg,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
header_timeout_secs = 1
idle_timeout_secs = 2
body_idle_timeout_secs = 1
body_timeout_secs = 2
[store]
url = "sqlite://k.db"
[vault]
master_key_file = "master.key"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{upstream}/v1"
credential = "openai-prod"
models = ["gpt-4o-mini"]
"#
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    init_store(dir.path(), c);
    let put = run_in(
        dir.path(),
        &["vault", "put", "openai-prod", "--config", c],
        Some(CRED.as_bytes()),
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let created = run_in(
        dir.path(),
        &[
            "keys", "create", "--config", c, "--name", "app", "--env", "prod", "--models", "*",
            "--json",
        ],
        None,
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    // `ulimit -n` in sh sets the soft and the hard limit: the server cannot raise it.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec '{}' serve --config '{c}'",
            env!("CARGO_BIN_EXE_keyward")
        ))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        addr,
        key: key["key"].as_str().unwrap().to_string(),
        _dir: dir,
    }
}

/// One chat completion over a fresh connection: the status, or `None` when the
/// server did not answer within `wait`.
fn chat(s: &Server, wait: Duration) -> Option<u16> {
    let mut c = TcpStream::connect(s.addr).ok()?;
    c.set_read_timeout(Some(wait)).unwrap();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        c,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        s.key,
        body.len()
    )
    .ok()?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Seconds until the server closes `c` (reads return end of file or reset),
/// reading at most `limit`.
fn closed_after(c: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match c.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {} // an error response before the close is fine
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Writes `bytes` to `c` one every 200 ms from a thread of its own, until the
/// server closes the connection.
fn trickle(c: &TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = c.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in bytes {
            if w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

#[test]
fn held_and_slow_connections_are_closed_and_real_requests_get_through() {
    let s = start_server();
    assert_eq!(
        chat(&s, Duration::from_secs(10)),
        Some(200),
        "a first request works"
    );

    // More idle connections than the server has descriptors.
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(s.addr).ok())
        .collect();
    assert!(held.len() >= 150, "the kernel queued the connections");
    // They are closed a header timeout at a time, at most `max_connections` at once;
    // a real request then gets its turn.
    let started = Instant::now();
    let mut status = None;
    while started.elapsed() < Duration::from_secs(25) && status != Some(200) {
        status = chat(&s, Duration::from_secs(3));
    }
    assert_eq!(
        status,
        Some(200),
        "a real request succeeded despite 200 held connections"
    );
    drop(held);

    // A header sent a byte at a time is cut off at the header timeout.
    let mut slow = TcpStream::connect(s.addr).unwrap();
    let header = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
    let header_writer = trickle(&slow, header.to_vec());
    let t = closed_after(&mut slow, Duration::from_secs(6)).expect("slow header closed");
    assert!(t < Duration::from_secs(4), "slow header closed after {t:?}");
    let _ = header_writer.join();

    // A body sent a byte at a time is cut off at the body timeout (2 s in all).
    let mut slow_body = TcpStream::connect(s.addr).unwrap();
    write!(
        slow_body,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
        s.key
    )
    .unwrap();
    let body_writer = trickle(&slow_body, vec![b' '; 60]);
    let t = closed_after(&mut slow_body, Duration::from_secs(8)).expect("slow body closed");
    assert!(t < Duration::from_secs(5), "slow body closed after {t:?}");
    let _ = body_writer.join();

    // A keep-alive connection left idle after its response is closed too.
    let mut idle = TcpStream::connect(s.addr).unwrap();
    write!(idle, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let t = closed_after(&mut idle, Duration::from_secs(6)).expect("idle keep-alive closed");
    assert!(
        t < Duration::from_secs(4),
        "idle keep-alive closed after {t:?}"
    );

    assert_eq!(
        chat(&s, Duration::from_secs(10)),
        Some(200),
        "still serving"
    );
}
