//! Stage 4, authorize and route: the key's scope (endpoint, model, provider), the
//! provider that serves the model, the credential for the key's environment, and
//! the redaction policy that applies.

use super::authenticate::Caller;
use super::{Refusal, RequestContext};
use crate::api::{Endpoint, ErrorKind};
use crate::context::Gateway;
use crate::keys::Denial;
use crate::provider::Provider;
use crate::redact::Policy;
use keyward_vault::SecretString;

/// Refuses an endpoint outside the key's `endpoints` scope.
pub fn endpoint(caller: &Caller, endpoint: &Endpoint) -> Result<(), Refusal> {
    if caller.entry.allows_endpoint(endpoint.scope_name()) {
        Ok(())
    } else {
        Err(Refusal::denied(
            Denial::EndpointNotAllowed(endpoint.scope_name()),
            Some(&caller.entry.record.id),
        ))
    }
}

/// Where an authorised request goes.
pub struct Route<'g> {
    pub provider: &'g Provider,
    /// The provider credential for the key's environment.
    pub credential: SecretString,
    pub policy: Policy,
}

/// Routes a request for `model`, or refuses it.
pub fn route<'g>(
    gw: &'g Gateway,
    ctx: &mut RequestContext,
    caller: &Caller,
    endpoint: &Endpoint,
    model: &str,
) -> Result<Route<'g>, Refusal> {
    let entry = &caller.entry;
    let id = Some(entry.record.id.as_str());
    if !entry.allows_model(model) {
        return Err(Refusal::denied(
            Denial::ModelNotAllowed(model.to_string()),
            id,
        ));
    }
    let provider = gw
        .providers
        .iter()
        .find(|p| p.serves(endpoint, model))
        .ok_or_else(|| {
            Refusal::error(
                ErrorKind::NotFound,
                format!("No provider serves model `{model}` on this API"),
            )
        })?;
    ctx.provider = Some(provider.config.name.clone());
    if !entry.allows_provider(&provider.config.name) {
        return Err(Refusal::denied(
            Denial::ProviderNotAllowed(provider.config.name.clone()),
            id,
        ));
    }
    let Some(cred_name) = provider
        .config
        .credential
        .for_env(&entry.record.environment)
    else {
        return Err(Refusal::denied(
            Denial::NoCredentialForEnvironment(entry.record.environment.clone()),
            id,
        ));
    };
    let snapshot = gw.live.snapshot.load();
    let Some(credential) = snapshot.credential(cred_name) else {
        tracing::error!(request_id = %ctx.rid, credential = cred_name, "vault has no secret `{cred_name}`: add it with `{}`",
            gw.commands.command(&format!("vault put {cred_name} < key.txt")));
        return Err(Refusal::error(
            ErrorKind::Unavailable,
            "The provider credential for this route is not configured",
        ));
    };
    Ok(Route {
        provider,
        credential: credential.clone(),
        policy: Policy::resolve(entry.redaction, provider.config.redaction, gw.redaction),
    })
}
