//! The three wire formats the gateway speaks. Everything that differs between
//! provider families lives in one adapter per family ([`Adapter`]): which paths
//! are its endpoints, how it phrases errors and rate limits, how its streams
//! frame events, where it reports usage, how the credential is presented
//! upstream and how a request bounds its output. The rest of the gateway asks
//! the adapter and never matches on the family itself.

pub mod anthropic;
pub mod gemini;
pub mod openai;

use crate::config::{ProviderConfig, ProviderKind};
use crate::usage::Usage;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// A provider API family (wire format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Family {
    /// The family whose wire format a provider speaks.
    pub fn of(kind: ProviderKind) -> Family {
        match kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::AzureOpenai => {
                Family::OpenAi
            }
            ProviderKind::Anthropic => Family::Anthropic,
            ProviderKind::Gemini => Family::Gemini,
        }
    }

    /// The family's adapter.
    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            Family::OpenAi => &openai::OpenAi,
            Family::Anthropic => &anthropic::Anthropic,
            Family::Gemini => &gemini::Gemini,
        }
    }
}

/// What one provider family knows about its own wire format. Implementations
/// hold no state; each is a unit struct in its own module.
pub trait Adapter: Sync {
    /// The endpoint of this family at `method` and `path`, if it is one. Names
    /// that travel upstream are checked with [`valid_name`].
    fn classify(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Endpoint>;
    /// The error body its SDKs parse into their usual exception. `text` is free
    /// of secrets and already carries the request id.
    fn error_body(&self, kind: ErrorKind, text: &str, request_id: &str) -> Value;
    /// The response headers its SDKs read the request id from.
    fn request_id_headers(&self) -> &'static [&'static str];
    /// A server-sent event carrying `error`, to end a stream cut short.
    fn stream_error_event(&self, error: &Value) -> String;
    /// Its rate-limit headers for a refused request (`unit`: `requests` or
    /// `tokens`), beside the `Retry-After` every family gets.
    fn rate_limit_headers(
        &self,
        unit: &str,
        limit: u64,
        retry_after_ms: i64,
    ) -> Vec<(String, String)>;
    /// One model, described with the fields its SDKs require.
    fn model_object(&self, model: &str, owner: &str) -> Value;
    /// A model list of `objects` (whose ids are `ids`, in order).
    fn model_list(&self, objects: Vec<Value>, ids: &[&str]) -> Value;
    /// The usage one JSON value reports (a whole response or one streamed
    /// event), if it reports any.
    fn usage(&self, v: &Value) -> Option<Usage>;
    /// Whether a streamed event is the stream's last word on usage.
    fn is_final_event(&self, v: &Value) -> bool;
    /// The upstream URL of a call: only configuration and validated names go
    /// into it. `base` is the provider's base URL without a trailing slash.
    fn upstream_url(
        &self,
        provider: &ProviderConfig,
        base: &str,
        endpoint: &Endpoint,
        model: &str,
        alt: Option<&str>,
    ) -> String;
    /// The header name and value that present `secret` to a provider of `kind`.
    fn credential(&self, kind: ProviderKind, secret: &str) -> (&'static str, String);
    /// The output bound (`max_tokens` and its kin) a request sets, if any.
    fn output_bound(&self, body: &Value) -> Option<u64>;
    /// Writes an output bound of `n` tokens into a request body; false when the
    /// body has no place for one.
    fn set_output_bound(
        &self,
        body: &mut Map<String, Value>,
        endpoint: &Endpoint,
        kind: ProviderKind,
        n: u64,
    ) -> bool;
    /// Whether streams of `endpoint` report usage only when asked, so that the
    /// gateway asks (and takes the extra chunk out again).
    fn asks_for_stream_usage(&self, endpoint: &Endpoint, kind: ProviderKind) -> bool;
}

/// The credential header for `secret`, marked sensitive (never logged); `None`
/// when the secret cannot be a header value.
pub fn credential_header(kind: ProviderKind, secret: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = Family::of(kind).adapter().credential(kind, secret);
    let mut v = HeaderValue::from_str(&value).ok()?;
    v.set_sensitive(true);
    Some((HeaderName::from_static(name), v))
}

/// A gateway endpoint, as classified from method, path and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// OpenAI-style POST under `/v1/…` (chat/completions, completions, embeddings,
    /// responses); `suffix` is the path after `/v1`.
    OpenAiPost { suffix: &'static str },
    /// Azure OpenAI data-plane call naming its deployment in the path.
    AzurePost {
        deployment: String,
        suffix: &'static str,
    },
    /// `GET /v1/models`, answered from configuration.
    OpenAiListModels,
    /// Anthropic `POST /v1/messages` and `/v1/messages/count_tokens`.
    AnthropicPost { suffix: &'static str },
    /// `GET /v1/models` with an `anthropic-version` header.
    AnthropicListModels,
    /// Gemini `POST /{version}/models/{model}:{method}`.
    GeminiPost {
        version: String,
        model: String,
        method: &'static str,
    },
    /// `GET /{version}/models`.
    GeminiListModels,
    /// `GET /v1/models/{model}` (OpenAI, or Anthropic with an `anthropic-version`
    /// header) and Gemini's `GET /{version}/models/{model}`, answered from
    /// configuration.
    GetModel { family: Family, model: String },
}

impl Endpoint {
    pub fn family(&self) -> Family {
        match self {
            Endpoint::OpenAiPost { .. }
            | Endpoint::AzurePost { .. }
            | Endpoint::OpenAiListModels => Family::OpenAi,
            Endpoint::AnthropicPost { .. } | Endpoint::AnthropicListModels => Family::Anthropic,
            Endpoint::GeminiPost { .. } | Endpoint::GeminiListModels => Family::Gemini,
            Endpoint::GetModel { family, .. } => *family,
        }
    }

    /// The name used in a key's `endpoints` scope.
    pub fn scope_name(&self) -> &'static str {
        match self {
            Endpoint::OpenAiPost { suffix } | Endpoint::AzurePost { suffix, .. } => match *suffix {
                "/chat/completions" => "chat.completions",
                "/completions" => "completions",
                "/embeddings" => "embeddings",
                _ => "responses",
            },
            Endpoint::OpenAiListModels
            | Endpoint::AnthropicListModels
            | Endpoint::GeminiListModels
            | Endpoint::GetModel { .. } => "models",
            Endpoint::AnthropicPost { suffix } => {
                if *suffix == "/messages" {
                    "messages"
                } else {
                    "messages.count_tokens"
                }
            }
            Endpoint::GeminiPost { method, .. } => method,
        }
    }

    /// Whether the endpoint generates output tokens (embeddings and token
    /// counts do not).
    pub fn generates_output(&self) -> bool {
        !matches!(
            self.scope_name(),
            "embeddings"
                | "embedContent"
                | "batchEmbedContents"
                | "countTokens"
                | "messages.count_tokens"
                | "models"
        )
    }
}

/// Classifies a request; `None` for anything the gateway does not serve (404).
/// Anthropic and Gemini claim their paths first: where the same path is
/// OpenAI's too (`GET /v1/models`), the header their SDKs send decides.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Option<Endpoint> {
    [Family::Anthropic, Family::Gemini, Family::OpenAi]
        .into_iter()
        .find_map(|f| f.adapter().classify(method, path, headers))
}

/// Model and deployment names travel into upstream URLs: allow only what real
/// names contain, so nothing can add path segments, queries or a host.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'))
        && s != "."
        && s != ".."
}

/// The error classes clients see, mapped to each family's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Authentication,
    Permission,
    NotFound,
    InvalidRequest,
    TooLarge,
    /// The request target is longer than [`MAX_TARGET_LEN`].
    UriTooLong,
    Unavailable,
    Upstream,
    Timeout,
    /// A rate, token or concurrency limit (429).
    RateLimited,
    /// A spend budget is used up for its period (429).
    BudgetExhausted,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Permission => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::RateLimited | ErrorKind::BudgetExhausted => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Longest request target (path and query, bytes) answered other than with 414:
/// provider paths are short, and every byte of a path is screened and logged.
pub const MAX_TARGET_LEN: usize = 8 << 10;

/// An error response in the family's own format. `message` must be free of
/// secrets (callers pass fixed phrases and ids); the request id is appended.
pub fn error_response(
    family: Family,
    kind: ErrorKind,
    message: &str,
    request_id: &str,
) -> Response {
    let body = error_body(family, kind, message, request_id);
    let mut resp = (
        kind.status(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(request_id) {
        let h = resp.headers_mut();
        for name in family.adapter().request_id_headers() {
            h.insert(*name, v.clone());
        }
        h.insert(KEYWARD_REQUEST_ID, v);
    }
    resp
}

/// The response header carrying Keyward's own id for every request.
pub const KEYWARD_REQUEST_ID: &str = "x-keyward-request-id";

/// The JSON body of [`error_response`] (also sent as the last event of a stream
/// that is cut short).
pub fn error_body(family: Family, kind: ErrorKind, message: &str, request_id: &str) -> Value {
    let text = format!("{message} (request id: {request_id})");
    family.adapter().error_body(kind, &text, request_id)
}

/// The family to answer in when a request could not be classified: guessed from
/// the path and the auth header the SDK used.
pub fn guess_family(path: &str, headers: &HeaderMap) -> Family {
    if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
        Family::Anthropic
    } else if headers.contains_key("x-goog-api-key")
        || path.starts_with("/v1beta")
        || path.contains(":generate")
    {
        Family::Gemini
    } else {
        Family::OpenAi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(m: Method, p: &str) -> Option<Endpoint> {
        classify(&m, p, &HeaderMap::new())
    }

    #[test]
    fn classifies_each_sdk_path() {
        assert_eq!(
            c(Method::POST, "/v1/chat/completions"),
            Some(Endpoint::OpenAiPost {
                suffix: "/chat/completions"
            })
        );
        assert_eq!(
            c(Method::POST, "/v1/messages"),
            Some(Endpoint::AnthropicPost {
                suffix: "/messages"
            })
        );
        assert_eq!(
            c(
                Method::POST,
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
            ),
            Some(Endpoint::GeminiPost {
                version: "v1beta".into(),
                model: "gemini-2.0-flash".into(),
                method: "streamGenerateContent"
            })
        );
        assert_eq!(
            c(Method::POST, "/openai/deployments/gpt4o/chat/completions"),
            Some(Endpoint::AzurePost {
                deployment: "gpt4o".into(),
                suffix: "/chat/completions"
            })
        );
        assert_eq!(
            c(Method::GET, "/v1/models"),
            Some(Endpoint::OpenAiListModels)
        );
        assert_eq!(
            c(Method::GET, "/v1beta/models"),
            Some(Endpoint::GeminiListModels)
        );
    }

    #[test]
    fn refuses_paths_that_could_steer_the_upstream() {
        assert_eq!(
            c(Method::POST, "/v1beta/models/..%2F..%2Fx:generateContent"),
            None
        );
        assert_eq!(c(Method::POST, "/v1beta/models/a/b:generateContent"), None);
        assert_eq!(
            c(Method::POST, "/openai/deployments/../chat/completions"),
            None
        );
        assert_eq!(c(Method::GET, "/config"), None);
        assert_eq!(c(Method::POST, "/v1/chat/completions/../../admin"), None);
    }
    #[test]
    fn each_provider_shape_is_read() {
        let openai = json!({"usage": {"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 5}}});
        assert_eq!(
            Family::OpenAi.adapter().usage(&openai),
            Some(Usage {
                input: 40,
                cached_input: 60,
                output: 20,
                reasoning: 5,
                cache_write: 0
            })
        );
        let embeddings =
            json!({"object": "list", "usage": {"prompt_tokens": 4, "total_tokens": 4}});
        assert_eq!(
            Family::OpenAi.adapter().usage(&embeddings).unwrap().input,
            4
        );
        let responses = json!({"type": "response.completed", "response": {"usage": {"input_tokens": 30,
            "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 3}}}});
        assert_eq!(
            Family::OpenAi.adapter().usage(&responses),
            Some(Usage {
                input: 20,
                cached_input: 10,
                output: 9,
                reasoning: 3,
                cache_write: 0
            })
        );
        let anthropic = json!({"type": "message", "role": "assistant", "usage": {"input_tokens": 12,
            "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50, "output_tokens": 8}});
        assert_eq!(
            Family::Anthropic.adapter().usage(&anthropic),
            Some(Usage {
                input: 12,
                cached_input: 50,
                cache_write: 100,
                output: 8,
                reasoning: 0
            })
        );
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}});
        let delta = json!({"type": "message_delta", "usage": {"output_tokens": 40}});
        let mut u = Family::Anthropic.adapter().usage(&start).unwrap();
        u.merge(Family::Anthropic.adapter().usage(&delta).unwrap());
        assert_eq!((u.input, u.output), (12, 40));
        let gemini = json!({"usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 7,
            "cachedContentTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 16}});
        assert_eq!(
            Family::Gemini.adapter().usage(&gemini),
            Some(Usage {
                input: 4,
                cached_input: 2,
                output: 10,
                reasoning: 3,
                cache_write: 0
            })
        );
        for family in [Family::OpenAi, Family::Anthropic, Family::Gemini] {
            assert_eq!(family.adapter().usage(&json!({"choices": []})), None);
            assert_eq!(family.adapter().usage(&json!({"usage": null})), None);
        }
        // Each family reads only its own shape.
        assert_eq!(Family::Gemini.adapter().usage(&openai), None);
        assert_eq!(Family::OpenAi.adapter().usage(&gemini), None);
    }

    #[test]
    fn shared_paths_go_to_the_family_whose_header_the_sdk_sends() {
        let with = |name: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            h
        };
        let list = |h: &HeaderMap| classify(&Method::GET, "/v1/models", h);
        assert_eq!(list(&HeaderMap::new()), Some(Endpoint::OpenAiListModels));
        assert_eq!(
            list(&with("anthropic-version")),
            Some(Endpoint::AnthropicListModels)
        );
        assert_eq!(
            list(&with("x-goog-api-key")),
            Some(Endpoint::GeminiListModels)
        );
        let get = |h: &HeaderMap| match classify(&Method::GET, "/v1/models/m-1", h) {
            Some(Endpoint::GetModel { family, model }) if model == "m-1" => Some(family),
            _ => None,
        };
        assert_eq!(get(&HeaderMap::new()), Some(Family::OpenAi));
        assert_eq!(get(&with("anthropic-version")), Some(Family::Anthropic));
        assert_eq!(get(&with("x-goog-api-key")), Some(Family::Gemini));
        assert_eq!(
            c(Method::POST, "/v1/models/gemini-2.0-flash:generateContent"),
            Some(Endpoint::GeminiPost {
                version: "v1".into(),
                model: "gemini-2.0-flash".into(),
                method: "generateContent"
            })
        );
        assert_eq!(c(Method::GET, "/v1beta/models/g:generateContent"), None);
        assert_eq!(c(Method::PUT, "/v1beta/models/g:generateContent"), None);
        assert_eq!(c(Method::GET, "/v1/messages"), None);
    }

    #[test]
    fn output_bounds_are_read_and_written_in_each_familys_field() {
        let chat = Endpoint::OpenAiPost {
            suffix: "/chat/completions",
        };
        let mut o = Map::new();
        let openai = Family::OpenAi.adapter();
        assert!(openai.set_output_bound(&mut o, &chat, ProviderKind::Openai, 7));
        assert_eq!(
            Value::Object(o.clone()),
            json!({"max_completion_tokens": 7})
        );
        assert_eq!(openai.output_bound(&Value::Object(o)), Some(7));
        let mut o = Map::new();
        openai.set_output_bound(&mut o, &chat, ProviderKind::OpenaiCompatible, 7);
        assert_eq!(Value::Object(o), json!({"max_tokens": 7}));
        let gemini = Family::Gemini.adapter();
        let call = c(Method::POST, "/v1beta/models/g:generateContent").unwrap();
        let mut o = Map::new();
        o.insert("generationConfig".into(), json!({"temperature": 0}));
        assert!(gemini.set_output_bound(&mut o, &call, ProviderKind::Gemini, 9));
        let v = Value::Object(o);
        assert_eq!(
            v["generationConfig"],
            json!({"temperature": 0, "maxOutputTokens": 9})
        );
        assert_eq!(gemini.output_bound(&v), Some(9));
        assert_eq!(Family::Anthropic.adapter().output_bound(&v), None);
    }
}
