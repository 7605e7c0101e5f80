//! Token usage as each provider reports it, whole or streamed, folded into one
//! shape; and the records of it that the gateway keeps.
//!
//! Field meanings (what is billed at which price):
//! - `input`: prompt tokens not read from a cache;
//! - `cached_input`: prompt tokens read from the provider's prompt cache;
//! - `cache_write`: prompt tokens written to the cache (Anthropic);
//! - `output`: generated tokens, reasoning (thinking) tokens included;
//! - `reasoning`: of `output`, the reasoning tokens (for reports; not billed twice).

use serde_json::Value;

/// Tokens of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

fn n(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_u64()
}

impl Usage {
    /// Usage from one provider JSON object (a whole response, or one streamed
    /// event), if it carries any: OpenAI chat, completions and embeddings
    /// (`usage.prompt_tokens`), the Responses API (`usage.input_tokens`, also under
    /// `response` in `response.completed`), Anthropic (`usage`, also under
    /// `message` in `message_start`), Gemini (`usageMetadata`).
    pub fn from_json(v: &Value) -> Option<Usage> {
        if let Some(u) = v.get("usageMetadata") {
            // Gemini: the prompt count includes cached tokens; thoughts are billed
            // as output but counted apart from the candidates.
            let prompt = n(u, &["promptTokenCount"]).unwrap_or(0);
            let cached = n(u, &["cachedContentTokenCount"]).unwrap_or(0);
            let thoughts = n(u, &["thoughtsTokenCount"]).unwrap_or(0);
            return Some(Usage {
                input: prompt.saturating_sub(cached),
                cached_input: cached,
                output: n(u, &["candidatesTokenCount"]).unwrap_or(0) + thoughts,
                reasoning: thoughts,
                cache_write: 0,
            });
        }
        let u = v
            .get("usage")
            .filter(|u| u.is_object())
            .or_else(|| {
                v.get("response")
                    .and_then(|r| r.get("usage"))
                    .filter(|u| u.is_object())
            })
            .or_else(|| {
                v.get("message")
                    .and_then(|m| m.get("usage"))
                    .filter(|u| u.is_object())
            })?;
        if let Some(prompt) = n(u, &["prompt_tokens"]) {
            // OpenAI chat, completions, embeddings: prompt tokens include cached.
            let cached = n(u, &["prompt_tokens_details", "cached_tokens"]).unwrap_or(0);
            return Some(Usage {
                input: prompt.saturating_sub(cached),
                cached_input: cached,
                output: n(u, &["completion_tokens"]).unwrap_or(0),
                reasoning: n(u, &["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0),
                cache_write: 0,
            });
        }
        if u.get("cache_read_input_tokens").is_some()
            || u.get("cache_creation_input_tokens").is_some()
            || v.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("message"))
            || v.get("role").is_some()
        {
            // Anthropic: input tokens exclude the cache reads and writes.
            return Some(Usage {
                input: n(u, &["input_tokens"]).unwrap_or(0),
                cached_input: n(u, &["cache_read_input_tokens"]).unwrap_or(0),
                cache_write: n(u, &["cache_creation_input_tokens"]).unwrap_or(0),
                output: n(u, &["output_tokens"]).unwrap_or(0),
                reasoning: 0,
            });
        }
        if u.get("input_tokens").is_some() || u.get("output_tokens").is_some() {
            // OpenAI Responses API: input tokens include cached.
            let input = n(u, &["input_tokens"]).unwrap_or(0);
            let cached = n(u, &["input_tokens_details", "cached_tokens"]).unwrap_or(0);
            return Some(Usage {
                input: input.saturating_sub(cached),
                cached_input: cached,
                output: n(u, &["output_tokens"]).unwrap_or(0),
                reasoning: n(u, &["output_tokens_details", "reasoning_tokens"]).unwrap_or(0),
                cache_write: 0,
            });
        }
        None
    }

    /// Folds in a later report of the same request. Streamed reports are
    /// cumulative (Anthropic's `message_delta`, Gemini's chunks), so each field
    /// keeps the largest value seen.
    pub fn merge(&mut self, later: Usage) {
        self.input = self.input.max(later.input);
        self.output = self.output.max(later.output);
        self.cached_input = self.cached_input.max(later.cached_input);
        self.cache_write = self.cache_write.max(later.cache_write);
        self.reasoning = self.reasoning.max(later.reasoning);
    }

    pub fn total(&self) -> u64 {
        self.input + self.output + self.cached_input + self.cache_write
    }
}

/// One request as metered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub at_ms: i64,
    pub request_id: String,
    pub key_id: String,
    pub environment: String,
    pub provider: String,
    pub model: String,
    /// The endpoint's scope name (`chat.completions`, `messages`, …).
    pub endpoint: String,
    pub status: u16,
    pub usage: Usage,
    /// What it cost, in pico-dollars; `None` when the model has no known price.
    pub cost_pico: Option<i64>,
    /// False when the response ended before its usage was reported (a client that
    /// disconnected mid-stream, a cut connection): the tokens are a lower bound.
    pub complete: bool,
}

/// Where usage records go (the port: the store's batch writer now, others later).
/// `record` never blocks the request path.
pub trait UsageSink: Send + Sync {
    fn record(&self, r: UsageRecord);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_provider_shape_is_read() {
        let openai = json!({"usage": {"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 5}}});
        assert_eq!(
            Usage::from_json(&openai),
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
        assert_eq!(Usage::from_json(&embeddings).unwrap().input, 4);
        let responses = json!({"type": "response.completed", "response": {"usage": {"input_tokens": 30,
            "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 3}}}});
        assert_eq!(
            Usage::from_json(&responses),
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
            Usage::from_json(&anthropic),
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
        let mut u = Usage::from_json(&start).unwrap();
        u.merge(Usage::from_json(&delta).unwrap());
        assert_eq!((u.input, u.output), (12, 40));
        let gemini = json!({"usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 7,
            "cachedContentTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 16}});
        assert_eq!(
            Usage::from_json(&gemini),
            Some(Usage {
                input: 4,
                cached_input: 2,
                output: 10,
                reasoning: 3,
                cache_write: 0
            })
        );
        assert_eq!(Usage::from_json(&json!({"choices": []})), None);
        assert_eq!(Usage::from_json(&json!({"usage": null})), None);
    }
}
