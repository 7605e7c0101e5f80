//! Model lists and lookups, answered from the config (never upstream): the models
//! the caller's key may use, in its family's format.

use crate::api::{self, Endpoint, ErrorKind, Family};
use crate::config::glob_match;
use crate::context::Gateway;
use crate::keys::KeyEntry;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The answer for a model list or lookup endpoint; `None` for any other.
pub fn answer(gw: &Gateway, endpoint: &Endpoint, entry: &KeyEntry, rid: &str) -> Option<Response> {
    match endpoint {
        Endpoint::OpenAiListModels | Endpoint::AnthropicListModels | Endpoint::GeminiListModels => {
            Some(list_models(gw, endpoint, entry))
        }
        Endpoint::GetModel { family, model } => Some(get_model(gw, *family, model, entry, rid)),
        _ => None,
    }
}

/// One model as the family's API describes it (the fields its SDKs require).
fn model_object(family: Family, model: &str, owner: &str) -> serde_json::Value {
    match family {
        Family::OpenAi => {
            serde_json::json!({"id": model, "object": "model", "created": 0, "owned_by": owner})
        }
        Family::Anthropic => serde_json::json!({
            "type": "model", "id": model, "display_name": model,
            "created_at": "1970-01-01T00:00:00Z",
        }),
        Family::Gemini => serde_json::json!({
            "name": format!("models/{model}"), "displayName": model,
            "supportedGenerationMethods": [
                "generateContent", "streamGenerateContent", "countTokens",
                "embedContent", "batchEmbedContents",
            ],
        }),
    }
}

fn json_ok(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Model lists are answered from configuration: the concrete models the key may
/// use, in the family's format. Models configured only by a glob (`gpt-4o*`) are
/// not listed, since the glob does not say which exist; `GET /models/{id}` and
/// calls still accept every name the glob matches.
fn list_models(gw: &Gateway, endpoint: &Endpoint, entry: &KeyEntry) -> Response {
    let family = endpoint.family();
    let mut models: Vec<(&str, &str)> = Vec::new();
    for p in &gw.providers {
        if p.config.kind.family() != family || !entry.allows_provider(&p.config.name) {
            continue;
        }
        for m in p
            .config
            .models
            .iter()
            .filter(|m| !m.contains('*') && entry.allows_model(m))
        {
            models.push((m, &p.config.name));
        }
    }
    let objects: Vec<_> = models
        .iter()
        .map(|(m, p)| model_object(family, m, p))
        .collect();
    json_ok(&match family {
        Family::OpenAi => serde_json::json!({"object": "list", "data": objects}),
        Family::Anthropic => serde_json::json!({
            "data": objects,
            "has_more": false,
            "first_id": models.first().map(|m| m.0),
            "last_id": models.last().map(|m| m.0),
        }),
        Family::Gemini => serde_json::json!({"models": objects}),
    })
}

/// `GET /models/{id}`: the model when a provider of this family serves it (by
/// name or glob) and the key may use it there; 404 in the family's format
/// otherwise.
fn get_model(gw: &Gateway, family: Family, model: &str, entry: &KeyEntry, rid: &str) -> Response {
    let model = model.trim_start_matches("models/");
    let owner = gw.providers.iter().find(|p| {
        p.config.kind.family() == family
            && entry.allows_provider(&p.config.name)
            && p.config.models.iter().any(|g| glob_match(g, model))
    });
    match owner {
        Some(p) if entry.allows_model(model) => {
            json_ok(&model_object(family, model, &p.config.name))
        }
        _ => api::error_response(
            family,
            ErrorKind::NotFound,
            &format!("The model `{model}` does not exist or this key may not use it"),
            rid,
        ),
    }
}
