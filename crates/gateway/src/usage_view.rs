//! The parts of a whole JSON response body that can report usage, parsed without
//! building the rest of the document.
//!
//! A chat completion is mostly generated text the meter never reads; parsing it
//! into a full [`Value`] allocated every string and map of it on every request.
//! [`UsageView`] validates the whole body like any parse (a body that is not JSON
//! has no view) but keeps only:
//! - `usage` and `usageMetadata`, whole, at the top level and inside `response`
//!   (OpenAI Responses) and `message` (Anthropic);
//! - those two containers, holding only what they hold of the above;
//! - in an array body, each element's view (arrays of arrays too, as the meter
//!   folds them).
//!
//! Everything else is skipped ([`IgnoredAny`]) and read as `null`. The adapters'
//! `usage` readers look only at these keys, so they read a view exactly as they
//! would read the whole body.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A body's usage-bearing parts (see the module docs).
pub struct UsageView(pub Value);

impl UsageView {
    /// The view of `body`; `None` when it is not JSON.
    pub fn of(body: &[u8]) -> Option<UsageView> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let v = Level::Top.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(UsageView(v))
    }
}

/// Where in the document a value sits, which decides what of it is kept.
#[derive(Clone, Copy)]
enum Level {
    /// The body itself, or an element of an array that is the body.
    Top,
    /// `response` or `message` at the top: only its usage is kept.
    Container,
}

/// What an object key means for the level it is in.
enum Key {
    /// Kept whole.
    Usage(String),
    /// Kept as a [`Level::Container`].
    Container(String),
    Skipped,
}

struct KeyAt(Level);

impl<'de> DeserializeSeed<'de> for KeyAt {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyAt {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match (key, self.0) {
            ("usage" | "usageMetadata", _) => Key::Usage(key.to_string()),
            ("response" | "message", Level::Top) => Key::Container(key.to_string()),
            _ => Key::Skipped,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = m.next_key_seed(KeyAt(self))? {
            match key {
                Key::Usage(k) => {
                    kept.insert(k, m.next_value::<Value>()?);
                }
                Key::Container(k) => {
                    kept.insert(k, m.next_value_seed(Level::Container)?);
                }
                Key::Skipped => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Value, A::Error> {
        match self {
            Level::Top => {
                let mut items = Vec::new();
                while let Some(v) = s.next_element_seed(Level::Top)? {
                    items.push(v);
                }
                Ok(Value::Array(items))
            }
            Level::Container => {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Null)
            }
        }
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_usage_bearing_parts_are_kept() {
        let view = UsageView::of(br#"{"id":"c1","choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#).unwrap().0;
        assert_eq!(
            view,
            serde_json::json!({"usage": {"prompt_tokens":12,"completion_tokens":5,
                "prompt_tokens_details":{"cached_tokens":4},
                "completion_tokens_details":{"reasoning_tokens":2}}})
        );
        let view = UsageView::of(br#"{"object":"response","response":{"output":[{"content":"x"}],"usage":{"input_tokens":30,"output_tokens":7,"input_tokens_details":{"cached_tokens":10}}}}"#).unwrap().0;
        assert_eq!(
            view,
            serde_json::json!({"response": {"usage": {"input_tokens":30,"output_tokens":7,
                "input_tokens_details":{"cached_tokens":10}}}})
        );
    }

    #[test]
    fn a_body_that_is_not_json_has_no_view() {
        for bad in [
            "",
            "{",
            r#"{"usage":{"prompt_tokens":1}} trailing"#,
            r#"{"a":[1,}"#,
            "not json",
        ] {
            assert!(UsageView::of(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
