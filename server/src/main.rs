//! `server`: the back office on one port. `server --help` lists every setting;
//! the README has them in a table.

use anyhow::Context;
use clap::Parser;
use server::config::{Command, Config, Settings};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's allocator, for memory that goes back to the
/// system. Each sign-in's argon2 hash takes a block (19 MiB when this was
/// measured, 9 MiB since) on one of tokio's blocking threads; glibc, after the
/// first such block is freed, raises its mmap threshold to 19 MiB and its trim threshold to twice that, so every
/// thread arena that ever hashed keeps its blocks for good: an idle server held
/// 39 MiB of one arena after its start-up hash alone, and 650 MiB stayed
/// resident after 250 sign-ins. jemalloc's background thread (the
/// `background_threads` feature) purges freed pages within seconds. (mimalloc,
/// tried first, still held 17-27 MiB of anonymous memory when idle, against
/// jemalloc's 5-6 MiB.) Figures: README, the login benchmark's memory table.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, before anything is opened or created: `--help`, `--version` and bad
    // values end the process here.
    let settings = Settings::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_settings(&settings)?;
    match settings.command.clone().unwrap_or(Command::Serve) {
        Command::Config => {
            print!("{}", settings::render(&settings.shown()));
            Ok(())
        }
        Command::Migrate => {
            open(&config).await?;
            println!("Database {} is migrated", settings::redact_url(&config.database_url));
            Ok(())
        }
        Command::ResetAdminPassword => reset_admin_password(&settings, &config).await,
        Command::MoveToPostgres { to } => move_to_postgres(&config, &to).await,
        Command::SeedJobs { count } => seed_jobs(&config, count).await,
        Command::Serve => serve(&settings, &config).await,
    }
}

/// Opens (creating and migrating) the control plane.
async fn open(config: &Config) -> anyhow::Result<server::Backend> {
    server::Backend::open(config)
        .await
        .with_context(|| format!("opening the database {}", settings::redact_url(&config.database_url)))
}

/// Seeds the super admin, binds, prints the address, serves until SIGTERM/SIGINT.
async fn serve(settings: &Settings, config: &Config) -> anyhow::Result<()> {
    // Bound first, so links in emails can point at the address really listened on.
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("binding {}", config.bind_addr))?;
    let addr = listener.local_addr()?;
    let mut config = config.clone();
    config.listening_on(settings, addr)?;
    let config = &config;
    let backend = open(config).await?;
    let admin_email = &settings.superadmin_email;
    let given = settings.superadmin_password();
    if let Some(generated) = backend
        .identity
        .seed_super_admin(admin_email, given)
        .await
        .context("seeding the super admin (SUPERADMIN_EMAIL / SUPERADMIN_PASSWORD)")?
    {
        // Shown once: only the hash is stored.
        println!("Super admin created: {admin_email} / password {generated} (shown only now; keep it)");
    } else if let Some(given) = given {
        // Like Grafana's admin password: the setting seeds a new account and is not
        // a way to change an existing one (a restart must not undo a password the
        // admin changed). Say so rather than ignore it silently.
        match backend.identity.super_admin_password_matches(admin_email, given).await {
            Ok(Some(true)) => {}
            Ok(Some(false)) => tracing::warn!(
                "SUPERADMIN_PASSWORD differs from the password of the super admin {admin_email} and is ignored: \
                 it only applies when the account is created. Change it with `server reset-admin-password`"
            ),
            Ok(None) => tracing::warn!(
                "SUPERADMIN_EMAIL {admin_email} belongs to a user who is not a super admin; no super admin was created"
            ),
            Err(e) => tracing::warn!(error = %e, "could not check SUPERADMIN_PASSWORD against the stored password"),
        }
    }
    let shutdown = jobengine::signals::shutdown_on_signals();
    let watch = tokio::spawn(backoffice::control_file::watch(config.database_url.clone(), shutdown.clone()));
    println!("Back office listening on http://{addr}");
    server::run(listener, config, backend, shutdown.clone()).await?;
    shutdown.cancel();
    match watch.await {
        Ok(Some(why)) => anyhow::bail!(why),
        _ => Ok(()),
    }
}

/// `server reset-admin-password`: the way back from a lost super admin password.
async fn reset_admin_password(settings: &Settings, config: &Config) -> anyhow::Result<()> {
    // The installation must be there: a mistyped DATABASE_URL would otherwise
    // become a new, empty one holding this password.
    let url = settings::redact_url(&config.database_url);
    database::Db::open_existing(&config.database_url)
        .await
        .with_context(|| format!("opening the database {url} (DATABASE_URL): no installation to reset"))?
        .close()
        .await;
    let backend = open(config).await?;
    let email = &settings.superadmin_email;
    let given = settings.superadmin_password();
    let password = backend
        .identity
        .reset_super_admin_password(email, given)
        .await
        .with_context(|| format!("resetting the password of the super admin {email} (SUPERADMIN_EMAIL)"))?;
    if given.is_some() {
        println!("Super admin {email}: password set from SUPERADMIN_PASSWORD; open sessions ended");
    } else {
        println!("Super admin {email}: new password {password} (shown only now; keep it); open sessions ended");
    }
    Ok(())
}

/// `server seed-jobs`: many jobs in one statement per chunk (see jobengine's storage/seed.rs).
async fn seed_jobs(config: &Config, count: u64) -> anyhow::Result<()> {
    let backend = open(config).await?;
    let started = std::time::Instant::now();
    let now = backend.jobs.clock().now();
    backend
        .jobs
        .store()
        .seed(count, now, |done| {
            println!("  {done} jobs ({:.1} s)", started.elapsed().as_secs_f64());
        })
        .await
        .context("seeding jobs")?;
    println!("Seeded {count} jobs in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `server move-to-postgres`: the way from the embedded SQLite to PostgreSQL.
async fn move_to_postgres(config: &Config, to: &str) -> anyhow::Result<()> {
    let from = settings::redact_url(&config.database_url);
    let into = settings::redact_url(to);
    println!("Moving {from} (tenant files under {}) into {into}", config.data_dir.display());
    let report = backoffice::relocate::move_to_postgres(&config.database_url, &config.data_dir, to, &mut |line| {
        println!("  {line}")
    })
    .await
    .with_context(|| format!("moving {from} into {into}"))?;
    println!(
        "\n{:<36} {:<18} {:>9}  {:<32}  {:<32}",
        "database", "table", "rows", "checksum (SQLite)", "checksum (PostgreSQL)"
    );
    for t in &report.tables {
        println!(
            "{:<36} {:<18} {:>9}  {:<32}  {:<32}",
            t.database, t.table, t.source.rows, t.source.checksum, t.target.checksum
        );
    }
    for (db, status) in &report.missing_tenant_files {
        println!("note: tenant database {db} ({status}) had no file on the source; nothing moved for it");
    }
    let rows: u64 = report.tables.iter().map(|t| t.source.rows).sum();
    println!(
        "\nMoved {} tables, {rows} rows; every count and checksum matches. Start servers and workers with \
         DATABASE_URL={into}; the SQLite files were not changed (keep them as a backup).",
        report.tables.len()
    );
    Ok(())
}
