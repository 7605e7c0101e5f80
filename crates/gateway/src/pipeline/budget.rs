//! Stage 7, reserve: the worst case a request can cost is reserved against
//! every spend budget that applies (key, owner, environment) before it goes
//! upstream; the meter settles it to the real cost. The worst case: every byte of
//! the body an input token at the model's dearest input price, plus the output
//! the request allows (`max_tokens` and its kin) at the output price. A request
//! that sets no output bound gets the most the budget still allows (at most
//! [`DEFAULT_OUTPUT_CAP`]) written into it, and the response says so in
//! `x-keyward-max-tokens`. A budgeted key calling a model without a known price
//! is refused (fail closed).

use super::authenticate::Caller;
use super::Refusal;
use crate::api::{Endpoint, ErrorKind};
use crate::budget::{BudgetError, Reservation};
use crate::config::ProviderKind;
use crate::context::Gateway;
use crate::limits::Limits;
use crate::prices::Price;
use bytes::Bytes;
use serde_json::Value;

/// Output bound written into a request that sets none (tokens).
pub const DEFAULT_OUTPUT_CAP: u64 = 32_768;

/// A priced request.
pub struct Reserved {
    pub reservation: Reservation,
    /// The body to send (with an output bound added, when one was needed).
    pub body: Bytes,
    /// The output bound the gateway wrote into the request, if it did.
    pub max_tokens_set: Option<u64>,
}

/// Writes an output bound into `v` the way `endpoint` names it.
fn set_output_bound(v: &mut Value, endpoint: &Endpoint, kind: ProviderKind, n: u64) -> bool {
    v.as_object_mut().is_some_and(|o| {
        endpoint
            .family()
            .adapter()
            .set_output_bound(o, endpoint, kind, n)
    })
}

/// A budgeted scope's spend so far, for the threshold alerts.
fn spend_of<'a>(
    key_id: &'a str,
    (id, label, budget): &'a (String, String, crate::budget::Budget),
    spent: crate::budget::Spent,
) -> crate::watch::budgets::ScopeSpend<'a> {
    crate::watch::budgets::ScopeSpend {
        scope_id: id,
        label,
        key_id,
        budget: *budget,
        spent,
    }
}

/// A failed reservation as a refusal (telling the detectors of a budget used up).
async fn refused(
    gw: &Gateway,
    key_id: &str,
    budgets: &[(String, String, crate::budget::Budget)],
    e: BudgetError,
) -> Refusal {
    match e {
        BudgetError::Over(e) => {
            if let Some(scope) = budgets.iter().find(|b| b.1 == e.scope) {
                // Refusals are rare: the ledger is asked.
                if let Ok(spent) = gw.ledger.spent(&scope.0).await {
                    gw.watch
                        .budget_refused(&spend_of(key_id, scope, spent), e.period);
                }
            }
            Refusal::OverBudget {
                exceeded: e,
                key_id: key_id.to_string(),
            }
        }
        BudgetError::Unavailable(why) => Refusal::counters_unavailable(&why),
    }
}

/// Reserves the request's worst case, or refuses it.
pub async fn reserve(
    gw: &Gateway,
    caller: &Caller,
    scopes: &[(String, String, Limits)],
    endpoint: &Endpoint,
    kind: ProviderKind,
    model: &str,
    body: Bytes,
) -> Result<Reserved, Refusal> {
    let budgets: Vec<(String, String, crate::budget::Budget)> = scopes
        .iter()
        .map(|(id, label, l)| (id.clone(), label.clone(), l.budget()))
        .collect();
    let budgeted = budgets.iter().any(|b| !b.2.is_empty());
    let price: Option<Price> = gw.prices.lookup(model).map(|e| e.price);
    let key_id = caller.entry.record.id.as_str();
    if !budgeted {
        // Booked at zero: only the real cost matters where no budget applies,
        // and the request path is spared the worst-case arithmetic.
        let reservation = match gw.ledger.reserve(&budgets, 0).await {
            Ok(r) => r,
            Err(e) => return Err(refused(gw, key_id, &budgets, e).await),
        };
        return Ok(Reserved {
            reservation,
            body,
            max_tokens_set: None,
        });
    }
    let Some(price) = price else {
        return Err(Refusal::error(
            ErrorKind::Permission,
            format!(
                "No known price for model `{model}`: a key with a spend budget cannot use it (price it under [[prices]] in the config)"
            ),
        ));
    };
    let input_price = price.input.max(price.cached_input).max(price.cache_write);
    let input_worst = (body.len() as i64).saturating_mul(input_price);
    let mut body = body;
    let mut max_tokens_set = None;
    let output_tokens = if !endpoint.generates_output() {
        0
    } else {
        let parsed: Option<Value> = {
            let body = body.clone();
            crate::offload::by_size(body.len(), move || serde_json::from_slice(&body).ok()).await
        };
        match parsed
            .as_ref()
            .and_then(|v| endpoint.family().adapter().output_bound(v))
        {
            Some(n) => n,
            None => {
                let left = match gw.ledger.remaining(&budgets).await {
                    Ok(left) => left.unwrap_or(i64::MAX),
                    Err(e) => return Err(refused(gw, key_id, &budgets, e).await),
                };
                let room = left.saturating_sub(input_worst);
                let allowed = if price.output > 0 {
                    (room / price.output).max(0) as u64
                } else {
                    DEFAULT_OUTPUT_CAP
                }
                .min(DEFAULT_OUTPUT_CAP);
                if allowed == 0 {
                    // Not even one token fits: refused below with the budget named.
                    1
                } else {
                    let mut v = parsed.unwrap_or(Value::Null);
                    if set_output_bound(&mut v, endpoint, kind, allowed) {
                        body = crate::offload::by_size(body.len(), move || {
                            Bytes::from(serde_json::to_vec(&v).expect("a JSON value serialises"))
                        })
                        .await;
                        max_tokens_set = Some(allowed);
                    }
                    allowed
                }
            }
        }
    };
    let worst = input_worst
        .saturating_add((output_tokens.min(i64::MAX as u64) as i64).saturating_mul(price.output));
    let reservation = match gw.ledger.reserve(&budgets, worst).await {
        Ok(r) => r,
        Err(e) => return Err(refused(gw, key_id, &budgets, e).await),
    };
    // The spend as the reservation read it: no second trip to the ledger.
    for scope in budgets.iter().filter(|b| !b.2.is_empty()) {
        if let Some(spent) = reservation.spent_of(&scope.0) {
            gw.watch.budget_spend(&spend_of(key_id, scope, spent));
        }
    }
    Ok(Reserved {
        reservation,
        body,
        max_tokens_set,
    })
}
