//! Token usage in one shape for every provider (each family's adapter reads its
//! own reports into it); and the records of it that the gateway keeps.
//!
//! Field meanings (what is billed at which price):
//! - `input`: prompt tokens not read from a cache;
//! - `cached_input`: prompt tokens read from the provider's prompt cache;
//! - `cache_write`: prompt tokens written to the cache (Anthropic);
//! - `output`: generated tokens, reasoning (thinking) tokens included;
//! - `reasoning`: of `output`, the reasoning tokens (for reports; not billed twice).

/// Tokens of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Usage {
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
    /// `issuer:subject` when a user's identity token authenticated the request.
    pub subject: Option<String>,
    /// The owner the request counts under.
    pub owner: Option<String>,
}

/// Where usage records go (the port: the store's batch writer now, others later).
/// `record` never blocks the request path.
pub trait UsageSink: Send + Sync {
    fn record(&self, r: UsageRecord);
}
