//! `server`: the back office on one port. See the README for settings.

use anyhow::Context;
use server::config::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_env()?;
    if !config.bind_addr.ip().is_loopback() && !config.allow_open_admin {
        anyhow::bail!(
            "BIND_ADDR={} is not loopback, and the admin API has no authentication yet: \
             bind to 127.0.0.1 or set ALLOW_OPEN_ADMIN=1 if you really mean it",
            config.bind_addr
        );
    }
    let (jobs, env) = backoffice::open(&config.database_url, config.data_dir.clone())
        .await
        .with_context(|| format!("opening the database {}", config.database_url.split('@').last().unwrap_or("")))?;
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("binding {}", config.bind_addr))?;
    let addr = listener.local_addr()?;
    println!("Back office listening on http://{addr}");
    server::run(listener, &config, jobs, env, jobengine::signals::shutdown_on_signals()).await
}
