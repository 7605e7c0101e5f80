//! A real `keyward serve` under a low open-file limit (128) against clients that
//! hold connections open: idle ones, ones that send their header or body a byte at
//! a time, keep-alive connections left idle. The server closes each within its
//! timeouts, holds no more connections than its cap, and a real request still gets
//! through. Before the limits existed, 200 idle connections exhausted the server's
//! descriptors and every later request hung.

mod common;
use common::serve::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
    let s = start_server(
        "header_timeout_secs = 1\nidle_timeout_secs = 2\nbody_idle_timeout_secs = 1\nbody_timeout_secs = 2",
        Some(128),
    );
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
