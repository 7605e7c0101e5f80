//! Reading a verified token's claims: nested paths and the rules' patterns.

use crate::config::glob_match;
use crate::config::identity::ClaimPattern;
use serde_json::{Map, Value};

/// The value at `path` (levels joined by `/`; a claim name may itself hold
/// dots, as `kubernetes.io` does).
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('/');
    let mut at = claims.get(parts.next()?)?;
    for p in parts {
        at = at.as_object()?.get(p)?;
    }
    Some(at)
}

/// A scalar claim as text (strings as they are, numbers and booleans written
/// out); `None` for objects, arrays and null.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// True when the claim at `path` matches one of `pattern`'s globs; an array
/// claim matches when one of its scalar items does.
pub fn matches(claims: &Map<String, Value>, path: &str, pattern: &ClaimPattern) -> bool {
    let Some(v) = lookup(claims, path) else {
        return false;
    };
    let hit = |s: &str| pattern.patterns().iter().any(|p| glob_match(p, s));
    match v {
        Value::Array(items) => items.iter().filter_map(scalar).any(|s| hit(&s)),
        other => scalar(other).is_some_and(|s| hit(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_arrays_and_globs() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"repository": "acme/app", "ref": "refs/heads/main", "groups": ["dev", "ops"],
                "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder"}},
                "tier": 2, "admin": false}"#,
        )
        .unwrap();
        let one = |s: &str| ClaimPattern::One(s.into());
        assert!(matches(&claims, "repository", &one("acme/*")));
        assert!(!matches(&claims, "repository", &one("other/*")));
        assert!(matches(&claims, "kubernetes.io/namespace", &one("ci")));
        assert!(matches(
            &claims,
            "kubernetes.io/serviceaccount/name",
            &one("builder")
        ));
        assert!(matches(&claims, "groups", &one("ops")));
        assert!(!matches(&claims, "groups", &one("root")));
        assert!(matches(
            &claims,
            "tier",
            &ClaimPattern::Any(vec!["1".into(), "2".into()])
        ));
        assert!(matches(&claims, "admin", &one("false")));
        assert!(!matches(&claims, "missing", &one("*")));
        assert!(
            !matches(&claims, "kubernetes.io", &one("*")),
            "objects never match"
        );
    }
}
