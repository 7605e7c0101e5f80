//! `keyward serve`: run the gateway.

use crate::home::{runtime, ConfigArg};
use clap::Args;
use keyward_gateway::Config;
use std::process::ExitCode;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen address, overriding [server] listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| "info".into());
    // Log lines are written by a background thread a batch at a time, never on
    // the request path (see `log_writer`); lines beyond its bound are dropped and
    // counted rather than slowing requests. Every line is redacted on that thread.
    let (writer, _log_guard) = crate::log_writer::batched(crate::log_redact::RedactingWriter::new(
        std::io::stderr(),
        keyward_detect::Detector::builtin(),
    ));
    // KEYWARD_LOG_FORMAT=json: one JSON object a line (for log shippers).
    let json = match std::env::var("KEYWARD_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Err(_) => false,
        Ok(other) => anyhow::bail!(
            "KEYWARD_LOG_FORMAT={other:?} is not a log format: use `json` or `text` (the default)"
        ),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let mut cfg = a.config.load_creating_home()?;
    if let Some(l) = a.listen {
        cfg.server.listen = l;
    }
    runtime()?.block_on(async move {
        // Creates the store and master key on first start (only `serve` and
        // `init` do).
        drop(crate::home::open_creating(&cfg).await?);
        let banner = cfg.clone();
        keyward_gateway::serve(cfg, shutdown_signal(), move |addr, _| {
            tracing::info!("listening on http://{addr}");
            if banner.providers.is_empty() {
                print_getting_started(&banner);
            }
        })
        .await
        .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What to do next when no provider is configured, naming the config file to
/// edit and commands that reach this same store.
fn print_getting_started(cfg: &Config) {
    let file = cfg
        .source
        .clone()
        .unwrap_or_else(|| cfg.base_dir.join("keyward.toml"));
    let store = match &cfg.source {
        Some(_) => String::new(),
        None => format!(" on the embedded store in {}", cfg.base_dir.display()),
    };
    eprintln!(
        "\nKeyward is running{store} with no providers configured. To broker calls:\n\
         1. describe a provider in {}:\n\
         \x20    [[providers]]\n     name = \"openai\"\n     kind = \"openai\"\n     base_url = \"https://api.openai.com/v1\"\n     credential = \"openai-prod\"\n     models = [\"gpt-4o-mini\"]\n\
         2. store its key (read from stdin, never argv):  {}\n\
         3. issue a client key:  {}\n\
         4. restart the server (`{}`) and point your SDK's base URL at it.\n         The web console is at http://{}/console: sign in with an admin key from  {}\n",
        file.display(),
        cfg.command("vault put openai-prod < openai.key"),
        cfg.command("keys create --name my-app --env prod --models 'gpt-4o*'"),
        match &cfg.source {
            Some(_) => cfg.command("serve"),
            None => "keyward serve".into(),
        },
        cfg.admin.listen.unwrap_or(cfg.server.listen),
        cfg.command("admin create --name me"),
    );
}

/// Resolves on Ctrl-C or SIGTERM. SIGHUP is logged and ignored: the config is
/// read at start only, and a hang-up must not stop the gateway.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = hup.recv() => tracing::warn!(
                    "SIGHUP ignored: the config is read at start only; restart `keyward serve` to apply changes \
                     (keys and credentials apply at once without a restart)"
                ),
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
