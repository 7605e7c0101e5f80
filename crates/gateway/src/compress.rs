//! Response compression for clients that ask for it (`Accept-Encoding: gzip` or
//! `deflate`): whole responses only. A stream is never compressed, because an
//! encoder holds output back until its buffer fills, which would delay every
//! token; tiny bodies are not worth it.

use axum::http;
use tower_http::compression::predicate::Predicate;
use tower_http::compression::CompressionLayer;

/// Smallest body that is compressed: below about one packet, compressing saves
/// nothing on the wire and costs CPU on every small answer.
pub const MIN_SIZE: u64 = 1024;

/// Compress bodies of known size of at least [`MIN_SIZE`] bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct WholeBodies;

impl Predicate for WholeBodies {
    fn should_compress<B: http_body::Body>(&self, response: &http::Response<B>) -> bool {
        let event_stream = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        !event_stream
            && response
                .body()
                .size_hint()
                .exact()
                .is_some_and(|n| n >= MIN_SIZE)
    }
}

/// The layer: gzip and deflate, by the client's `Accept-Encoding`.
pub fn layer() -> CompressionLayer<WholeBodies> {
    CompressionLayer::new().compress_when(WholeBodies)
}
