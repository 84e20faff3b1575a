//! A throw-away PostgreSQL cluster: `initdb` in a temporary folder, started on a
//! free port (TCP on 127.0.0.1, its socket in /tmp), stopped and deleted on drop.
//! `cargo xtask test` runs the suites against one; tests that must restart
//! PostgreSQL under running processes start one of their own.
//!
//! PostgreSQL refuses to run as root, so as root (CI, this machine) the cluster is
//! owned by and run as the `postgres` system user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

/// A running cluster; stopped and deleted on drop.
pub struct PgCluster {
    /// `postgres://postgres@127.0.0.1:<port>/postgres`, as superuser.
    pub url: String,
    /// Its port.
    pub port: u16,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    as_postgres_user: bool,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out: Output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl PgCluster {
    /// Creates and starts a cluster. `fsync` off suits data that is thrown away.
    ///
    /// # Errors
    /// PostgreSQL is not installed, or initdb or the start failed (with its log).
    pub fn start(fsync: bool) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let as_postgres_user = run(Command::new("id").arg("-u")).context("asking `id -u` who we are")?.trim() == "0";
        let base = std::env::temp_dir().join(format!(
            "pg-cluster-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let data_dir = base.join("data");
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        // From here on, drop cleans up whatever happens.
        let pg = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            data_dir,
            bin_dir,
            as_postgres_user,
        };
        if as_postgres_user {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&base))
                .context("giving the cluster folder to the postgres user")?;
        }
        let mut initdb = pg.command("initdb");
        initdb.args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"]).arg(&pg.data_dir);
        run(&mut initdb).context("initdb")?;
        let fsync = if fsync { "on" } else { "off" };
        let opts = format!("-p {port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=300");
        std::fs::write(pg.data_dir.join("start.opts"), &opts).context("saving the start options")?;
        pg.pg_ctl_start()?;
        Ok(pg)
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let opts = std::fs::read_to_string(self.data_dir.join("start.opts")).context("reading the start options")?;
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(&mut start).with_context(|| {
            let log = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
            format!("starting PostgreSQL on port {}; its log:\n{log}", self.port)
        })?;
        Ok(())
    }

    /// Stops it at once, as a crash would (`-m immediate`).
    ///
    /// # Errors
    /// `pg_ctl` failed.
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(&self.data_dir).args(["-m", "immediate", "-w", "stop"]);
        run(&mut stop).map(|_| ())
    }

    /// Starts it again after [`PgCluster::stop_immediate`].
    ///
    /// # Errors
    /// `pg_ctl` failed.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl_start()
    }

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

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_immediate() {
            eprintln!("stopping PostgreSQL failed: {e:#}");
        }
        if let Some(base) = self.data_dir.parent()
            && let Err(e) = std::fs::remove_dir_all(base)
        {
            eprintln!("removing {} failed: {e}", base.display());
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
    if let Ok(path) = run(Command::new("sh").args(["-c", "command -v pg_ctl"]))
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
