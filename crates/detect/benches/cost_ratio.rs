//! Per-byte cost of each hostile input as a multiple of ordinary text's
//! (`cargo bench -p keyward-detect --bench cost-ratio [-- ROUNDS]`).
//!
//! The target is a ratio, not a speed, and on a shared machine the
//! speed of both sides drifts by tens of percent from one minute to the next.
//! So the two are measured in turn, round after round (ordinary text, then a
//! hostile input, for every input), each figure is the fastest of its rounds
//! (the run least disturbed by the rest of the machine), and the ratio is taken
//! between figures measured minutes apart at most. Ordinary text is the chat
//! request the gateway screens (`Detector::redact`); a hostile input is 256 KiB
//! of one fragment repeated (`Detector::find`), as in the criterion bench.

use keyward_detect::Detector;
use std::time::Instant;

mod common;
use common::{chat_request, HOSTILE};

/// Bytes each timing covers, so that one timing lasts milliseconds.
const BYTES_PER_TIMING: usize = 1 << 20;

/// Nanoseconds per byte of one timing of `search` over `text`.
fn per_byte(text: &[u8], search: impl Fn(&[u8]) -> usize) -> f64 {
    let reps = (BYTES_PER_TIMING / text.len()).max(1);
    let started = Instant::now();
    let mut found = 0;
    for _ in 0..reps {
        found += search(std::hint::black_box(text));
    }
    std::hint::black_box(found);
    started.elapsed().as_nanos() as f64 / (reps * text.len()) as f64
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(15);
    let d = Detector::builtin();
    let chat = chat_request();
    let ordinary = |t: &[u8]| d.redact(std::str::from_utf8(t).expect("UTF-8")).len();
    let hostile = |t: &[u8]| d.find(t).len();
    let len = 256 << 10;
    let inputs: Vec<(&str, Vec<u8>)> = HOSTILE
        .iter()
        .map(|(name, fragment)| (*name, fragment.repeat(len / fragment.len()).into_bytes()))
        .collect();
    let mut best_chat = f64::MAX;
    let mut best = vec![f64::MAX; inputs.len()];
    for _ in 0..rounds {
        for (k, (_, text)) in inputs.iter().enumerate() {
            best_chat = best_chat.min(per_byte(chat.as_bytes(), ordinary));
            best[k] = best[k].min(per_byte(text, hostile));
        }
    }
    println!("chat-request: {best_chat:.2} ns/byte (fastest of {rounds} rounds)");
    println!("{:<16} {:>9} {:>7}", "input", "ns/byte", "ratio");
    for ((name, _), ns) in inputs.iter().zip(&best) {
        println!("{name:<16} {ns:>9.2} {:>6.2}x", ns / best_chat);
    }
}
