//! `keyward token exchange`: a CI step's OIDC token exchanged at the gateway's
//! `POST /v1/token` for a short-lived Keyward key, printed on stdout (and
//! nothing else there), so that `KEY=$(keyward token exchange)` works.
//!
//! The OIDC token comes from a file (`--token-file`, `-` for stdin: a
//! Kubernetes projected service-account token), an environment variable
//! (`--token-env`), or GitHub Actions' token service (`--github-actions`, or by
//! default when `ACTIONS_ID_TOKEN_REQUEST_URL` is set). Never from argv.

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Exchange a CI or workload OIDC token for a short-lived Keyward key.
    Exchange(ExchangeArgs),
}

#[derive(Args)]
pub struct ExchangeArgs {
    /// The gateway's base URL (e.g. https://keyward.example.com); default
    /// $KEYWARD_URL.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Read the OIDC token from this file (`-`: standard input), such as a
    /// Kubernetes projected service-account token.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["token_env", "github_actions"])]
    token_file: Option<std::path::PathBuf>,
    /// Read the OIDC token from this environment variable (default
    /// KEYWARD_OIDC_TOKEN when no other source is named).
    #[arg(long, value_name = "NAME", conflicts_with = "github_actions")]
    token_env: Option<String>,
    /// Ask GitHub Actions for the job's OIDC token (needs `permissions:
    /// id-token: write`); the default when ACTIONS_ID_TOKEN_REQUEST_URL is set.
    #[arg(long)]
    github_actions: bool,
    /// The audience to ask GitHub Actions for: the gateway issuer's `audience`.
    #[arg(long, default_value = "keyward", value_name = "AUD")]
    audience: String,
    /// Print the gateway's whole answer as JSON (key id, lifetime) instead of
    /// the key alone.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Exchange(a) => exchange(a),
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")
}

fn exchange(a: ExchangeArgs) -> anyhow::Result<ExitCode> {
    let base = match a.url.clone().or_else(|| std::env::var("KEYWARD_URL").ok()) {
        Some(u) if !u.is_empty() => u,
        _ => bail!("name the gateway with --url https://keyward.example.com (or KEYWARD_URL)"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = client()?;
        let token = oidc_token(&a, &client).await?;
        let url = format!("{}/v1/token", base.trim_end_matches('/'));
        let body: String = form_encode(&[
            ("grant_type", keyward_gateway::token_exchange::GRANT_TYPE),
            ("subject_token", token.trim()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ]);
        let resp = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let answer: serde_json::Value = serde_json::from_str(&text).with_context(|| {
            format!("{url} did not answer JSON ({status}): is it a Keyward gateway?")
        })?;
        if !status.is_success() {
            bail!(
                "the gateway refused the exchange ({status}, {}): {}",
                answer["error"].as_str().unwrap_or("?"),
                answer["error_description"]
                    .as_str()
                    .unwrap_or("no reason given")
            );
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            let key = answer["access_token"]
                .as_str()
                .ok_or_else(|| anyhow!("the gateway's answer holds no access_token"))?;
            println!("{key}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The OIDC token from the source the arguments (or the environment) name.
async fn oidc_token(a: &ExchangeArgs, client: &reqwest::Client) -> anyhow::Result<String> {
    if let Some(path) = &a.token_file {
        let mut text = String::new();
        if path.as_os_str() == "-" {
            std::io::stdin().read_to_string(&mut text)?;
        } else {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the OIDC token from {}", path.display()))?;
        }
        return non_empty(text, &format!("{}", path.display()));
    }
    let github = a.github_actions
        || (a.token_env.is_none() && std::env::var_os("ACTIONS_ID_TOKEN_REQUEST_URL").is_some());
    if github {
        return github_token(client, &a.audience).await;
    }
    let name = a.token_env.as_deref().unwrap_or("KEYWARD_OIDC_TOKEN");
    let value = std::env::var(name).map_err(|_| {
        anyhow!(
            "no OIDC token: set {name}, or use --token-file PATH (a projected service-account token) or --github-actions"
        )
    })?;
    non_empty(value, name)
}

fn non_empty(s: String, from: &str) -> anyhow::Result<String> {
    let t = s.trim().to_string();
    if t.is_empty() {
        bail!("the OIDC token from {from} is empty");
    }
    Ok(t)
}

/// The job's token from GitHub Actions' token service.
async fn github_token(client: &reqwest::Client, audience: &str) -> anyhow::Result<String> {
    let (Ok(url), Ok(bearer)) = (
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        bail!("ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the job `permissions: id-token: write`");
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}{}", form_encode(&[("audience", audience)]));
    let resp = client
        .get(&url)
        .bearer_auth(bearer)
        .send()
        .await
        .context("cannot reach GitHub Actions' token service")?;
    if !resp.status().is_success() {
        bail!("GitHub Actions' token service answered {}", resp.status());
    }
    let text = resp
        .text()
        .await
        .context("reading the answer of GitHub Actions' token service")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("GitHub Actions' token service did not answer JSON")?;
    let token = v["value"]
        .as_str()
        .ok_or_else(|| anyhow!("GitHub Actions' token service sent no `value`"))?;
    non_empty(token.to_string(), "GitHub Actions")
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}
