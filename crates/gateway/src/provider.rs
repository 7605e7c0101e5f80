//! A configured upstream provider: which models it serves, the URL of each call,
//! and how its credential is presented.

use crate::api::{Endpoint, Family};
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
            e => Family::of(self.config.kind) == e.family(),
        };
        family_ok && self.config.models.iter().any(|g| glob_match(g, model))
    }

    /// Upstream URL: only configuration and validated names go into it.
    pub fn url(&self, endpoint: &Endpoint, model: &str, alt: Option<&str>) -> String {
        Family::of(self.config.kind).adapter().upstream_url(
            &self.config,
            &self.base,
            endpoint,
            model,
            alt,
        )
    }

    /// The header that carries the credential, the provider's way.
    pub fn credential_header(&self, secret: &str) -> Option<(HeaderName, HeaderValue)> {
        crate::api::credential_header(self.config.kind, secret)
    }
}
