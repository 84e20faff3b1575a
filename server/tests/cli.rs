//! The `server` binary's command line, run as a subprocess the way operators run
//! it: `--help` and `--version` touch nothing, every setting is a flag and a
//! variable with the same meaning, bad values stop it before anything is created,
//! `migrate` and `reset-admin-password` do their one job.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use server::config::{Config, Settings};
use testkit::Process;

/// Every setting, with a value that is not its default. The README's table lists
/// the same ones; a setting added without a line here fails
/// `a_flag_and_its_variable_mean_the_same`.
const SETTINGS: [(&str, &str); 34] = [
    ("BIND_ADDR", "127.0.0.1:4000"),
    ("WORKER", "off"),
    ("SITE_ROOT", "/srv/site"),
    ("SIGNUP_PER_IP_PER_HOUR", "7"),
    ("SIGNUP_PER_MINUTE", "8"),
    ("HTTP_HEADER_TIMEOUT_SECS", "3"),
    ("HTTP2_KEEPALIVE_SECS", "40"),
    ("TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1/32"),
    ("METRICS_TOKEN", "a metrics secret"),
    ("SUPERADMIN_EMAIL", "root@cli.test"),
    ("SUPERADMIN_PASSWORD", "a long secret password"),
    ("DATABASE_URL", "postgres://bo:dbsecret@db.test/app"),
    ("DATA_DIR", "/srv/data"),
    ("SMTP_URL", "smtp://mailer:smtpsecret@mail.test:2525"),
    ("MAIL_FROM", "Ops <ops@cli.test>"),
    ("PUBLIC_URL", "https://bo.cli.test"),
    ("MAIL_PER_RECIPIENT_PER_HOUR", "9"),
    ("WELCOME_REMINDER_AFTER_SECS", "120"),
    ("WORKER_CONCURRENCY", "3"),
    ("WORKER_PREFETCH", "5"),
    ("WORKER_QUEUES", "mail,default"),
    ("WORKER_QUEUE_LIMITS", "mail=2"),
    ("JOB_LEASE_MS", "3000"),
    ("JOB_HEARTBEAT_MS", "700"),
    ("JOB_RESCUE_MS", "300"),
    ("JOB_POLL_MS", "60"),
    ("JOB_GRACE_MS", "900"),
    ("JOB_MAX_INTERRUPTIONS", "4"),
    ("JOB_BACKOFF_BASE_MS", "5"),
    ("JOB_RETENTION_SECS", "60"),
    ("JOB_DEAD_RETENTION_SECS", "0"),
    ("JOB_SCHEDULE_MS", "250"),
    ("DIAG_RECURRING_CRON", "*/5 * * * * *"),
    ("PROVISION_FAULT", "slow:5"),
];

/// How long one run of the binary may take; `--help` on the old binary served
/// forever, so a hang must fail rather than stall the suite.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The built `server` in `cwd`, with none of our settings inherited from the
/// environment the tests run in.
fn server(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.current_dir(cwd);
    for (name, _) in SETTINGS {
        cmd.env_remove(name);
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` to its end (killing it after [`TIMEOUT`]).
fn run(cmd: &mut Command) -> Output {
    testkit::output_within(cmd, TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything in `dir`, for "created nothing" checks.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn help_and_version_list_every_setting_and_touch_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(server(dir.path()).arg("--help"));
    assert!(out.status.success(), "{out:?}");
    let help = stdout(&out);
    for (name, _) in SETTINGS {
        let flag = format!("--{}", name.to_lowercase().replace('_', "-"));
        assert!(help.contains(&format!("[env: {name}]")), "{name} is not in --help:\n{help}");
        assert!(help.contains(&format!("{flag} <")), "{flag} is not in --help:\n{help}");
    }
    for sub in ["migrate", "reset-admin-password", "config", "serve"] {
        assert!(help.contains(sub), "subcommand {sub} is not in --help:\n{help}");
    }
    let out = run(server(dir.path()).arg("--version"));
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("server "), "{}", stdout(&out));
    let out = run(server(dir.path()).args(["reset-admin-password", "--help"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "--help or --version created files");
}

#[test]
fn a_flag_and_its_variable_mean_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The table covers every setting the binary declares.
    let declared: Vec<String> = Settings::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for name in &declared {
        assert!(SETTINGS.iter().any(|(n, _)| n == name), "{name} has no line in SETTINGS");
    }
    let defaults = run(server(dir.path()).arg("config"));
    assert!(defaults.status.success(), "{defaults:?}");
    let defaults = stdout(&defaults);
    for name in &declared {
        assert!(defaults.contains(&format!("\n{name}=")) || defaults.starts_with(&format!("{name}=")), "{defaults}");
    }
    for (name, value) in SETTINGS.iter().filter(|(n, _)| declared.iter().any(|d| d == n)) {
        let flag = common_flag(name);
        let by_flag = run(server(dir.path()).args([flag.as_str(), value, "config"]));
        let by_env = run(server(dir.path()).env(name, value).arg("config"));
        assert!(by_flag.status.success() && by_env.status.success(), "{name}: {by_flag:?} {by_env:?}");
        assert_eq!(stdout(&by_flag), stdout(&by_env), "{flag} and {name} differ");
        assert_ne!(stdout(&by_flag), defaults, "{name}={value} changed nothing");
        // Both forms at once: the flag wins.
        let both =
            run(server(dir.path()).env(name, "nonsense that must not win").args([flag.as_str(), value, "config"]));
        assert_eq!(stdout(&both), stdout(&by_flag), "{flag} does not win over {name}");
    }
    // Secrets never show.
    let all = run(server(dir.path()).envs(SETTINGS).arg("config"));
    let shown = stdout(&all);
    for secret in ["a long secret password", "dbsecret", "smtpsecret", "a metrics secret"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    assert!(shown.contains("DATABASE_URL=postgres://bo:(hidden)@db.test/app\n"), "{shown}");
    assert!(shown.contains("JOB_HEARTBEAT_MS=700\n"), "{shown}");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "config created files");
}

/// The flag of a variable, from the binary's own declaration.
fn common_flag(name: &str) -> String {
    Settings::command()
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == name))
        .and_then(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .unwrap_or_else(|| panic!("no flag for {name}"))
}

#[test]
fn bad_values_name_the_setting_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, value) in [
        ("JOB_LEASE_MS", "zero"),
        ("BIND_ADDR", "localhost"),
        ("WORKER", "sometimes"),
        ("WORKER_QUEUES", ","),
        ("PROVISION_FAULT", "sometimes"),
        ("SIGNUP_PER_MINUTE", "0"),
        ("HTTP_HEADER_TIMEOUT_SECS", "0"),
        ("HTTP2_KEEPALIVE_SECS", "soon"),
        ("MAIL_FROM", "not a mailbox"),
        ("PUBLIC_URL", "ftp://nowhere"),
    ] {
        for how in ["env", "flag"] {
            let mut cmd = server(dir.path());
            if how == "env" {
                cmd.env(name, value);
            } else {
                cmd.args([common_flag(name).as_str(), value]);
            }
            let out = run(&mut cmd);
            assert!(!out.status.success(), "{name}={value} ({how}) was accepted");
            assert!(stderr(&out).contains(name), "{name} ({how}) not named: {}", stderr(&out));
        }
    }
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "a refused start created files");
}

#[test]
fn migrate_creates_and_migrates_the_database_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let out = run(server(dir.path()).arg("migrate"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("sqlite://data/app.db"), "{}", stdout(&out));
    }
    let db = dir.path().join("data/app.db");
    assert!(db.is_file(), "no {}", db.display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("open");
        for table in ["users", "tenants", "jobs", "_sqlx_migrations"] {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(table)
                .fetch_one(&pool)
                .await
                .expect("query");
            assert_eq!(n, 1, "table {table} missing after migrate");
        }
    });
}

#[test]
fn reset_admin_password_lets_the_super_admin_sign_in_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let email = "root@cli.test";
    let reset = |password: Option<&str>| {
        let mut cmd = server(dir.path());
        cmd.env("DATABASE_URL", &url).env("DATA_DIR", dir.path()).env("SUPERADMIN_EMAIL", email);
        if let Some(p) = password {
            cmd.args(["--superadmin-password", p]);
        }
        let out = run(cmd.arg("reset-admin-password"));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    // No installation there (a mistyped DATABASE_URL): refused, nothing made.
    let mut cmd = server(dir.path());
    let out = run(cmd.env("DATABASE_URL", &url).env("DATA_DIR", dir.path()).arg("reset-admin-password"));
    assert!(!out.status.success() && stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!dir.path().join("app.db").exists(), "no database created");
    let out = run(server(dir.path()).env("DATABASE_URL", &url).env("DATA_DIR", dir.path()).arg("migrate"));
    assert!(out.status.success(), "{}", stderr(&out));

    // No account yet: created with a generated password, printed once.
    let printed = reset(None);
    let generated = printed
        .split("new password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password printed: {printed}"))
        .to_owned();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let settings =
        Settings::try_parse_from(["server", "--database-url", &url, "--data-dir", &dir.path().to_string_lossy()])
            .expect("settings");
    let backend = rt.block_on(server::Backend::open(&Config::from_settings(&settings).expect("config"))).expect("open");
    let identity = backend.identity.clone();
    let session = rt.block_on(identity.login(email, &generated)).expect("generated password works");

    // Lost it: a new generated one works, the old one and its sessions do not.
    let printed = reset(None);
    let second = printed.split("new password ").nth(1).and_then(|r| r.split_whitespace().next()).expect("printed");
    assert_ne!(second, generated);
    rt.block_on(async {
        assert!(identity.login(email, &generated).await.is_err(), "the old password still works");
        assert!(identity.authenticate(&session.token).await.expect("db").is_none(), "old session still works");
        identity.login(email, second).await.expect("the new password works");
    });

    // A chosen one, from the flag.
    let printed = reset(Some("a chosen password 42"));
    assert!(!printed.contains("a chosen password 42"), "the chosen password was echoed: {printed}");
    rt.block_on(async {
        identity.login(email, "a chosen password 42").await.expect("the chosen password works");
    });
}

#[test]
fn a_changed_superadmin_password_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let start = |password: &str| -> String {
        let mut server = Process::from_command(server(dir.path()))
            .env("DATABASE_URL", &url)
            .env("DATA_DIR", dir.path())
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SUPERADMIN_EMAIL", "root@cli.test")
            .env("SUPERADMIN_PASSWORD", password)
            .env("WORKER", "off")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start");
        // Listening means the start-up checks are done.
        server.wait_for_log_line("Back office listening on", TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
        server.kill().expect("kill the server");
        server.log()
    };
    let first = start("the first password");
    assert!(!first.contains("SUPERADMIN_PASSWORD"), "{first}");
    let same = start("the first password");
    assert!(!same.contains("SUPERADMIN_PASSWORD"), "{same}");
    let changed = start("a different password");
    assert!(
        changed.contains("SUPERADMIN_PASSWORD differs") && changed.contains("reset-admin-password"),
        "no warning: {changed}"
    );
}
