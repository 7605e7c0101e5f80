//! Body taps on the way back: an open response ends as soon as the key it is
//! served under stops being usable.

use crate::state::Live;
use crate::time::now;
use axum::body::Body;
use std::sync::Arc;
use std::time::Duration;

/// How often an open response re-checks its key even without a store change
/// (expiry, a rotation grace window running out).
const USABLE_RECHECK: Duration = Duration::from_secs(1);

/// `body`, ended with an error as soon as the key it is served under stops being
/// usable: revoked, suspended, expired or rotated out. A revocation reaches open
/// streams with the snapshot that carries it (within [`crate::state::POLL_INTERVAL`]),
/// not when the stream ends by itself.
pub fn until_unusable(
    body: Body,
    live: Arc<Live>,
    key_hash: String,
    source: std::net::IpAddr,
) -> Body {
    use futures_util::StreamExt;
    let usable = move |live: &Live| {
        live.snapshot.load().keys.get(&key_hash).is_some_and(|m| {
            m.entry.check_usable(now(), source).is_ok()
                && m.previous_until.is_none_or(|until| now() < until)
        })
    };
    let changes = live.changes();
    let recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + USABLE_RECHECK, USABLE_RECHECK);
    let state = (body.into_data_stream(), live, changes, recheck, false);
    Body::from_stream(futures_util::stream::unfold(
        state,
        move |(mut data, live, mut changes, mut recheck, done)| {
            let usable = usable.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    tokio::select! {
                        piece = data.next() => {
                            return piece.map(|p| (p, (data, live, changes, recheck, false)));
                        }
                        changed = changes.changed() => {
                            if changed.is_err() {
                                // The follower is gone; the periodic check still runs.
                                changes = live.changes();
                            }
                        }
                        _ = recheck.tick() => {}
                    }
                    if !usable(&live) {
                        let cut: axum::Error = axum::Error::new(KeyNoLongerUsable);
                        return Some((Err(cut), (data, live, changes, recheck, true)));
                    }
                }
            }
        },
    ))
}

/// Why a response was cut off mid-stream.
#[derive(Debug)]
struct KeyNoLongerUsable;

impl std::fmt::Display for KeyNoLongerUsable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the key was revoked, suspended or expired during the response")
    }
}

impl std::error::Error for KeyNoLongerUsable {}
