//! `cargo xtask results`: runs the benchmarks and the long chaos and security
//! runs, and writes what they printed into `docs/RESULTS.md`, with the machine
//! they ran on and the requirements beside them.
//!
//! Each run's figures are the tables the benchmarks print and the `figure:` lines
//! the suites print; this file only gathers them, so the page never holds a
//! number no command produced. Every section says when it was measured: `cargo
//! xtask results peers dashboard` measures only those runs again and keeps the
//! other sections of the page as they were.

use std::fmt::Write as _;

use std::process::Command;

use anyhow::Context;

use crate::postgres;
use crate::workspace::{self, Workspace};

/// One measured run: a title, the command as a reader would type it, and how to
/// run it here.
struct Run {
    /// The name `cargo xtask results NAME` picks it by.
    key: &'static str,
    title: &'static str,
    shown: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// Keep the whole output (benchmark tables) or only `figure:` lines.
    tables: bool,
}

const RUNS: &[Run] = &[
    Run {
        key: "engine",
        title: "Job engine",
        shown: "cargo bench -p worker --bench engine",
        args: &["bench", "-p", "worker", "--bench", "engine"],
        env: &[],
        tables: true,
    },
    Run {
        key: "peers",
        title: "Job engine beside graphile-worker 0.17.3 (same run, PostgreSQL with fsync on)",
        shown: "cargo bench -p worker --bench peers",
        args: &["bench", "-p", "worker", "--bench", "peers"],
        env: &[],
        tables: true,
    },
    Run {
        key: "scale",
        title: "Job engine at scale: claims with a backlog, bulk enqueue, kill -9, scheduling, cancellation",
        shown: "cargo bench -p worker --bench scale",
        args: &["bench", "-p", "worker", "--bench", "scale"],
        env: &[],
        tables: true,
    },
    Run {
        key: "dashboard",
        title: "Dashboard at 1,000,000 jobs",
        shown: "cargo bench -p server --bench dashboard",
        args: &["bench", "-p", "server", "--bench", "dashboard"],
        env: &[],
        tables: true,
    },
    Run {
        key: "tenants",
        title: "Tenancy: request latency and provisioning time",
        shown: "cargo bench -p server --bench tenants",
        args: &["bench", "-p", "server", "--bench", "tenants"],
        env: &[],
        tables: true,
    },
    Run {
        key: "notifications",
        title: "Notifications: toast latency and idle streams",
        shown: "cargo bench -p server --bench notifications",
        args: &["bench", "-p", "server", "--bench", "notifications"],
        env: &[],
        tables: true,
    },
    Run {
        key: "login",
        title: "Sign-in: the owner under a login flood; 50 sign-ins at once (memory, latency, the CPU floor)",
        shown: "cargo bench -p server --bench login",
        args: &["bench", "-p", "server", "--bench", "login"],
        env: &[],
        tables: true,
    },
    Run {
        key: "scale-out",
        title: "Scale-out: servers and workers on one PostgreSQL",
        shown: "cargo bench -p server --bench scale",
        args: &["bench", "-p", "server", "--bench", "scale"],
        env: &[],
        tables: true,
    },
    Run {
        key: "chaos-kill",
        title: "Chaos: kill -9 at random during provisioning (100 kills, 20 tenants, each backend)",
        shown: "CHAOS_TENANTS=20 CHAOS_KILLS=100 cargo test --release -p worker --test chaos -- --nocapture",
        args: &["test", "--release", "-p", "worker", "--test", "chaos", "--", "--nocapture", "--test-threads", "1"],
        env: &[("CHAOS_TENANTS", "20"), ("CHAOS_KILLS", "100")],
        tables: false,
    },
    Run {
        key: "chaos-postgres",
        title: "Chaos: PostgreSQL restarted under 1,000 sign-ups; streams across processes",
        shown: "CHAOS_SIGNUPS=1000 cargo test --release -p server --test cluster -- --nocapture",
        args: &["test", "--release", "-p", "server", "--test", "cluster", "--", "--nocapture", "--test-threads", "1"],
        env: &[("CHAOS_SIGNUPS", "1000")],
        tables: false,
    },
    Run {
        key: "chaos-smtp",
        title: "Chaos: the SMTP server answering 4xx, 5xx, down, and killed after accepting",
        shown: "cargo test --release -p backoffice --test domain smtp_ -- --nocapture",
        args: &["test", "--release", "-p", "backoffice", "--test", "domain", "smtp_", "--", "--nocapture"],
        env: &[],
        tables: false,
    },
    Run {
        key: "security",
        title: "Security: login timing (1,000 samples each), decoders fed garbage",
        shown: "ENUM_SAMPLES=1000 FUZZ_SAMPLES=300 cargo test --release -p server --test security --test login_timing -- --nocapture",
        args: &[
            "test",
            "--release",
            "-p",
            "server",
            "--test",
            "security",
            "--test",
            "login_timing",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        env: &[("ENUM_SAMPLES", "1000"), ("FUZZ_SAMPLES", "300")],
        tables: false,
    },
];

/// The requirements and what Hangfire's defaults would give, beside the runs.
const REQUIREMENTS: &str = "\
| requirement | target | where measured below | Hangfire's defaults |
|---|---|---|---|
| AC1 create/sign-up answers at once | ≤ 500 ms (goal p99 ≤ 25 ms on PostgreSQL) | Tenancy: request latency | enqueue is one INSERT; the same order of magnitude |
| AC2 failure visible | tenant `failed`, job dead with its error, red toast | Playwright AC2 (`end2end/tests/admin.spec.ts`) | failed state after 10 retries |
| AC3 toast after provisioning | ≤ 5 s (goal p99 ≤ 100 ms) | Notifications: toast latency | SignalR push in the original design |
| AC4 crash safety | a job running in a dead process runs again | Job engine: kill -9 recovery; Chaos | SQL storage: invisibility timeout 30 min by default (5 min in newer versions), so an aborted job waits that long |
| AC5 dashboard for super admins only | anonymous → login, others → 403 | Security; Playwright AC5 | dashboard is local-only unless an authorization filter is set |
| AC6 durable, observable | counts, history, dead letters, /metrics | Job engine | dashboard, no Prometheus by default |
| polling | idle enqueue-to-start | Job engine: latency | SQL storage polls every 15 s by default |
| load | latency at rising concurrency until p99 passes 500 ms | Tenancy: rising concurrency (table and chart) | no built-in figure |
| scale-out | 2 servers + 2 workers on one PostgreSQL: no lost or duplicated notification, memory per process | Scale-out | many servers on one storage; pushing to browsers needs a SignalR backplane |
| chaos | kill -9, SIGSTOP, PostgreSQL restart, SMTP 4xx / 5xx / down / killed after accepting, poison job | Chaos; Job engine | retries 10 times by default, then failed |
| the suites can fail | each suite fails against a build broken on purpose | Broken builds | |
";

/// The names `cargo xtask results RUN…` takes.
pub fn run_names() -> Vec<&'static str> {
    RUNS.iter().map(|r| r.key).chain(["mutants"]).collect()
}

/// Runs everything (or the runs named in `only`) and writes `docs/RESULTS.md`;
/// sections not measured again are kept from the page as it was.
pub fn results(ws: &Workspace, only: &[String]) -> anyhow::Result<()> {
    let known = run_names();
    if let Some(unknown) = only.iter().find(|o| !known.contains(&o.as_str())) {
        anyhow::bail!("no run named {unknown:?}; the runs are {}", known.join(", "));
    }
    let chosen = |key: &str| only.is_empty() || only.iter().any(|o| o == key);
    let path = ws.root.join("docs/RESULTS.md");
    let before = if only.is_empty() { String::new() } else { std::fs::read_to_string(&path).unwrap_or_default() };
    let kept = sections(&before);
    let pg = postgres::ensure_postgres().context("starting PostgreSQL for the measurements")?;
    if chosen("peers") {
        // The peer runs from npm, as `cargo xtask bench` installs it.
        crate::e2e::npm_install(&ws.root.join("tools/peers/graphile-worker"))?;
    }
    let mut page = String::from(
        "# Results\n\nRegenerated by `cargo xtask results` (about 90 minutes on 2 cores; `cargo xtask results \
         NAME…` measures only the named runs again); every figure below is what that command printed, and each \
         section says when. Release builds; client, servers, workers and database share the machine.\n\n",
    );
    let _ = writeln!(page, "## Machine\n\n{}\n", machine());
    let _ = writeln!(page, "## Requirements\n\n{REQUIREMENTS}");
    // A run that fails keeps its section as it was and the others go on: an
    // hour of measurements is not lost to one bench; the command fails at the end.
    let mut failed = Vec::new();
    for run in RUNS {
        let heading = format!("## {}", run.title);
        let earlier = || {
            kept.iter().find(|(h, _)| *h == heading).map_or_else(
                || format!("\nNot measured yet: `cargo xtask results {}`.\n\n", run.key),
                |(_, b)| b.clone(),
            )
        };
        if !chosen(run.key) {
            let _ = write!(page, "{heading}\n{}", earlier());
            continue;
        }
        let mut cmd = ws.cargo();
        cmd.args(run.args).env("TEST_DATABASE_URL", &pg.url).envs(run.env.iter().copied());
        match workspace::output(&mut cmd) {
            Ok(out) => {
                let _ = writeln!(
                    page,
                    "{heading}\n\n`{}` (`cargo xtask results {}`), measured {}\n",
                    run.shown,
                    run.key,
                    now()
                );
                let _ = write!(page, "{}", gather(&out, run.tables));
                page.push('\n');
                eprintln!("xtask: measured {}", run.title);
            }
            Err(e) => {
                eprintln!("xtask: {} failed, its section is kept as it was: {e:#}", run.shown);
                let _ = write!(page, "{heading}\n{}", earlier());
                failed.push(run.key);
            }
        }
    }
    let heading = "## Broken builds the suites catch";
    if chosen("mutants") {
        let table = crate::mutants::mutants(ws).context("the broken builds")?;
        let _ = writeln!(
            page,
            "{heading}\n\n`cargo xtask mutants` (`cargo xtask results mutants`), measured {}: each row breaks one \
             piece of code on purpose, runs the suite meant to catch it (debug build) and restores the file.\n\n{table}",
            now()
        );
    } else if let Some((_, body)) = kept.iter().find(|(h, _)| h == heading) {
        let _ = write!(page, "{heading}\n{body}");
    }
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("xtask: wrote {}", path.display());
    if !failed.is_empty() {
        anyhow::bail!("these runs failed (their output is above): {}", failed.join(", "));
    }
    Ok(())
}

/// A page's `## ` sections: heading line and everything up to the next one.
fn sections(page: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in page.split_inclusive('\n') {
        if line.starts_with("## ") {
            out.push((line.trim_end().to_owned(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
        }
    }
    out
}

fn now() -> String {
    workspace::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default().trim().to_owned()
}

/// The figures in a run's output: `figure:` lines (the suites print them after
/// cargo's `test … ... `), and for benchmarks their tables, headings,
/// one-line results and charts.
fn gather(out: &str, tables: bool) -> String {
    let mut md = String::new();
    let mut in_table = false;
    let mut in_chart = false;
    for line in out.lines().map(str::trim_end) {
        if tables && (in_chart || line.starts_with("```")) {
            // A chart (a mermaid block), kept as it is.
            let _ = writeln!(md, "{}{line}", if in_chart { "" } else { "\n" });
            if line.starts_with("```") {
                in_chart = !in_chart;
                if !in_chart {
                    // Whatever follows (a table) starts a block of its own.
                    md.push('\n');
                    in_table = false;
                }
            }
            continue;
        }
        if let Some(at) = line.find("figure: ") {
            let _ = writeln!(md, "- {}", &line[at + "figure: ".len()..]);
        } else if !tables
            || line.trim().is_empty()
            || line.ends_with("benchmark: 2 cores")
            || line.contains(" benchmark: ")
        {
            continue;
        } else if line.starts_with('|') {
            if !in_table {
                md.push('\n');
            }
            in_table = true;
            let _ = writeln!(md, "{line}");
            continue;
        } else if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(md, "\n### {h}");
        } else if let Some(h) = line.strip_prefix("### ") {
            // One level down too, under the run's own heading (not a list item).
            let _ = writeln!(md, "\n#### {h}");
        } else {
            let _ = writeln!(md, "- {line}");
        }
        in_table = false;
    }
    md
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or_else(|| "?".into(), |kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0));
    let kernel = workspace::output(Command::new("uname").arg("-r")).unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem} RAM, Linux {}. PostgreSQL: a throw-away cluster with fsync off (`cargo xtask` \
         starts it), unless `TEST_DATABASE_URL` names another or the section says otherwise (the engine benches \
         start their own with fsync on).",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::{gather, sections};

    #[test]
    fn splits_a_page_into_its_sections() {
        let page = "# Results\n\nintro\n\n## A\n\none\n\n## B\n| x |\n";
        assert_eq!(
            sections(page),
            [("## A".to_owned(), "\none\n\n".to_owned()), ("## B".to_owned(), "| x |\n".to_owned())]
        );
    }

    #[test]
    fn gathers_figures_tables_and_result_lines() {
        let bench = "tenancy benchmark: 2 cores\n\n## Latency\n\n| a | b |\n|---|---|\n| 1 | 2 |\nSqlite: 5 jobs/s\n";
        assert_eq!(gather(bench, true), "\n### Latency\n\n| a | b |\n|---|---|\n| 1 | 2 |\n- Sqlite: 5 jobs/s\n");
        let chart = "| a |\n|---|\n| 1 |\n\n```mermaid\nxychart-beta\n```\n\n| a |\n|---|\n| 2 |\n";
        assert_eq!(
            gather(chart, true),
            "\n| a |\n|---|\n| 1 |\n\n```mermaid\nxychart-beta\n```\n\n\n| a |\n|---|\n| 2 |\n"
        );
        let sub = "## Run\n\n### Sqlite: 5 jobs seeded\n\n| a |\n|---|\n| 1 |\n";
        assert_eq!(gather(sub, true), "\n### Run\n\n#### Sqlite: 5 jobs seeded\n\n| a |\n|---|\n| 1 |\n");
        let suite = "running 2 tests\ntest x::postgres ... figure: Postgres: 3 kills\nok\ntest result: ok.\n";
        assert_eq!(gather(suite, false), "- Postgres: 3 kills\n");
    }
}
