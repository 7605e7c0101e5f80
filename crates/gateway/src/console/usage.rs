//! The usage page: requests, tokens or spend per day by key, owner,
//! environment, model, provider or user; totals and top spenders; budgets
//! against their limits.

use super::chart::{self, Chart, Series};
use super::format;
use super::keys::{limits_of, period_starts};
use super::{page, store_failure, Section, Shell, Signed};
use crate::context::Gateway;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyward_store::UsageGroup;
use std::collections::HashMap;
use std::sync::Arc;

/// Series drawn one by one; the rest are summed as "other".
const SERIES: usize = 6;

#[derive(serde::Deserialize, Default)]
pub struct UsageQuery {
    #[serde(default)]
    by: String,
    #[serde(default)]
    metric: String,
    #[serde(default)]
    days: Option<i64>,
}

pub struct TotalRow {
    pub label: String,
    pub href: Option<String>,
    pub requests: String,
    pub input: String,
    pub output: String,
    pub spend: String,
    pub unpriced: i64,
}

pub struct BudgetRow {
    pub scope: String,
    pub period: &'static str,
    pub spent: String,
    pub limit: String,
    /// Spent, as a share of the limit (for `<meter>`).
    pub ratio: f64,
    pub over: bool,
}

/// A choice in one of the page's selectors.
pub struct Choice {
    pub value: String,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(askama::Template)]
#[template(path = "console/usage.html")]
struct UsagePage {
    shell: Shell,
    groupings: Vec<Choice>,
    metrics: Vec<Choice>,
    periods: Vec<Choice>,
    chart: Chart,
    totals: Vec<TotalRow>,
    budgets: Vec<BudgetRow>,
    group_label: &'static str,
}

const GROUPINGS: [(&str, &str, UsageGroup); 6] = [
    ("key", "Key", UsageGroup::Key),
    ("owner", "Owner", UsageGroup::Owner),
    ("env", "Environment", UsageGroup::Environment),
    ("model", "Model", UsageGroup::Model),
    ("provider", "Provider", UsageGroup::Provider),
    ("user", "User", UsageGroup::User),
];

fn choices<T: ToString + PartialEq>(options: &[(T, &'static str)], current: &T) -> Vec<Choice> {
    options
        .iter()
        .map(|(v, label)| Choice {
            value: v.to_string(),
            label,
            selected: v == current,
        })
        .collect()
}

/// `GET /console/usage`.
pub async fn render(gw: &Gateway, signed: &Signed, q: UsageQuery) -> Response {
    let (by_name, group_label, by) = GROUPINGS
        .iter()
        .find(|(n, _, _)| *n == q.by)
        .copied()
        .unwrap_or(GROUPINGS[0]);
    let metric = match q.metric.as_str() {
        "requests" | "tokens" => q.metric.as_str(),
        _ => "spend",
    };
    let days = q.days.filter(|d| [1, 7, 30, 90].contains(d)).unwrap_or(30);
    let now_ms = crate::time::now_ms();
    let today = now_ms.div_euclid(86_400_000);
    let since_ms = (today - days + 1) * 86_400_000;
    let store = &gw.backend.store;
    let (daily, totals, keys) = match (
        store.usage_daily(by, since_ms).await,
        store.usage_totals(by, since_ms).await,
        store.keys().await,
    ) {
        (Ok(d), Ok(t), Ok(k)) => (d, t, k),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return store_failure("usage", &e),
    };
    let key_names: HashMap<&str, &str> = keys
        .iter()
        .map(|k| (k.id.as_str(), k.name.as_str()))
        .collect();
    let label = |group: &str| match (by, key_names.get(group)) {
        (UsageGroup::Key, Some(name)) => format!("{name} ({group})"),
        _ => group.to_string(),
    };
    let amount = |requests: i64, tokens: i64, cost: i64| match metric {
        "requests" => requests as f64,
        "tokens" => tokens as f64,
        _ => cost as f64,
    };
    // The groups with most of the metric get their own series.
    let mut weight: HashMap<&str, f64> = HashMap::new();
    for d in &daily {
        *weight.entry(d.group.as_str()).or_default() += amount(d.requests, d.tokens, d.cost_pico);
    }
    let mut ranked: Vec<(&str, f64)> = weight.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let named: Vec<&str> = ranked.iter().take(SERIES).map(|(g, _)| *g).collect();
    let day_labels: Vec<String> = (0..days)
        .map(|i| {
            let t = (today - days + 1 + i) * 86_400;
            format::time(t)[..10].to_string()
        })
        .collect();
    let mut series: Vec<Series> = named
        .iter()
        .map(|g| Series {
            label: label(g),
            values: vec![0.0; days as usize],
        })
        .collect();
    let mut other = Series {
        label: "other".into(),
        values: vec![0.0; days as usize],
    };
    for d in &daily {
        let Some(i) = day_labels.iter().position(|l| *l == d.day) else {
            continue;
        };
        let v = amount(d.requests, d.tokens, d.cost_pico);
        match named.iter().position(|g| *g == d.group) {
            Some(s) => series[s].values[i] += v,
            None => other.values[i] += v,
        }
    }
    if other.values.iter().any(|v| *v > 0.0) {
        series.push(other);
    }
    let fmt_value = |v: f64| match metric {
        "spend" => format::money(v.round() as i64),
        _ => format::count(v.round() as i64),
    };
    let chart = chart::stacked(
        format!(
            "{metric} per day by {} over {days} days",
            group_label.to_lowercase()
        ),
        &day_labels,
        &series,
        if metric == "spend" { 0.0 } else { 4.0 },
        fmt_value,
    );
    let mut totals = totals;
    totals.sort_by(|a, b| {
        b.cost_pico
            .cmp(&a.cost_pico)
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.group.cmp(&b.group))
    });
    let totals = totals
        .iter()
        .map(|t| TotalRow {
            label: label(&t.group),
            href: (by == UsageGroup::Key && key_names.contains_key(t.group.as_str()))
                .then(|| format!("/console/keys/{}", format::path_segment(&t.group))),
            requests: format::count(t.requests),
            input: format::count(t.input_tokens + t.cached_input_tokens + t.cache_write_tokens),
            output: format::count(t.output_tokens),
            spend: format::money(t.cost_pico),
            unpriced: t.unpriced,
        })
        .collect();
    let budgets = match budgets(gw, &keys, now_ms).await {
        Ok(b) => b,
        Err(e) => return store_failure("budgets", &e),
    };
    page(
        StatusCode::OK,
        &UsagePage {
            shell: Shell::new(signed, Section::Usage, "Usage and spend"),
            groupings: GROUPINGS
                .iter()
                .map(|(v, l, _)| Choice {
                    value: v.to_string(),
                    label: l,
                    selected: *v == by_name,
                })
                .collect(),
            metrics: choices(
                &[
                    ("spend", "Spend"),
                    ("requests", "Requests"),
                    ("tokens", "Tokens"),
                ],
                &metric,
            ),
            periods: choices(
                &[
                    (1, "Today"),
                    (7, "7 days"),
                    (30, "30 days"),
                    (90, "90 days"),
                ],
                &days,
            ),
            chart,
            totals,
            budgets,
            group_label,
        },
    )
}

/// Every budget (keys', owners', environments') against what was spent in
/// its period so far.
async fn budgets(
    gw: &Gateway,
    keys: &[keyward_store::KeyRecord],
    now_ms: i64,
) -> Result<Vec<BudgetRow>, keyward_store::Error> {
    let (day, month) = period_starts(now_ms);
    let store = &gw.backend.store;
    let spent = |rows: Vec<keyward_store::UsageTotals>| {
        rows.into_iter()
            .map(|t| (t.group, t.cost_pico))
            .collect::<HashMap<_, _>>()
    };
    let mut out = Vec::new();
    let now = now_ms / 1000;
    let mut add = |scope: String, period: &'static str, spent: i64, limit: i64| {
        out.push(BudgetRow {
            scope,
            period,
            spent: format::money(spent),
            limit: format::money(limit),
            ratio: (spent as f64 / limit.max(1) as f64).min(1.0),
            over: spent >= limit,
        })
    };
    let scopes: [(UsageGroup, Vec<(String, crate::limits::Limits)>); 3] = [
        (
            UsageGroup::Key,
            keys.iter()
                .filter(|k| super::keys::state(k, now) != "revoked")
                .map(|k| (k.id.clone(), limits_of(k)))
                .collect(),
        ),
        (
            UsageGroup::Owner,
            gw.owner_limits
                .iter()
                .map(|(o, l)| (o.clone(), *l))
                .collect(),
        ),
        (
            UsageGroup::Environment,
            gw.environment_limits
                .iter()
                .map(|(e, l)| (e.clone(), *l))
                .collect(),
        ),
    ];
    for (group, mut limited) in scopes {
        limited.retain(|(_, l)| l.daily_budget.is_some() || l.monthly_budget.is_some());
        if limited.is_empty() {
            continue;
        }
        limited.sort_by(|a, b| a.0.cmp(&b.0));
        let today = spent(store.usage_totals(group, day).await?);
        let this_month = spent(store.usage_totals(group, month).await?);
        for (scope, l) in limited {
            let name = match group {
                UsageGroup::Key => {
                    let k = keys.iter().find(|k| k.id == scope);
                    format!("key {} ({scope})", k.map_or("", |k| k.name.as_str()))
                }
                UsageGroup::Owner => format!("owner {scope}"),
                _ => format!("environment {scope}"),
            };
            if let Some(limit) = l.daily_budget {
                add(
                    name.clone(),
                    "today",
                    today.get(&scope).copied().unwrap_or(0),
                    limit,
                );
            }
            if let Some(limit) = l.monthly_budget {
                add(
                    name,
                    "this month",
                    this_month.get(&scope).copied().unwrap_or(0),
                    limit,
                );
            }
        }
    }
    Ok(out)
}

/// `GET /console/usage?by=&metric=&days=`.
pub async fn page_route(
    State(gw): State<Arc<Gateway>>,
    signed: Signed,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    render(&gw, &signed, query.map(|Query(q)| q).unwrap_or_default()).await
}
