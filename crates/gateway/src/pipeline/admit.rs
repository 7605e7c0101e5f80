//! Stage 5, admit: the key's own limits, its owner's and its environment's
//! (from `[[limits]]`), all taken at once by the [`crate::limits::Limiter`]; a
//! request over any of them gets 429 with the provider's rate-limit headers.

use super::authenticate::Caller;
use super::Refusal;
use crate::context::Gateway;
use crate::limits::{Admitted, LimitError, Limits};

/// Every scope a request counts in, `(id, label, limits)`: the key; its owner and
/// its environment always (their spend is booked even without a rule, so that a
/// budget set later knows it), with the `[[limits]]` rule when there is one; and
/// for a user's token, the user with the rule's per-user limits.
pub fn scopes(gw: &Gateway, caller: &Caller) -> Vec<(String, String, Limits)> {
    let rec = &caller.entry.record;
    let mut scopes = vec![(
        format!("key:{}", rec.id),
        "key".to_string(),
        caller.entry.limits,
    )];
    if let Some(o) = &rec.owner {
        let l = gw.owner_limits.get(o).copied().unwrap_or_default();
        scopes.push((format!("owner:{o}"), format!("owner `{o}`"), l));
    }
    let l = gw
        .environment_limits
        .get(&rec.environment)
        .copied()
        .unwrap_or_default();
    scopes.push((
        format!("env:{}", rec.environment),
        format!("environment `{}`", rec.environment),
        l,
    ));
    if let Some(u) = &caller.user {
        scopes.push((
            format!("user:{}", u.id),
            format!("user `{}`", u.id),
            u.limits,
        ));
    }
    scopes
}

pub async fn request(
    gw: &Gateway,
    caller: &Caller,
    scopes: &[(String, String, Limits)],
) -> Result<Admitted, Refusal> {
    let ids = scopes
        .iter()
        .filter(|(_, _, l)| !l.is_empty())
        .map(|(id, _, _)| id.clone())
        .collect();
    match gw.limiter.admit(scopes).await {
        Ok(permit) => Ok(Admitted {
            permit,
            scopes: ids,
        }),
        Err(LimitError::Exceeded(exceeded)) => Err(Refusal::Limited {
            exceeded,
            key_id: caller.entry.record.id.clone(),
        }),
        Err(LimitError::Unavailable(why)) => Err(Refusal::counters_unavailable(&why)),
    }
}
