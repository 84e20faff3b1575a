//! A throw-away PostgreSQL cluster for the tests and benchmarks.
//!
//! Uses the server binaries Debian installs under `/usr/lib/postgresql/<v>/bin`
//! (`initdb`, `pg_ctl`). `initdb` refuses to run as root, so as root the cluster is
//! created and run as the `postgres` user. The cluster lives in a temporary
//! directory, listens on 127.0.0.1 on a free port, and is stopped and removed when
//! the [`TestPostgres`] is dropped. If `TEST_DATABASE_URL` is already set, that
//! server is used instead and nothing is started.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A running throw-away cluster (or an external one named by `TEST_DATABASE_URL`).
pub struct TestPostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    cluster: Option<(PathBuf, PathBuf, bool)>,
}

fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().context("no initdb under /usr/lib/postgresql/*/bin: apt-get install postgresql")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Runs `bin args...`, as the postgres user when we are root.
fn pg_cmd(as_postgres: bool, bin: &Path, args: &[&str]) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

impl TestPostgres {
    /// Uses `TEST_DATABASE_URL` if set, else starts a new cluster.
    ///
    /// # Errors
    /// PostgreSQL is not installed or did not start (its log is in the message).
    pub fn start() -> Result<Self> {
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            eprintln!("xtask: using the PostgreSQL server at TEST_DATABASE_URL");
            return Ok(Self { url, cluster: None });
        }
        let bin = bin_dir()?;
        let root = is_root();
        let dir = tempfile_dir()?;
        if root {
            let ok = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status()?.success();
            if !ok {
                bail!("cannot chown {} to postgres", dir.display());
            }
        }
        let data = dir.join("data");
        let data_s = data.to_string_lossy().to_string();
        let out = pg_cmd(root, &bin.join("initdb"), &["-D", &data_s, "-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = free_port()?;
        let log = dir.join("postgres.log");
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB",
            dir.display()
        );
        let log_s = log.to_string_lossy().to_string();
        let status = pg_cmd(root, &bin.join("pg_ctl"), &["-D", &data_s, "-o", &opts, "-l", &log_s, "-w", "start"])
            .status()
            .context("running pg_ctl start")?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("PostgreSQL did not start:\n{log}");
        }
        eprintln!("xtask: started a throw-away PostgreSQL on 127.0.0.1:{port} ({})", dir.display());
        Ok(Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            cluster: Some((bin, data, root)),
        })
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("backoffice-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some((bin, data, root)) = self.cluster.take() {
            let data_s = data.to_string_lossy().to_string();
            let _ = pg_cmd(root, &bin.join("pg_ctl"), &["-D", &data_s, "-m", "immediate", "-w", "stop"]).output();
            if let Some(dir) = data.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
