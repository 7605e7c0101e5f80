//! Stage 5, admit: the key's own limits, its owner's and its environment's
//! (from `[[limits]]`), all taken at once by the [`crate::limits::Limiter`]; a
//! request over any of them gets 429 with the provider's rate-limit headers.

use super::authenticate::Caller;
use super::Refusal;
use crate::context::Gateway;
use crate::limits::Admitted;

pub fn request(gw: &Gateway, caller: &Caller) -> Result<Admitted, Refusal> {
    let rec = &caller.entry.record;
    let mut scopes = vec![(
        format!("key:{}", rec.id),
        "key".to_string(),
        caller.entry.limits,
    )];
    if let Some(o) = &rec.owner {
        if let Some(l) = gw.owner_limits.get(o) {
            scopes.push((format!("owner:{o}"), format!("owner `{o}`"), *l));
        }
    }
    if let Some(l) = gw.environment_limits.get(&rec.environment) {
        scopes.push((
            format!("env:{}", rec.environment),
            format!("environment `{}`", rec.environment),
            *l,
        ));
    }
    let ids = scopes
        .iter()
        .filter(|(_, _, l)| !l.is_empty())
        .map(|(id, _, _)| id.clone())
        .collect();
    match gw.limiter.admit(&scopes) {
        Ok(permit) => Ok(Admitted {
            permit,
            scopes: ids,
        }),
        Err(exceeded) => Err(Refusal::Limited {
            exceeded,
            key_id: rec.id.clone(),
        }),
    }
}
