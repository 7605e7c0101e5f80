//! What the detector benches share: the ordinary text hostile inputs are
//! compared with, and the hostile fragments.

/// A typical chat request body (system prompt, a few turns, a pasted config
/// file), as the gateway screens it before forwarding: "ordinary text".
pub fn chat_request() -> String {
    let turn = "Could you review this deployment script and tell me why the health check \
                fails after the rollout? It worked yesterday on staging with the same image.";
    let config =
        "server:\n  port: 8080\n  host: 0.0.0.0\nlogging:\n  level: info\n  format: json\n\
                  database:\n  url: postgres://app@db.internal:5432/app\n  pool: 20\n";
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a careful SRE assistant. Answer briefly."}),
    ];
    for i in 0..6 {
        messages.push(
            serde_json::json!({"role": "user", "content": format!("{turn} (turn {i})\n{config}")}),
        );
        messages.push(serde_json::json!({"role": "assistant", "content": format!("Looking at turn {i}: the probe path and the port differ; check the readiness probe.")}));
    }
    serde_json::json!({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2})
        .to_string()
}

/// Keyword fragments, each repeated into a hostile input: ones that once cost a
/// window search each (see tests/engine.rs), and denser ones the assignment
/// judge reads in full.
pub const HOSTILE: &[(&str, &str)] = &[
    ("host", "host= "),
    ("azure", "azure "),
    ("putty", "PuTTY-User-Key-File-"),
    ("password", "password = "),
    ("key-key", "key key "),
    ("jwt-parts", "eyJhbGciOi.eyJ"),
    ("pem", "-----BEGIN RSA PRIVATE KEY-----\n"),
    ("url-creds", "https://u:p@"),
    ("escape-token", "\\nghp_"),
    ("pwd", "pwd="),
    ("api-key", "api_key: "),
    ("password-flag", "--password "),
    ("basic", "Authorization: Basic "),
    ("key-eq", "key="),
    ("curl-user", "--user "),
    ("short-quoted", "pass='a' "),
    ("short-pair", "secret=\"a\","),
    // A finding every dozen bytes: the cost of reporting, beside that of looking.
    ("found-password", "pass=abcd\n"), // keyward:allow (a fixture, not a password)
    ("found-token", "token='Kq7Zr9Xw2Lm4' "), // keyward:allow (a fixture, not a token)
];
