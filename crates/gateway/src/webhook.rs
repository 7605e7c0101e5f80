//! Checks on owner webhook URLs (a leaf module: rotation notices carry new keys).

/// Owner webhooks carry new keys: HTTPS only, except to this machine.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url.trim())
        .map_err(|_| "the owner webhook secret does not hold a URL".to_string())?;
    let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("the owner webhook must be an https:// URL (http only to this machine): it receives new keys".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_webhooks_must_be_https_except_on_loopback() {
        assert!(check_webhook_url("https://hooks.example.com/x").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_webhook_url("http://hooks.example.com/x").is_err());
        assert!(check_webhook_url("not a url").is_err());
    }
}
