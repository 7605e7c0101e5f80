//! The Gemini family: `/{version}/models/{model}:{method}` calls, the model in
//! the path, `usageMetadata`, and Google's error statuses.

use super::{valid_name, Adapter, Endpoint, ErrorKind, Family};
use crate::config::{ProviderConfig, ProviderKind};
use crate::usage::Usage;
use axum::http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

pub struct Gemini;

/// The methods served after `models/{model}:`.
const METHODS: &[&str] = &[
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
];

fn n(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

impl Adapter for Gemini {
    /// Calls under `/v1beta`, `/v1alpha` and `/v1`. Under `/v1`, the model list
    /// and lookups are Gemini's only with an `x-goog-api-key` header (OpenAI's
    /// otherwise).
    fn classify(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Endpoint> {
        let is_get = method == Method::GET;
        for version in ["/v1beta", "/v1alpha", "/v1"] {
            let Some(rest) = path
                .strip_prefix(version)
                .and_then(|r| r.strip_prefix("/models"))
            else {
                continue;
            };
            let listing_is_ours = version != "/v1" || headers.contains_key("x-goog-api-key");
            if is_get && rest.is_empty() {
                return listing_is_ours.then_some(Endpoint::GeminiListModels);
            }
            let call = rest.strip_prefix('/')?;
            if is_get && valid_name(call) && !call.contains(':') {
                return listing_is_ours.then(|| Endpoint::GetModel {
                    family: Family::Gemini,
                    model: call.to_string(),
                });
            }
            let (model, m) = call.rsplit_once(':')?;
            let name = METHODS.iter().find(|known| **known == m)?;
            return (method == Method::POST && valid_name(model)).then(|| Endpoint::GeminiPost {
                version: version[1..].to_string(),
                model: model.to_string(),
                method: name,
            });
        }
        None
    }

    fn error_body(&self, kind: ErrorKind, text: &str, _request_id: &str) -> Value {
        let status = match kind {
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
        json!({"error": {"code": kind.status().as_u16(), "message": text, "status": status}})
    }

    fn request_id_headers(&self) -> &'static [&'static str] {
        &["x-request-id"]
    }

    fn stream_error_event(&self, error: &Value) -> String {
        format!("data: {error}\n\n")
    }

    /// Google's APIs send no rate-limit headers beside `Retry-After`.
    fn rate_limit_headers(&self, _unit: &str, _limit: u64, _retry: i64) -> Vec<(String, String)> {
        Vec::new()
    }

    fn model_object(&self, model: &str, _owner: &str) -> Value {
        json!({
            "name": format!("models/{model}"), "displayName": model,
            "supportedGenerationMethods": METHODS,
        })
    }

    fn model_list(&self, objects: Vec<Value>, _ids: &[&str]) -> Value {
        json!({"models": objects})
    }

    /// `usageMetadata`: the prompt count includes cached tokens; thoughts are
    /// billed as output but counted apart from the candidates.
    fn usage(&self, v: &Value) -> Option<Usage> {
        let u = v.get("usageMetadata")?;
        let prompt = n(u, "promptTokenCount").unwrap_or(0);
        let cached = n(u, "cachedContentTokenCount").unwrap_or(0);
        let thoughts = n(u, "thoughtsTokenCount").unwrap_or(0);
        Some(Usage {
            input: prompt.saturating_sub(cached),
            cached_input: cached,
            output: n(u, "candidatesTokenCount").unwrap_or(0) + thoughts,
            reasoning: thoughts,
            cache_write: 0,
        })
    }

    /// A chunk with a finish reason.
    fn is_final_event(&self, v: &Value) -> bool {
        v.get("candidates")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("finishReason").is_some_and(|f| !f.is_null()))
            })
    }

    fn upstream_url(
        &self,
        _provider: &ProviderConfig,
        base: &str,
        endpoint: &Endpoint,
        model: &str,
        alt: Option<&str>,
    ) -> String {
        let Endpoint::GeminiPost {
            version, method, ..
        } = endpoint
        else {
            return base.to_string();
        };
        let mut url = format!("{base}/{version}/models/{model}:{method}");
        if let Some(a) = alt.filter(|a| matches!(*a, "sse" | "json" | "proto")) {
            url.push_str("?alt=");
            url.push_str(a);
        }
        url
    }

    fn credential(&self, _kind: ProviderKind, secret: &str) -> (&'static str, String) {
        ("x-goog-api-key", secret.to_string())
    }

    fn output_bound(&self, v: &Value) -> Option<u64> {
        v.get("generationConfig")?.get("maxOutputTokens")?.as_u64()
    }

    fn set_output_bound(
        &self,
        body: &mut Map<String, Value>,
        _endpoint: &Endpoint,
        _kind: ProviderKind,
        n: u64,
    ) -> bool {
        let config = body
            .entry("generationConfig")
            .or_insert_with(|| Value::Object(Default::default()));
        match config.as_object_mut() {
            Some(c) => {
                c.insert("maxOutputTokens".into(), n.into());
                true
            }
            None => false,
        }
    }

    /// Gemini streams always report usage.
    fn asks_for_stream_usage(&self, _endpoint: &Endpoint, _kind: ProviderKind) -> bool {
        false
    }
}
