//! The server's settings: one [`Settings`] struct parsed by clap from flags and
//! environment variables (each setting is both, with the same meaning), and the
//! [`Config`] the library runs with, made from it.
//!
//! The groups both binaries have (database, email, jobs) come from the `settings`
//! crate; what only the server has (where it listens, the embedded worker, the
//! sign-up limits, the super admin) is declared here. Parsing touches nothing:
//! `server --help`, `--version` and `config` neither open the database nor create
//! a file, and a bad value stops the process before anything is created.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use settings::{DatabaseArgs, HIDDEN, MailArgs, ProvisionArgs, Show, WorkerArgs};

pub use settings::database::DEFAULT_DATABASE_URL;

/// Where the server listens when `BIND_ADDR` is unset.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:3000";
/// The super admin's email when `SUPERADMIN_EMAIL` is unset.
pub const DEFAULT_SUPERADMIN_EMAIL: &str = "admin@backoffice.local";

/// Whether this process also runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerMode {
    /// Run a worker in-process (the one-command default).
    Embedded,
    /// Serve only; `worker` processes run the jobs.
    Off,
}

impl WorkerMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerMode::Embedded => "embedded",
            WorkerMode::Off => "off",
        }
    }
}

/// The back office on one port: web app, gRPC (+ gRPC-web, reflection), JSON API
/// and /metrics.
///
/// Every setting is a flag and an environment variable (the flag wins). Settings
/// go before the subcommand (`server --database-url URL migrate`) or in the
/// environment.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version)]
pub struct Settings {
    /// What to do; without one, serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where the server listens; port 0 picks a free one (the address is printed).
    #[arg(long, env = "BIND_ADDR", default_value = DEFAULT_BIND_ADDR, hide_env_values = true)]
    pub bind_addr: SocketAddr,

    /// `off` when separate `worker` processes run the jobs.
    #[arg(long = "worker", env = "WORKER", value_enum, default_value_t = WorkerMode::Embedded, hide_env_values = true)]
    pub worker: WorkerMode,

    /// The built browser bundle (`pkg/app.js`, `pkg/app_bg.wasm`, `pkg/app.css`);
    /// `cargo xtask run` sets it.
    #[arg(long, env = "SITE_ROOT", default_value = "target/site", hide_env_values = true)]
    pub site_root: PathBuf,

    /// Public sign-ups one client address may make per hour (RESOURCE_EXHAUSTED past it).
    #[arg(long, env = "SIGNUP_PER_IP_PER_HOUR", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..), hide_env_values = true)]
    pub signup_per_ip_per_hour: u32,

    /// Public sign-ups the server takes per minute, from everyone.
    #[arg(long, env = "SIGNUP_PER_MINUTE", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..), hide_env_values = true)]
    pub signup_per_minute: u32,

    /// Seconds a client has to send a request's headers (and, kept alive, its next
    /// request); a connection that sends nothing is closed after it too.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600), hide_env_values = true)]
    pub http_header_timeout_secs: u64,

    /// Seconds between HTTP/2 keep-alive pings; a peer that does not answer one
    /// within HTTP_HEADER_TIMEOUT_SECS is disconnected.
    #[arg(long, env = "HTTP2_KEEPALIVE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600), hide_env_values = true)]
    pub http2_keepalive_secs: u64,

    /// Reverse proxies in front of the server, comma-separated addresses or
    /// blocks (`10.0.0.7,10.0.0.0/8,fd00::/8`): for a request from one of them
    /// the client is read from the `X-Forwarded-For` it appends to, for the
    /// per-client limits. Unset: the TCP peer is the client, and the header is
    /// never believed.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = crate::client::parse_proxies,
          hide_env_values = true, hide_default_value = true)]
    pub trusted_proxies: crate::client::TrustedProxies,

    /// A secret `/metrics` asks for as `Authorization: Bearer <token>`. Unset,
    /// `/metrics` answers only clients connecting from this machine (loopback,
    /// not through a proxy); everyone else gets 404.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// The super admin's account, created at first start (and the account
    /// `reset-admin-password` resets).
    #[arg(long, env = "SUPERADMIN_EMAIL", default_value = DEFAULT_SUPERADMIN_EMAIL,
          help_heading = "Super admin", hide_env_values = true)]
    pub superadmin_email: String,

    /// The super admin's password when the account is created (unset: generated
    /// and printed once). Ignored, with a warning, once the account exists: change
    /// it with `reset-admin-password`.
    #[arg(long, env = "SUPERADMIN_PASSWORD", help_heading = "Super admin", hide_env_values = true)]
    pub superadmin_password: Option<String>,

    /// The database and the data folder.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Email.
    #[command(flatten)]
    pub mail: MailArgs,

    /// The embedded worker.
    #[command(flatten)]
    pub jobs: WorkerArgs,

    /// Fault injection for tests.
    #[command(flatten)]
    pub provision: ProvisionArgs,
}

/// The server's subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the back office (the default).
    Serve,
    /// Create the database if needed, migrate it, and exit.
    Migrate,
    /// Set a new password for the super admin (SUPERADMIN_EMAIL): SUPERADMIN_PASSWORD,
    /// or a generated one printed once. Ends the account's sessions; creates the
    /// account if there is none (in an existing database: one that does not
    /// exist is refused).
    ResetAdminPassword,
    /// Print the effective settings (secrets hidden) as VARIABLE=value lines, and exit.
    Config,
    /// Move this SQLite installation (DATABASE_URL, and the tenant files under
    /// DATA_DIR) into an empty PostgreSQL database, checking counts and checksums
    /// of every table on both ends. Stop every server and worker first; the SQLite
    /// files are only read and stay as they are.
    MoveToPostgres {
        /// The empty PostgreSQL database to move into (`postgres://user@host/db`);
        /// tenant databases are created beside it.
        #[arg(long, env = "MOVE_TO_DATABASE_URL", hide_env_values = true)]
        to: String,
    },
    /// Insert many finished jobs at once (mostly succeeded, some dead, a few
    /// enqueued and scheduled, over the last day, each with a history row), to
    /// try the dashboard at scale and for its benchmark. Not for production data.
    SeedJobs {
        /// How many jobs to insert.
        #[arg(long, env = "SEED_JOBS_COUNT", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        count: u64,
    },
}

impl Settings {
    /// The metrics token, an empty value taken as unset.
    pub fn metrics_token(&self) -> Option<&str> {
        self.metrics_token.as_deref().filter(|t| !t.is_empty())
    }

    /// The super admin's password, an empty value taken as unset.
    pub fn superadmin_password(&self) -> Option<&str> {
        self.superadmin_password.as_deref().filter(|p| !p.is_empty())
    }

    /// Every setting's effective value, as `server config` prints them.
    pub fn shown(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("BIND_ADDR", self.bind_addr.to_string()),
            ("WORKER", self.worker.as_str().to_owned()),
            ("SITE_ROOT", self.site_root.display().to_string()),
            ("SIGNUP_PER_IP_PER_HOUR", self.signup_per_ip_per_hour.to_string()),
            ("SIGNUP_PER_MINUTE", self.signup_per_minute.to_string()),
            ("HTTP_HEADER_TIMEOUT_SECS", self.http_header_timeout_secs.to_string()),
            ("HTTP2_KEEPALIVE_SECS", self.http2_keepalive_secs.to_string()),
            ("TRUSTED_PROXIES", self.trusted_proxies.to_string()),
            ("METRICS_TOKEN", self.metrics_token().map(|_| HIDDEN.to_owned()).unwrap_or_default()),
            ("SUPERADMIN_EMAIL", self.superadmin_email.clone()),
            ("SUPERADMIN_PASSWORD", self.superadmin_password().map(|_| HIDDEN.to_owned()).unwrap_or_default()),
        ];
        self.database.show(&mut out);
        self.mail.show(&mut out);
        self.jobs.show(&mut out);
        self.provision.show(&mut out);
        out
    }
}

/// Everything the server library runs with, as typed values.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub database_url: String,
    /// Where to listen; port 0 picks a free one.
    pub bind_addr: SocketAddr,
    /// Whether this process runs jobs too.
    pub worker: WorkerMode,
    /// The built site (`pkg/app.js`, `pkg/app_bg.wasm`, `pkg/app.css`).
    pub site_root: PathBuf,
    /// Tenant SQLite files live in `data_dir/tenants`.
    pub data_dir: PathBuf,
    /// Sign-ups one client IP may make per hour.
    pub signup_per_ip_per_hour: u32,
    /// Sign-ups the server takes per minute in all.
    pub signup_per_minute: u32,
    /// How long connections may take over headers, and HTTP/2 pings.
    pub timeouts: crate::serve::Timeouts,
    /// What `/metrics` asks for (none: loopback clients only).
    pub metrics_token: Option<String>,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::client::TrustedProxies,
    /// How email is composed and sent.
    pub mail: backoffice::mail::Mail,
    /// Slow or failing provisioning, for tests.
    pub provision_fault: Option<backoffice::env::Fault>,
    /// The embedded worker's settings.
    pub worker_config: jobengine::WorkerConfig,
}

impl Config {
    /// The library's values from the parsed settings.
    ///
    /// # Errors
    /// A setting clap cannot check alone is unusable (the email sender, the public
    /// URL, the SMTP URL); the message names it.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            database_url: s.database.database_url.clone(),
            bind_addr: s.bind_addr,
            worker: s.worker,
            site_root: s.site_root.clone(),
            data_dir: s.database.data_dir.clone(),
            signup_per_ip_per_hour: s.signup_per_ip_per_hour,
            signup_per_minute: s.signup_per_minute,
            timeouts: crate::serve::Timeouts {
                header: std::time::Duration::from_secs(s.http_header_timeout_secs),
                idle: std::time::Duration::from_secs(s.http2_keepalive_secs),
            },
            metrics_token: s.metrics_token().map(str::to_owned),
            trusted_proxies: s.trusted_proxies.clone(),
            mail: s.mail.mail(&s.database.data_dir, None)?,
            provision_fault: s.provision.fault(),
            worker_config: s.jobs.worker_config(),
        })
    }
}

impl Config {
    /// Whether the site is served over https (`PUBLIC_URL`): cookies get `Secure`.
    pub fn https(&self) -> bool {
        self.mail.letters.public_url().starts_with("https://")
    }

    /// The warning to log when the server listens on `addr` beyond this machine
    /// over plain HTTP: passwords and session cookies would cross the network in
    /// clear unless a TLS proxy is in front (then set `PUBLIC_URL=https://…`).
    pub fn plain_http_warning(&self, addr: SocketAddr) -> Option<String> {
        (!addr.ip().is_loopback() && !self.https()).then(|| {
            format!(
                "listening on {addr}, beyond this machine, over plain HTTP: passwords and session cookies \
                 cross the network in clear. Put a TLS proxy in front and set PUBLIC_URL=https://…, \
                 or bind 127.0.0.1"
            )
        })
    }

    /// Once the server listens on `addr`: unless `PUBLIC_URL` is set, links in
    /// emails point at that address (the loopback one when it listens on every
    /// interface), so `BIND_ADDR=127.0.0.1:8080` alone gives working links.
    ///
    /// # Errors
    /// As [`Config::from_settings`].
    pub fn listening_on(&mut self, s: &Settings, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let mut reachable = addr;
        if addr.ip().is_unspecified() {
            reachable.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        self.mail = s.mail.mail(&s.database.data_dir, Some(&format!("http://{reachable}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("server").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_and_errors() {
        let s =
            parse(&["--database-url", DEFAULT_DATABASE_URL, "--bind-addr", DEFAULT_BIND_ADDR, "--worker", "embedded"])
                .expect("defaults");
        let c = Config::from_settings(&s).expect("config");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.bind_addr.to_string(), DEFAULT_BIND_ADDR);
        assert_eq!(c.worker, WorkerMode::Embedded);
        assert_eq!(s.command, None);
        let e = parse(&["--worker", "sometimes"]).expect_err("bad WORKER");
        assert!(e.to_string().contains("WORKER"), "{e}");
        let e = parse(&["--bind-addr", "localhost"]).expect_err("bad addr");
        assert!(e.to_string().contains("BIND_ADDR"), "{e}");
        let s = parse(&["--mail-from", "not a mailbox"]).expect("clap takes any text");
        let e = Config::from_settings(&s).expect_err("bad MAIL_FROM");
        assert!(format!("{e:#}").contains("MAIL_FROM") && e.to_string().contains("--mail-from"), "{e:#}");
        assert_eq!(parse(&["migrate"]).expect("migrate").command, Some(Command::Migrate));
    }

    #[test]
    fn plain_http_beyond_loopback_is_warned_about() {
        let addr = |a: &str| a.parse::<SocketAddr>().expect("addr");
        let c = Config::from_settings(&parse(&["--public-url", "http://bo.example.com"]).expect("s")).expect("c");
        assert_eq!(c.plain_http_warning(addr("127.0.0.1:3000")), None);
        assert_eq!(c.plain_http_warning(addr("[::1]:3000")), None);
        for a in ["0.0.0.0:3000", "192.0.2.1:80", "[::]:3000"] {
            let w = c.plain_http_warning(addr(a)).expect("a warning");
            assert!(w.contains("plain HTTP") && w.contains("PUBLIC_URL"), "{w}");
        }
        let c = Config::from_settings(&parse(&["--public-url", "https://bo.example.com"]).expect("s")).expect("c");
        assert!(c.https());
        assert_eq!(c.plain_http_warning(addr("0.0.0.0:3000")), None, "TLS in front");
    }

    #[test]
    fn links_point_where_the_server_listens_unless_public_url_is_set() {
        let s = parse(&["--public-url", ""]).expect("settings");
        let mut c = Config::from_settings(&s).expect("config");
        c.listening_on(&s, "127.0.0.1:8080".parse().expect("addr")).expect("listening");
        assert_eq!(c.mail.letters.public_url(), "http://127.0.0.1:8080");
        c.listening_on(&s, "0.0.0.0:9090".parse().expect("addr")).expect("listening");
        assert_eq!(c.mail.letters.public_url(), "http://127.0.0.1:9090", "every interface: the loopback one");
        c.listening_on(&s, "[::]:9091".parse().expect("addr")).expect("listening");
        assert_eq!(c.mail.letters.public_url(), "http://[::1]:9091");
        let s = parse(&["--public-url", "https://bo.example.com"]).expect("settings");
        let mut c = Config::from_settings(&s).expect("config");
        c.listening_on(&s, "127.0.0.1:8080".parse().expect("addr")).expect("listening");
        assert_eq!(c.mail.letters.public_url(), "https://bo.example.com", "PUBLIC_URL wins");
    }
}
