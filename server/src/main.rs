//! `server`: the back office on one port. See the README for settings.

use anyhow::Context;
use server::config::Config;
use tracing_subscriber::EnvFilter;

/// The super admin's email when `SUPERADMIN_EMAIL` is unset.
const DEFAULT_SUPERADMIN: &str = "admin@backoffice.local";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_env()?;
    let backend = server::Backend::open(&config).await.with_context(|| {
        format!("opening the database {}", config.database_url.split('@').next_back().unwrap_or(""))
    })?;
    let admin_email = std::env::var("SUPERADMIN_EMAIL").unwrap_or_else(|_| DEFAULT_SUPERADMIN.to_owned());
    let given = std::env::var("SUPERADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    if let Some(generated) = backend
        .identity
        .seed_super_admin(&admin_email, given.as_deref())
        .await
        .context("seeding the super admin (SUPERADMIN_EMAIL / SUPERADMIN_PASSWORD)")?
    {
        // Shown once: only the hash is stored.
        println!("Super admin created: {admin_email} / password {generated} (shown only now; keep it)");
    }
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("binding {}", config.bind_addr))?;
    let addr = listener.local_addr()?;
    println!("Back office listening on http://{addr}");
    server::run(listener, &config, backend, jobengine::signals::shutdown_on_signals()).await
}
