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
        if Family::of(p.config.kind) != family || !entry.allows_provider(&p.config.name) {
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
        .map(|(m, p)| family.adapter().model_object(m, p))
        .collect();
    let ids: Vec<&str> = models.iter().map(|m| m.0).collect();
    json_ok(&family.adapter().model_list(objects, &ids))
}

/// `GET /models/{id}`: the model when a provider of this family serves it (by
/// name or glob) and the key may use it there; 404 in the family's format
/// otherwise.
fn get_model(gw: &Gateway, family: Family, model: &str, entry: &KeyEntry, rid: &str) -> Response {
    let model = model.trim_start_matches("models/");
    let owner = gw.providers.iter().find(|p| {
        Family::of(p.config.kind) == family
            && entry.allows_provider(&p.config.name)
            && p.config.models.iter().any(|g| glob_match(g, model))
    });
    match owner {
        Some(p) if entry.allows_model(model) => {
            json_ok(&family.adapter().model_object(model, &p.config.name))
        }
        _ => api::error_response(
            family,
            ErrorKind::NotFound,
            &format!("The model `{model}` does not exist or this key may not use it"),
            rid,
        ),
    }
}
