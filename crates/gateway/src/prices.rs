//! What tokens cost: the price table shipped with Keyward (`data/prices.toml`),
//! extended and overridden by the config's `[[prices]]`, and the cost of a
//! request's usage in pico-dollars (10⁻¹² US$), integers so that sums, budgets and
//! reservations are exact.

use crate::usage::Usage;
use serde::Deserialize;
use std::collections::HashMap;

/// The shipped table.
const BUILTIN: &str = include_str!("../data/prices.toml");

/// Pico-dollars in one dollar.
pub const PICO_PER_DOLLAR: i64 = 1_000_000_000_000;

/// One model's prices, in US$ per million tokens as written; kept as pico-dollars
/// per token (the same number times 10⁶).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// A model's price per token, in pico-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub cache_write: i64,
}

impl Price {
    fn from_spec(s: &PriceSpec) -> Result<Price, String> {
        let pico = |x: f64| -> Result<i64, String> {
            if !(0.0..=100_000.0).contains(&x) {
                return Err(format!(
                    "{x} is not a price per million tokens (0 to 100000)"
                ));
            }
            Ok((x * 1e6).round() as i64)
        };
        let input = pico(s.input)?;
        Ok(Price {
            input,
            output: pico(s.output)?,
            // Without a cache price, cached and cache-written tokens cost as input.
            cached_input: s.cached_input.map(pico).transpose()?.unwrap_or(input),
            cache_write: s.cache_write.map(pico).transpose()?.unwrap_or(input),
        })
    }

    /// The cost of `u`, in pico-dollars (saturating: no sum wraps).
    pub fn cost(&self, u: &Usage) -> i64 {
        let part =
            |tokens: u64, price: i64| (tokens.min(i64::MAX as u64) as i64).saturating_mul(price);
        part(u.input, self.input)
            .saturating_add(part(u.output, self.output))
            .saturating_add(part(u.cached_input, self.cached_input))
            .saturating_add(part(u.cache_write, self.cache_write))
    }
}

/// A priced model: where its price comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub model: String,
    pub provider: String,
    /// When the figures were read (`config` for the config's own).
    pub taken: String,
    pub spec: PriceSpec,
    pub price: Price,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    model: Vec<Block>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    provider: String,
    taken: String,
    prices: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    model: String,
    #[serde(flatten)]
    spec: PriceSpec,
}

/// A price the config adds or overrides (`[[prices]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPrice {
    pub model: String,
    #[serde(flatten)]
    pub spec: PriceSpec,
}

/// Model name → price.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    by_model: HashMap<String, Entry>,
}

impl PriceTable {
    /// The shipped table.
    pub fn builtin() -> PriceTable {
        let file: File = toml::from_str(BUILTIN).expect("data/prices.toml parses (a test checks)");
        let mut t = PriceTable::default();
        for b in file.model {
            for r in b.prices {
                let price = Price::from_spec(&r.spec).expect("shipped prices are in range");
                t.by_model.insert(
                    r.model.clone(),
                    Entry {
                        model: r.model,
                        provider: b.provider.clone(),
                        taken: b.taken.clone(),
                        spec: r.spec,
                        price,
                    },
                );
            }
        }
        t
    }

    /// The shipped table with the config's prices added over it.
    pub fn with_config(extra: &[ConfigPrice]) -> Result<PriceTable, String> {
        let mut t = Self::builtin();
        for p in extra {
            let price =
                Price::from_spec(&p.spec).map_err(|e| format!("[[prices]] {}: {e}", p.model))?;
            t.by_model.insert(
                p.model.clone(),
                Entry {
                    model: p.model.clone(),
                    provider: "config".into(),
                    taken: "config".into(),
                    spec: p.spec,
                    price,
                },
            );
        }
        Ok(t)
    }

    /// The price of `model`: its own entry, else that of the longest name it
    /// extends with a date or version suffix (`gpt-4o-mini-2024-07-18` →
    /// `gpt-4o-mini`, `claude-3-5-haiku-20241022`, `mistral-large-2411`,
    /// `-latest`). `None` when nothing matches: the model has no known price.
    pub fn lookup(&self, model: &str) -> Option<&Entry> {
        let model = model.trim_start_matches("models/");
        if let Some(e) = self.by_model.get(model) {
            return Some(e);
        }
        let mut cut = model.len();
        while let Some(i) = model[..cut].rfind('-') {
            let (base, suffix) = (&model[..i], &model[i + 1..]);
            if is_version_suffix(suffix) {
                if let Some(e) = self.by_model.get(base) {
                    return Some(e);
                }
            } else {
                return None;
            }
            cut = i;
        }
        None
    }

    /// Every entry, sorted by provider and model.
    pub fn entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.by_model.values().collect();
        v.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        v
    }
}

/// A snapshot suffix: digits and dashes (`2024-07-18`, `20241022`, `2411`,
/// `001`), a version (`v2`), `latest`, `preview` or `exp` with optional digits.
fn is_version_suffix(s: &str) -> bool {
    !s.is_empty()
        && (s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            || s == "latest"
            || s.strip_prefix('v')
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())))
}

/// Pico-dollars as dollars with up to six decimals (`$0.000125`).
pub fn dollars(pico: i64) -> String {
    let micro = (pico + 500_000) / 1_000_000;
    format!("${}.{:06}", micro / 1_000_000, (micro % 1_000_000).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_with_over_a_hundred_models_of_every_provider() {
        let t = PriceTable::builtin();
        assert!(t.by_model.len() >= 100, "{} models", t.by_model.len());
        for p in [
            "openai",
            "anthropic",
            "google",
            "mistral",
            "deepseek",
            "xai",
            "groq",
        ] {
            assert!(t.entries().iter().any(|e| e.provider == p), "{p}");
        }
        for e in t.entries() {
            assert!(e.spec.output >= 0.0 && e.spec.input >= 0.0, "{e:?}");
            assert!(e.taken.len() == 10, "{e:?}");
        }
    }

    #[test]
    fn snapshots_take_their_base_price_and_unknown_models_have_none() {
        let t = PriceTable::builtin();
        assert_eq!(
            t.lookup("gpt-4o-mini-2024-07-18").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(
            t.lookup("claude-3-5-haiku-20241022").unwrap().model,
            "claude-3-5-haiku"
        );
        assert_eq!(
            t.lookup("models/gemini-2.0-flash").unwrap().model,
            "gemini-2.0-flash"
        );
        // Listed snapshots keep their own price.
        assert_eq!(
            t.lookup("gpt-4o-2024-05-13").unwrap().model,
            "gpt-4o-2024-05-13"
        );
        // A different model is not a snapshot of a shorter name.
        assert!(t.lookup("gpt-4o-turbo-ultra").is_none());
        assert!(t.lookup("my-finetune").is_none());
    }

    #[test]
    fn costs_are_exact_integers_and_cache_prices_apply() {
        let t = PriceTable::with_config(&[ConfigPrice {
            model: "house-model".into(),
            spec: PriceSpec {
                input: 1.0,
                output: 2.0,
                cached_input: Some(0.1),
                cache_write: None,
            },
        }])
        .unwrap();
        let p = t.lookup("house-model").unwrap().price;
        let u = Usage {
            input: 1_000_000,
            output: 500_000,
            cached_input: 1_000_000,
            cache_write: 10,
            reasoning: 0,
        };
        // $1 + $1 + $0.10 + 10 tokens at the input price.
        assert_eq!(p.cost(&u), PICO_PER_DOLLAR * 21 / 10 + 10 * 1_000_000);
        assert_eq!(dollars(p.cost(&u)), "$2.100010");
        let bad = PriceTable::with_config(&[ConfigPrice {
            model: "x".into(),
            spec: PriceSpec {
                input: -1.0,
                output: 0.0,
                cached_input: None,
                cache_write: None,
            },
        }]);
        assert!(bad.unwrap_err().contains("[[prices]] x"));
    }
}
