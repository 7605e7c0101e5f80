//! Redaction policy: per direction, one of redact, block, alert or off; a key's own
//! setting wins over its provider's, which wins over the server's. With nothing
//! configured, secrets are redacted both ways.

use serde::{Deserialize, Serialize};

/// What happens to a secret found in traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replace it with `[REDACTED:<rule>]` before the other side sees it.
    Redact,
    /// Refuse the request (or withhold the response) with an error naming the rule.
    Block,
    /// Pass it on unchanged, but raise an alert.
    Alert,
    /// Do not look.
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Block => "block",
            Action::Alert => "alert",
            Action::Off => "off",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "redact" => Ok(Action::Redact),
            "block" => Ok(Action::Block),
            "alert" => Ok(Action::Alert),
            "off" => Ok(Action::Off),
            other => Err(format!(
                "unknown redaction action `{other}`: use redact, block, alert or off"
            )),
        }
    }
}

/// A partial policy as written in configuration or on a key; unset directions fall
/// through to the next level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Client → provider: prompts, tool results, every string of the request.
    #[serde(default)]
    pub inbound: Option<Action>,
    /// Provider → client: whole and streamed responses.
    #[serde(default)]
    pub outbound: Option<Action>,
}

/// The policy in force for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub inbound: Action,
    pub outbound: Action,
}

impl Policy {
    /// Key over provider over server; `redact` where none says anything.
    pub fn resolve(key: PolicyConfig, provider: PolicyConfig, server: PolicyConfig) -> Policy {
        Policy {
            inbound: key
                .inbound
                .or(provider.inbound)
                .or(server.inbound)
                .unwrap_or(Action::Redact),
            outbound: key
                .outbound
                .or(provider.outbound)
                .or(server.outbound)
                .unwrap_or(Action::Redact),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_setting_wins_and_redact_is_the_default() {
        let none = PolicyConfig::default();
        assert_eq!(
            Policy::resolve(none, none, none),
            Policy {
                inbound: Action::Redact,
                outbound: Action::Redact
            }
        );
        let server = PolicyConfig {
            inbound: Some(Action::Alert),
            outbound: Some(Action::Off),
        };
        let provider = PolicyConfig {
            inbound: Some(Action::Block),
            outbound: None,
        };
        let key = PolicyConfig {
            inbound: None,
            outbound: Some(Action::Redact),
        };
        assert_eq!(
            Policy::resolve(key, provider, server),
            Policy {
                inbound: Action::Block,
                outbound: Action::Redact
            }
        );
        assert!("drop"
            .parse::<Action>()
            .unwrap_err()
            .contains("redact, block"));
    }
}
