//! The Anthropic family: the Messages API (and token counting), its model list,
//! and the `anthropic-version` header that tells its SDK's calls apart.

use super::{valid_name, Adapter, Endpoint, ErrorKind, Family};
use crate::config::{ProviderConfig, ProviderKind};
use crate::usage::Usage;
use axum::http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

pub struct Anthropic;

fn n(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

impl Adapter for Anthropic {
    /// `POST /v1/messages` and `/v1/messages/count_tokens`; model lists and
    /// lookups only with an `anthropic-version` header (the same paths are
    /// OpenAI's otherwise).
    fn classify(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Endpoint> {
        let suffix = path.strip_prefix("/v1")?;
        if method == Method::POST {
            return match suffix {
                "/messages" => Some(Endpoint::AnthropicPost {
                    suffix: "/messages",
                }),
                "/messages/count_tokens" => Some(Endpoint::AnthropicPost {
                    suffix: "/messages/count_tokens",
                }),
                _ => None,
            };
        }
        if method != Method::GET || !headers.contains_key("anthropic-version") {
            return None;
        }
        if suffix == "/models" {
            return Some(Endpoint::AnthropicListModels);
        }
        let model = suffix.strip_prefix("/models/")?;
        (valid_name(model) && !model.contains(':')).then(|| Endpoint::GetModel {
            family: Family::Anthropic,
            model: model.to_string(),
        })
    }

    fn error_body(&self, kind: ErrorKind, text: &str, request_id: &str) -> Value {
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

    /// The Anthropic SDKs read `request-id`.
    fn request_id_headers(&self) -> &'static [&'static str] {
        &["x-request-id", "request-id"]
    }

    fn stream_error_event(&self, error: &Value) -> String {
        format!("event: error\ndata: {error}\n\n")
    }

    /// `anthropic-ratelimit-{requests|tokens}-{limit|remaining|reset}`, the reset
    /// as an RFC 3339 time.
    fn rate_limit_headers(
        &self,
        unit: &str,
        limit: u64,
        retry_after_ms: i64,
    ) -> Vec<(String, String)> {
        let at = std::time::SystemTime::now()
            + std::time::Duration::from_millis(retry_after_ms.max(0) as u64);
        vec![
            (
                format!("anthropic-ratelimit-{unit}-limit"),
                limit.to_string(),
            ),
            (format!("anthropic-ratelimit-{unit}-remaining"), "0".into()),
            (
                format!("anthropic-ratelimit-{unit}-reset"),
                humantime::format_rfc3339_seconds(at).to_string(),
            ),
        ]
    }

    fn model_object(&self, model: &str, _owner: &str) -> Value {
        json!({
            "type": "model", "id": model, "display_name": model,
            "created_at": "1970-01-01T00:00:00Z",
        })
    }

    fn model_list(&self, objects: Vec<Value>, ids: &[&str]) -> Value {
        json!({
            "data": objects,
            "has_more": false,
            "first_id": ids.first(),
            "last_id": ids.last(),
        })
    }

    /// `usage` of a message (also under `message` in `message_start`); input
    /// tokens exclude the cache reads and writes, which come apart.
    fn usage(&self, v: &Value) -> Option<Usage> {
        let u = v.get("usage").filter(|u| u.is_object()).or_else(|| {
            v.get("message")
                .and_then(|m| m.get("usage"))
                .filter(|u| u.is_object())
        })?;
        Some(Usage {
            input: n(u, "input_tokens").unwrap_or(0),
            cached_input: n(u, "cache_read_input_tokens").unwrap_or(0),
            cache_write: n(u, "cache_creation_input_tokens").unwrap_or(0),
            output: n(u, "output_tokens").unwrap_or(0),
            reasoning: 0,
        })
    }

    fn is_final_event(&self, v: &Value) -> bool {
        matches!(
            v.get("type").and_then(Value::as_str),
            Some("message_delta" | "message_stop")
        )
    }

    fn upstream_url(
        &self,
        _provider: &ProviderConfig,
        base: &str,
        endpoint: &Endpoint,
        _model: &str,
        _alt: Option<&str>,
    ) -> String {
        match endpoint {
            Endpoint::AnthropicPost { suffix } => format!("{base}/v1{suffix}"),
            _ => base.to_string(),
        }
    }

    fn credential(&self, _kind: ProviderKind, secret: &str) -> (&'static str, String) {
        ("x-api-key", secret.to_string())
    }

    fn output_bound(&self, v: &Value) -> Option<u64> {
        v.get("max_tokens").and_then(Value::as_u64)
    }

    fn set_output_bound(
        &self,
        body: &mut Map<String, Value>,
        _endpoint: &Endpoint,
        _kind: ProviderKind,
        n: u64,
    ) -> bool {
        body.insert("max_tokens".into(), n.into());
        true
    }

    /// Anthropic streams always report usage.
    fn asks_for_stream_usage(&self, _endpoint: &Endpoint, _kind: ProviderKind) -> bool {
        false
    }
}
