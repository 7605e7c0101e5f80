//! The OpenAI family: the OpenAI API itself, OpenAI-compatible providers and
//! Azure OpenAI (same wire format; Azure names the deployment in the path and
//! takes its key in `api-key`).

use super::{valid_name, Adapter, Endpoint, ErrorKind, Family};
use crate::config::{ProviderConfig, ProviderKind};
use crate::usage::Usage;
use axum::http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

pub struct OpenAi;

/// The POST endpoints under `/v1` (and under an Azure deployment).
const POSTS: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
];

fn n(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_u64()
}

/// The usage-only chunk an OpenAI chat stream ends with when usage is asked for.
pub fn is_usage_only_chunk(v: &Value) -> bool {
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

impl Adapter for OpenAi {
    fn classify(&self, method: &Method, path: &str, _headers: &HeaderMap) -> Option<Endpoint> {
        if let Some(suffix) = path.strip_prefix("/v1") {
            if method == Method::POST {
                if let Some(s) = POSTS.iter().find(|s| **s == suffix) {
                    return Some(Endpoint::OpenAiPost { suffix: s });
                }
            }
            if method == Method::GET && suffix == "/models" {
                return Some(Endpoint::OpenAiListModels);
            }
            if let Some(model) = suffix.strip_prefix("/models/") {
                if method == Method::GET && valid_name(model) && !model.contains(':') {
                    return Some(Endpoint::GetModel {
                        family: Family::OpenAi,
                        model: model.to_string(),
                    });
                }
            }
        }
        let rest = path.strip_prefix("/openai/deployments/")?;
        let (deployment, suffix) = rest.split_once('/')?;
        let suffix = POSTS.iter().find(|s| s[1..] == *suffix)?;
        (method == Method::POST && valid_name(deployment)).then(|| Endpoint::AzurePost {
            deployment: deployment.to_string(),
            suffix,
        })
    }

    fn error_body(&self, kind: ErrorKind, text: &str, _request_id: &str) -> Value {
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

    fn request_id_headers(&self) -> &'static [&'static str] {
        &["x-request-id"]
    }

    fn stream_error_event(&self, error: &Value) -> String {
        format!("data: {error}\n\n")
    }

    fn rate_limit_headers(
        &self,
        unit: &str,
        limit: u64,
        retry_after_ms: i64,
    ) -> Vec<(String, String)> {
        vec![
            (format!("x-ratelimit-limit-{unit}"), limit.to_string()),
            (format!("x-ratelimit-remaining-{unit}"), "0".into()),
            (
                format!("x-ratelimit-reset-{unit}"),
                format!("{retry_after_ms}ms"),
            ),
        ]
    }

    fn model_object(&self, model: &str, owner: &str) -> Value {
        json!({"id": model, "object": "model", "created": 0, "owned_by": owner})
    }

    fn model_list(&self, objects: Vec<Value>, _ids: &[&str]) -> Value {
        json!({"object": "list", "data": objects})
    }

    /// Chat, completions and embeddings report `usage.prompt_tokens` (cached
    /// tokens included); the Responses API reports `usage.input_tokens` (also
    /// under `response` in its `response.completed` event).
    fn usage(&self, v: &Value) -> Option<Usage> {
        let u = v.get("usage").filter(|u| u.is_object()).or_else(|| {
            v.get("response")
                .and_then(|r| r.get("usage"))
                .filter(|u| u.is_object())
        })?;
        if let Some(prompt) = n(u, &["prompt_tokens"]) {
            let cached = n(u, &["prompt_tokens_details", "cached_tokens"]).unwrap_or(0);
            return Some(Usage {
                input: prompt.saturating_sub(cached),
                cached_input: cached,
                output: n(u, &["completion_tokens"]).unwrap_or(0),
                reasoning: n(u, &["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0),
                cache_write: 0,
            });
        }
        if u.get("input_tokens").is_none() && u.get("output_tokens").is_none() {
            return None;
        }
        let input = n(u, &["input_tokens"]).unwrap_or(0);
        let cached = n(u, &["input_tokens_details", "cached_tokens"]).unwrap_or(0);
        Some(Usage {
            input: input.saturating_sub(cached),
            cached_input: cached,
            output: n(u, &["output_tokens"]).unwrap_or(0),
            reasoning: n(u, &["output_tokens_details", "reasoning_tokens"]).unwrap_or(0),
            cache_write: 0,
        })
    }

    /// A chat stream's usage chunk; the Responses API's `response.completed`
    /// (or `.incomplete`, `.failed`).
    fn is_final_event(&self, v: &Value) -> bool {
        match v.get("type").and_then(Value::as_str) {
            Some(t) => matches!(
                t,
                "response.completed" | "response.incomplete" | "response.failed"
            ),
            None => is_usage_only_chunk(v),
        }
    }

    fn upstream_url(
        &self,
        provider: &ProviderConfig,
        base: &str,
        endpoint: &Endpoint,
        model: &str,
        _alt: Option<&str>,
    ) -> String {
        let suffix = match endpoint {
            Endpoint::OpenAiPost { suffix } | Endpoint::AzurePost { suffix, .. } => *suffix,
            _ => return base.to_string(),
        };
        if provider.kind == ProviderKind::AzureOpenai {
            format!(
                "{base}/deployments/{model}{suffix}?api-version={}",
                provider.api_version.as_deref().unwrap_or_default()
            )
        } else {
            format!("{base}{suffix}")
        }
    }

    fn credential(&self, kind: ProviderKind, secret: &str) -> (&'static str, String) {
        if kind == ProviderKind::AzureOpenai {
            ("api-key", secret.to_string())
        } else {
            ("authorization", format!("Bearer {secret}"))
        }
    }

    fn output_bound(&self, v: &Value) -> Option<u64> {
        ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_u64))
    }

    /// The Responses API calls it `max_output_tokens`; OpenAI's own chat API
    /// `max_completion_tokens` (its `max_tokens` is deprecated, and refused by
    /// reasoning models); compatible providers and legacy completions
    /// `max_tokens`.
    fn set_output_bound(
        &self,
        body: &mut Map<String, Value>,
        endpoint: &Endpoint,
        kind: ProviderKind,
        n: u64,
    ) -> bool {
        let field = match endpoint.scope_name() {
            "responses" => "max_output_tokens",
            "chat.completions"
                if matches!(kind, ProviderKind::Openai | ProviderKind::AzureOpenai) =>
            {
                "max_completion_tokens"
            }
            _ => "max_tokens",
        };
        body.insert(field.into(), n.into());
        true
    }

    /// OpenAI's chat streams report usage only when asked; compatible providers
    /// are not asked, since not all of them accept `stream_options`.
    fn asks_for_stream_usage(&self, endpoint: &Endpoint, kind: ProviderKind) -> bool {
        endpoint.scope_name() == "chat.completions"
            && matches!(kind, ProviderKind::Openai | ProviderKind::AzureOpenai)
    }
}
