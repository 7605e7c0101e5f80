//! Stage 3, parse once: the body is read (bounded, slow senders cut off by the
//! connection layer) and parsed as JSON once, for the model it names; Gemini
//! batches are bound to the model in their path.

use super::Refusal;
use crate::api::{self, Endpoint, ErrorKind};
use axum::body::Body;
use serde::Deserialize;

/// A request body, read and checked.
pub struct Parsed {
    pub body: bytes::Bytes,
    /// The model the request is for: from the path (Gemini, Azure deployments) or
    /// the body's `model` (validated: it travels into upstream URLs).
    pub model: String,
}

/// Reads and checks the body of a request for `endpoint`.
pub async fn request(endpoint: &Endpoint, body: Body, max_body: usize) -> Result<Parsed, Refusal> {
    let body = match read_body(body, max_body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(Refusal::error(
                ErrorKind::TooLarge,
                format!("Request body larger than {max_body} bytes"),
            ))
        }
        Err(BodyError::Broken) => {
            return Err(Refusal::error(
                ErrorKind::InvalidRequest,
                "The request body could not be read: it broke off, or arrived too slowly",
            ))
        }
    };
    // Parsing costs in proportion to the body: a large one is parsed off the
    // async workers.
    let (endpoint, checked) = (endpoint.clone(), body.clone());
    let model = crate::offload::by_size(body.len(), move || model_of(&endpoint, &checked)).await?;
    Ok(Parsed { body, model })
}

/// Checks that `body` is JSON and returns the model the request is for.
fn model_of(endpoint: &Endpoint, body: &[u8]) -> Result<String, Refusal> {
    // Every body is checked to be JSON, also where the model is in the path.
    let named = serde_json::from_slice::<ModelField>(body)
        .map_err(|_| Refusal::error(ErrorKind::InvalidRequest, "Request body is not valid JSON"))?
        .model;
    let model: String = match (endpoint, named) {
        (Endpoint::GeminiPost { model, .. }, _) => model.trim_start_matches("models/").to_string(),
        (Endpoint::AzurePost { deployment, .. }, _) => deployment.clone(),
        (_, Some(m)) if api::valid_name(&m) => m.into_owned(),
        (_, Some(_)) => {
            return Err(Refusal::error(
                ErrorKind::InvalidRequest,
                "Invalid model name",
            ))
        }
        (_, None) => {
            return Err(Refusal::error(
                ErrorKind::InvalidRequest,
                "The request names no `model`",
            ))
        }
    };
    // A batch is authorised by the model in its path: every item must name that
    // model, or the key's model scope could be stepped around.
    if matches!(endpoint, Endpoint::GeminiPost { method, .. } if *method == "batchEmbedContents") {
        let path_model = format!("models/{model}");
        let batch = serde_json::from_slice::<BatchBody>(body).map_err(|_| {
            Refusal::error(
                ErrorKind::InvalidRequest,
                "batchEmbedContents needs `requests`: a list of embedding requests",
            )
        })?;
        if batch.requests.iter().any(|i| {
            i.model
                .as_deref()
                .is_some_and(|m| m != path_model && m != model)
        }) {
            return Err(Refusal::error(
                ErrorKind::InvalidRequest,
                format!(
                    "Every request in a batch must name the model in the path (`{path_model}`)"
                ),
            ));
        }
    }
    Ok(model)
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// Gemini `batchEmbedContents`: each request names its model again.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    requests: Vec<BatchItem<'a>>,
}

#[derive(Deserialize)]
struct BatchItem<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

enum BodyError {
    TooLarge,
    Broken,
}

/// After the limit, this much more is read and discarded so that the client, still
/// sending, receives the 413 rather than a reset connection.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a request body of at most `max` bytes.
async fn read_body(body: Body, max: usize) -> Result<bytes::Bytes, BodyError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        total += chunk.len();
        if total > max {
            if total > max + DRAIN_LIMIT {
                return Err(BodyError::TooLarge);
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if total > max {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}
