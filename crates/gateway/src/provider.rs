//! A configured upstream provider: which models it serves, the URL of each call,
//! and how its credential is presented.

use crate::api::Endpoint;
use crate::config::{glob_match, ProviderConfig, ProviderKind};
use axum::http::{HeaderName, HeaderValue};

/// A configured provider, ready to call.
pub struct Provider {
    pub config: ProviderConfig,
    base: String,
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Provider {
        let base = config.base_url.trim_end_matches('/').to_string();
        Provider { config, base }
    }

    /// Whether this provider serves `model` on `endpoint`'s API.
    pub fn serves(&self, endpoint: &Endpoint, model: &str) -> bool {
        let family_ok = match endpoint {
            Endpoint::AzurePost { .. } => self.config.kind == ProviderKind::AzureOpenai,
            e => self.config.kind.family() == e.family(),
        };
        family_ok && self.config.models.iter().any(|g| glob_match(g, model))
    }

    /// Upstream URL: only configuration and validated names go into it.
    pub fn url(&self, endpoint: &Endpoint, model: &str, alt: Option<&str>) -> String {
        match (endpoint, self.config.kind) {
            (
                Endpoint::OpenAiPost { suffix } | Endpoint::AzurePost { suffix, .. },
                ProviderKind::AzureOpenai,
            ) => format!(
                "{}/deployments/{model}{suffix}?api-version={}",
                self.base,
                self.config.api_version.as_deref().unwrap_or_default()
            ),
            (Endpoint::OpenAiPost { suffix } | Endpoint::AzurePost { suffix, .. }, _) => {
                format!("{}{suffix}", self.base)
            }
            (Endpoint::AnthropicPost { suffix }, _) => format!("{}/v1{suffix}", self.base),
            (
                Endpoint::GeminiPost {
                    version, method, ..
                },
                _,
            ) => {
                let mut u = format!("{}/{version}/models/{model}:{method}", self.base);
                if let Some(a) = alt.filter(|a| matches!(*a, "sse" | "json" | "proto")) {
                    u.push_str("?alt=");
                    u.push_str(a);
                }
                u
            }
            _ => self.base.clone(),
        }
    }

    /// The header that carries the credential, the provider's way.
    pub fn credential_header(&self, secret: &str) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = match self.config.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                ("authorization", format!("Bearer {secret}"))
            }
            ProviderKind::AzureOpenai => ("api-key", secret.to_string()),
            ProviderKind::Anthropic => ("x-api-key", secret.to_string()),
            ProviderKind::Gemini => ("x-goog-api-key", secret.to_string()),
        };
        let mut v = HeaderValue::from_str(&value).ok()?;
        v.set_sensitive(true);
        Some((HeaderName::from_static(name), v))
    }
}
