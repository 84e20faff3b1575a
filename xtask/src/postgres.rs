//! A throw-away PostgreSQL cluster for the tests.
//!
//! The storage tests create a database per test on the server named by
//! `TEST_DATABASE_URL`. When the caller already set it we use theirs; otherwise we
//! `initdb` a fresh cluster in a temporary folder, start it on a free port (TCP on
//! 127.0.0.1, its socket in /tmp, fsync off: the data is thrown away), export the
//! URL for the child processes, and stop and delete it when the guard drops.
//!
//! PostgreSQL refuses to run as root, so as root (CI, this machine) the cluster is
//! owned by and run as the `postgres` system user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::workspace::{self, free_port};

/// The running cluster; stopped and deleted on drop.
pub struct Postgres {
    /// The cluster's data folder (also holds its log, `server.log`).
    data_dir: PathBuf,
    /// The folder with `pg_ctl` and friends.
    bin_dir: PathBuf,
    /// Whether commands must run as the `postgres` user.
    as_postgres_user: bool,
}

/// The PostgreSQL server the tests use.
pub struct TestDatabase {
    /// For `TEST_DATABASE_URL`: the server's admin database, as superuser.
    pub url: String,
    /// The cluster we started, if we did; stopped when this drops.
    _cluster: Option<Postgres>,
}

/// Makes sure there is a PostgreSQL server for `TEST_DATABASE_URL`, starting a
/// throw-away one unless the environment already names one. Keep the returned
/// value alive while tests run.
pub fn ensure_postgres() -> anyhow::Result<TestDatabase> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.is_empty()
    {
        eprintln!("xtask: using TEST_DATABASE_URL from the environment");
        return Ok(TestDatabase { url, _cluster: None });
    }
    let bin_dir = find_bin_dir()?;
    let as_postgres_user = is_root()?;
    let base = std::env::temp_dir().join(format!("xtask-pg-{}", std::process::id()));
    let data_dir = base.join("data");
    if base.exists() {
        std::fs::remove_dir_all(&base).with_context(|| format!("clearing {}", base.display()))?;
    }
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    // From here on, the guard cleans up whatever happens.
    let pg = Postgres { data_dir, bin_dir, as_postgres_user };
    if as_postgres_user {
        workspace::output(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&base))
            .context("giving the cluster folder to the postgres user")?;
    }

    eprintln!("xtask: initdb {}", pg.data_dir.display());
    let mut initdb = pg.command("initdb");
    initdb.args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"]).arg(&pg.data_dir);
    workspace::output(&mut initdb).context("initdb")?;

    let port = free_port()?;
    let mut start = pg.command("pg_ctl");
    start
        .arg("-D")
        .arg(&pg.data_dir)
        .arg("-l")
        .arg(pg.data_dir.join("server.log"))
        .args(["-w", "-t", "60", "-o"])
        .arg(format!("-p {port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"))
        .arg("start");
    workspace::output(&mut start).with_context(|| {
        let log = std::fs::read_to_string(pg.data_dir.join("server.log")).unwrap_or_default();
        format!("starting PostgreSQL on port {port}; its log:\n{log}")
    })?;

    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    eprintln!("xtask: PostgreSQL running, TEST_DATABASE_URL={url}");
    Ok(TestDatabase { url, _cluster: Some(pg) })
}

impl Postgres {
    /// `program` from the PostgreSQL bin dir, run as the `postgres` user if needed.
    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c.current_dir("/tmp");
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(&self.data_dir).args(["-m", "immediate", "-w", "stop"]);
        if let Err(e) = workspace::output(&mut stop) {
            eprintln!("xtask: stopping PostgreSQL failed: {e:#}");
        }
        if let Some(base) = self.data_dir.parent()
            && let Err(e) = std::fs::remove_dir_all(base)
        {
            eprintln!("xtask: removing {} failed: {e}", base.display());
        }
    }
}

/// `$PG_BIN`, or the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout),
/// or the folder of `pg_ctl` on `PATH`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let debian = Path::new("/usr/lib/postgresql");
    if let Ok(entries) = std::fs::read_dir(debian) {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((v, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
    }
    if let Ok(path) = workspace::output(Command::new("sh").args(["-c", "command -v pg_ctl"]))
        && let Some(dir) = Path::new(path.trim()).parent()
        && dir.join("initdb").is_file()
    {
        return Ok(dir.to_path_buf());
    }
    bail!(
        "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH): \
         `apt-get install postgresql`, set PG_BIN to its bin folder, or set TEST_DATABASE_URL \
         to a server of your own"
    )
}

fn is_root() -> anyhow::Result<bool> {
    let uid = workspace::output(Command::new("id").arg("-u")).context("asking `id -u` who we are")?;
    Ok(uid.trim() == "0")
}
