//! The three wire formats the gateway speaks: which endpoint a request is for,
//! and how each family phrases an error so its SDK raises the usual exception.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A provider API family (wire format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Anthropic,
    Gemini,
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
}

const OPENAI_POSTS: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
];

/// Classifies a request; `None` for anything the gateway does not serve (404).
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Option<Endpoint> {
    let is_post = method == Method::POST;
    let is_get = method == Method::GET;
    if let Some(suffix) = path.strip_prefix("/v1") {
        if is_post {
            if let Some(s) = OPENAI_POSTS.iter().find(|s| **s == suffix) {
                return Some(Endpoint::OpenAiPost { suffix: s });
            }
            match suffix {
                "/messages" => {
                    return Some(Endpoint::AnthropicPost {
                        suffix: "/messages",
                    })
                }
                "/messages/count_tokens" => {
                    return Some(Endpoint::AnthropicPost {
                        suffix: "/messages/count_tokens",
                    })
                }
                _ => {}
            }
        }
        if is_get && suffix == "/models" {
            return Some(if headers.contains_key("anthropic-version") {
                Endpoint::AnthropicListModels
            } else if headers.contains_key("x-goog-api-key") {
                Endpoint::GeminiListModels
            } else {
                Endpoint::OpenAiListModels
            });
        }
        if let Some(model) = suffix.strip_prefix("/models/") {
            if is_get && valid_name(model) && !model.contains(':') {
                let family = if headers.contains_key("anthropic-version") {
                    Family::Anthropic
                } else if headers.contains_key("x-goog-api-key") {
                    Family::Gemini
                } else {
                    Family::OpenAi
                };
                return Some(Endpoint::GetModel {
                    family,
                    model: model.to_string(),
                });
            }
        }
    }
    for version in ["/v1beta", "/v1alpha", "/v1"] {
        if let Some(rest) = path
            .strip_prefix(version)
            .and_then(|r| r.strip_prefix("/models"))
        {
            if is_get && rest.is_empty() {
                return Some(Endpoint::GeminiListModels);
            }
            if let Some(call) = rest.strip_prefix('/') {
                if is_get && valid_name(call) && !call.contains(':') {
                    return Some(Endpoint::GetModel {
                        family: Family::Gemini,
                        model: call.to_string(),
                    });
                }
                let (model, m) = call.rsplit_once(':')?;
                let method = match m {
                    "generateContent" => "generateContent",
                    "streamGenerateContent" => "streamGenerateContent",
                    "countTokens" => "countTokens",
                    "embedContent" => "embedContent",
                    "batchEmbedContents" => "batchEmbedContents",
                    _ => return None,
                };
                if !is_post || !valid_name(model) {
                    return None;
                }
                return Some(Endpoint::GeminiPost {
                    version: version[1..].to_string(),
                    model: model.to_string(),
                    method,
                });
            }
        }
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, suffix) = rest.split_once('/')?;
        let suffix = OPENAI_POSTS.iter().find(|s| s[1..] == *suffix)?;
        if is_post && valid_name(deployment) {
            return Some(Endpoint::AzurePost {
                deployment: deployment.to_string(),
                suffix,
            });
        }
    }
    None
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
        h.insert("x-request-id", v.clone());
        if family == Family::Anthropic {
            // Where the Anthropic SDKs look for it.
            h.insert("request-id", v.clone());
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
    let status = kind.status();
    let text = format!("{message} (request id: {request_id})");
    match family {
        Family::OpenAi => {
            let (ty, code) = match kind {
                ErrorKind::Authentication => ("invalid_request_error", "invalid_api_key"),
                ErrorKind::Permission => ("permission_error", "permission_denied"),
                ErrorKind::NotFound => ("invalid_request_error", "not_found"),
                ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
                ErrorKind::TooLarge => ("invalid_request_error", "request_too_large"),
                ErrorKind::UriTooLong => ("invalid_request_error", "uri_too_long"),
                ErrorKind::Unavailable => ("server_error", "unavailable"),
                ErrorKind::Upstream => ("server_error", "upstream_error"),
                ErrorKind::Timeout => ("server_error", "upstream_timeout"),
                ErrorKind::RateLimited => ("requests", "rate_limit_exceeded"),
                ErrorKind::BudgetExhausted => ("insufficient_quota", "insufficient_quota"),
            };
            json!({"error": {"message": text, "type": ty, "param": null, "code": code}})
        }
        Family::Anthropic => {
            let ty = match kind {
                ErrorKind::Authentication => "authentication_error",
                ErrorKind::Permission => "permission_error",
                ErrorKind::NotFound => "not_found_error",
                ErrorKind::InvalidRequest | ErrorKind::UriTooLong => "invalid_request_error",
                ErrorKind::TooLarge => "request_too_large",
                ErrorKind::Unavailable | ErrorKind::Upstream | ErrorKind::Timeout => "api_error",
                ErrorKind::RateLimited | ErrorKind::BudgetExhausted => "rate_limit_error",
            };
            json!({"type": "error", "error": {"type": ty, "message": text}, "request_id": request_id})
        }
        Family::Gemini => {
            let st = match kind {
                ErrorKind::Authentication => "UNAUTHENTICATED",
                ErrorKind::Permission => "PERMISSION_DENIED",
                ErrorKind::NotFound => "NOT_FOUND",
                ErrorKind::InvalidRequest | ErrorKind::TooLarge | ErrorKind::UriTooLong => {
                    "INVALID_ARGUMENT"
                }
                ErrorKind::Unavailable => "UNAVAILABLE",
                ErrorKind::Upstream => "INTERNAL",
                ErrorKind::Timeout => "DEADLINE_EXCEEDED",
                ErrorKind::RateLimited | ErrorKind::BudgetExhausted => "RESOURCE_EXHAUSTED",
            };
            json!({"error": {"code": status.as_u16(), "message": text, "status": st}})
        }
    }
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
}
