//! A real `keyward serve` against a fake provider on loopback, for tests that
//! drive the gateway as a process.

use super::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const CRED: &str = "sk-fakeprov-slowclients-4b8d2f6a1c3e5f7a9b0d";

/// A provider on loopback that answers every request with a small completion.
pub fn fake_provider() -> SocketAddr {
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
    let body = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub key: String,
    /// The config file the server runs with.
    pub config: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real `keyward serve` in a fresh directory against [`fake_provider`], with a
/// client key for it. `server_settings` are extra `[server]` lines; with
/// `open_files`, the server runs under that `ulimit -n` (soft and hard).
pub fn start_server(server_settings: &str, open_files: Option<u32>) -> Server {
    let upstream = fake_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("keyward.toml");
    fs::write(
        &cfg,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
{server_settings}
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
    let limit = open_files.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{limit}exec '{}' serve --config '{c}'",
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
        config: c.to_string(),
        dir,
    }
}

/// One chat completion over a fresh connection: the status, or `None` when the
/// server did not answer within `wait`.
pub fn chat(s: &Server, wait: Duration) -> Option<u16> {
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
