//! Screening traffic for secrets: the request body before it goes upstream, the
//! response (whole or streamed) before it reaches the client. What happens to a
//! secret is the request's [`Policy`]; every secret found is counted, audited
//! (rule ids only, never the secret) and, under `alert` and `block`, alerted.

// `Err` carries the response to send instead; it is built only on the rare
// blocked path, so its size costs nothing on the common one.
#![allow(clippy::result_large_err)]

use crate::api::{self, ErrorKind, Family};
use crate::context::Gateway;
use crate::redact::{self, Action, Direction, SseRedactor, Tally};
use crate::time::now;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::sync::Arc;

/// Responses are read whole to be screened up to this size; a larger one is
/// withheld rather than passed unscreened.
const MAX_SCREENED_RESPONSE: usize = 64 << 20;

/// One request's identity, for reports.
#[derive(Clone)]
pub struct Screen {
    pub gw: Arc<Gateway>,
    pub key_id: String,
    pub request_id: String,
    pub path: String,
    pub family: Family,
}

impl Screen {
    /// Runs the detector over a body: inline when it is small, else on the blocking
    /// pool under one of the gateway's screening permits, so that screening a large
    /// body never holds an async worker (which `/healthz` and every other request
    /// share) and at most that many large bodies are screened at once.
    async fn find_secrets(&self, body: &Bytes) -> Option<(Vec<u8>, Tally)> {
        let detector = self.gw.detector;
        let find = move |body: &[u8]| {
            redact::redact_json(detector, body).map(|(out, hits)| (out, Tally::of(&hits)))
        };
        if body.len() <= crate::offload::INLINE_MAX {
            return find(body);
        }
        let permit = self.gw.screening.clone().acquire_owned().await;
        let owned = body.clone();
        crate::offload::off_worker(move || {
            let _permit = permit;
            find(&owned)
        })
        .await
    }

    /// Screens a request body. `Err` is the response to send instead (`block`).
    pub async fn inbound(&self, action: Action, body: Bytes) -> Result<Bytes, Response> {
        if action == Action::Off {
            return Ok(body);
        }
        let Some((redacted, hits)) = self.find_secrets(&body).await else {
            return Ok(body);
        };
        self.report(Direction::Inbound, action, &hits);
        match action {
            Action::Redact => Ok(Bytes::from(redacted)),
            Action::Alert | Action::Off => Ok(body),
            Action::Block => Err(api::error_response(
                self.family,
                ErrorKind::InvalidRequest,
                &format!(
                    "Request blocked: it contains a secret (rule {}). Remove the secret and retry.",
                    hits.rule_list()
                ),
                &self.request_id,
            )),
        }
    }

    /// Screens a whole (non-streamed) response body.
    pub async fn outbound_whole(
        &self,
        action: Action,
        stream: impl Stream<Item = crate::upstream_client::Chunk> + Send + Unpin,
    ) -> Result<Bytes, Response> {
        let mut stream = stream;
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                api::error_response(
                    self.family,
                    ErrorKind::Upstream,
                    "The provider's response broke off",
                    &self.request_id,
                )
            })?;
            if buf.len() + chunk.len() > MAX_SCREENED_RESPONSE {
                return Err(api::error_response(
                    self.family,
                    ErrorKind::Upstream,
                    "The provider's response is too large to screen for secrets",
                    &self.request_id,
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        let body = buf.freeze();
        let Some((redacted, hits)) = self.find_secrets(&body).await else {
            return Ok(body);
        };
        self.report(Direction::Outbound, action, &hits);
        match action {
            Action::Redact => Ok(Bytes::from(redacted)),
            Action::Alert | Action::Off => Ok(body),
            Action::Block => Err(self.withheld(&hits)),
        }
    }

    /// Screens a server-sent event stream as it flows. Under `redact` secrets are
    /// replaced (also when split across events); under `alert` the stream passes
    /// unchanged and secrets are reported; under `block` the stream ends with an
    /// error event at the first secret. Dropping the body drops the upstream.
    pub fn outbound_stream(
        self,
        action: Action,
        upstream: impl Stream<Item = crate::upstream_client::Chunk> + Send + Unpin + 'static,
    ) -> Body {
        struct St<S> {
            screen: Screen,
            action: Action,
            upstream: S,
            redactor: SseRedactor,
            done: bool,
            /// Reported once, when the stream ends or the client goes away.
            hits: Tally,
        }
        impl<S> Drop for St<S> {
            fn drop(&mut self) {
                if !self.hits.is_empty() {
                    self.screen
                        .report(Direction::Outbound, self.action, &self.hits);
                }
            }
        }
        let st = St {
            redactor: SseRedactor::new(self.gw.detector),
            screen: self,
            action,
            upstream,
            done: false,
            hits: Tally::default(),
        };
        let stream = futures_util::stream::unfold(st, |mut st| async move {
            if st.done {
                return None;
            }
            let (mut out, ended) = match st.upstream.next().await {
                Some(Ok(chunk)) => {
                    let redacted = st.redactor.push(&chunk);
                    if st.action == Action::Alert {
                        (chunk.to_vec(), false)
                    } else {
                        (redacted, false)
                    }
                }
                Some(Err(e)) => return Some((Err(e), st)),
                None => {
                    let rest = st.redactor.finish();
                    if st.action == Action::Alert {
                        (Vec::new(), true)
                    } else {
                        (rest, true)
                    }
                }
            };
            st.done = ended;
            let hits = st.redactor.take_hits();
            if !hits.is_empty() {
                st.hits.add_all(hits);
                if st.action == Action::Block {
                    st.done = true;
                    out = st.screen.error_event(&st.hits);
                }
            }
            Some((
                Ok::<_, crate::upstream_client::BodyError>(Bytes::from(out)),
                st,
            ))
        });
        Body::from_stream(stream.filter(|r| {
            let keep = !matches!(r, Ok(b) if b.is_empty());
            async move { keep }
        }))
    }

    fn withheld(&self, hits: &Tally) -> Response {
        api::error_response(
            self.family,
            ErrorKind::Upstream,
            &self.withheld_message(hits),
            &self.request_id,
        )
    }

    fn withheld_message(&self, hits: &Tally) -> String {
        format!(
            "The provider's response was withheld: it contains a secret (rule {})",
            hits.rule_list()
        )
    }

    /// The error event that ends a blocked stream, in the family's format.
    fn error_event(&self, hits: &Tally) -> Vec<u8> {
        let body = api::error_body(
            self.family,
            ErrorKind::Upstream,
            &self.withheld_message(hits),
            &self.request_id,
        );
        self.family.adapter().stream_error_event(&body).into_bytes()
    }

    /// Counts, audits and (for `alert` and `block`) alerts one batch of secrets.
    pub fn report(&self, dir: Direction, action: Action, hits: &Tally) {
        let gw = &self.gw;
        gw.redactions.add(&self.key_id, hits, dir, action);
        for (rule, n) in hits.iter() {
            gw.metrics
                .secrets_found(rule, dir.as_str(), action.as_str(), n);
        }
        let rules = hits.to_json();
        let (event, outcome) = match action {
            Action::Redact => ("traffic.secret_redacted", "redacted"),
            Action::Block => ("traffic.secret_blocked", "blocked"),
            _ => ("traffic.secret_passed", "alerted"),
        };
        tracing::warn!(
            request_id = %self.request_id, key_id = %self.key_id, direction = dir.as_str(),
            rules = %hits.rule_list(), "secret in traffic: {outcome}"
        );
        gw.audit.record(crate::audit::Event::new(
            &self.key_id,
            event,
            &self.path,
            outcome,
            serde_json::json!({
                "request_id": self.request_id, "direction": dir.as_str(), "rules": rules,
            }),
        ));
        if matches!(action, Action::Alert | Action::Block) {
            gw.alerts.send(serde_json::json!({
                "kind": "secret_in_traffic", "severity": "high", "key_id": self.key_id,
                "direction": dir.as_str(), "action": action.as_str(), "rules": rules,
                "path": self.path, "request_id": self.request_id, "at": now(),
            }));
        }
    }
}
