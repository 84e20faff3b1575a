//! `cargo xtask mutants`: shows that the suites fail when they should.
//!
//! Each [`Mutant`] is a deliberately broken build: one exact piece of source
//! replaced by a wrong one (the fence on stale completions gone, the super-admin
//! check letting anyone through, ...). For each, the file is changed, the suite
//! meant to catch it runs, and the file is put back whatever happens. A mutant is
//! *caught* when the suite compiles and then reports failed tests; a build error
//! or a passing suite is reported as not caught, and the command fails.
//!
//! `MUTANT=<words>` runs only the mutants whose description contains the words.
//!
//! The pieces are matched exactly and must occur once: when the code they break
//! changes, this command says so instead of silently testing nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::postgres;
use crate::workspace::{Workspace, describe};

/// One broken build and the suite that must catch it.
struct Mutant {
    /// What is broken, as a reader would say it.
    what: &'static str,
    /// `(file, find, replace)`: each `find` must occur exactly once in its file.
    edits: &'static [(&'static str, &'static str, &'static str)],
    /// The suite, as shown in the results.
    suite: &'static str,
    /// `cargo` arguments running it.
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        what: "the fence on stale completions is off (SQLite): a worker's late result is accepted after its lease passed to another",
        edits: &[(
            "jobengine/src/storage/sqlite.rs",
            "run_at = COALESCE(?, run_at), last_error = COALESCE(?, last_error)
                 WHERE id = ? AND lease_seq = ? AND state = 'processing'",
            "run_at = COALESCE(?, run_at), last_error = COALESCE(?, last_error)
                 WHERE id = ? AND (lease_seq = ? OR 1 = 1) AND state = 'processing'",
        )],
        suite: "chaos: SIGSTOP past the lease (`worker --test crash stale_worker_cannot_complete`)",
        args: &["test", "-p", "worker", "--test", "crash", "stale_worker_cannot_complete::sqlite"],
        env: &[],
    },
    Mutant {
        what: "re-creating a tenant's PostgreSQL database after a crash is an error (CREATE DATABASE not idempotent)",
        edits: &[
            (
                "database/src/siblings.rs",
                r#"Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),"#,
                r#"Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("never") => Ok(()),"#,
            ),
            ("database/src/siblings.rs", "if self.exists(name).await? {", "if self.exists(name).await? && false {"),
        ],
        suite: "chaos: kill -9 at random during provisioning (`worker --test chaos`, PostgreSQL)",
        args: &["test", "-p", "worker", "--test", "chaos", "random_kill_9_during_provisioning::postgres"],
        env: &[("CHAOS_TENANTS", "6"), ("CHAOS_KILLS", "20")],
    },
    Mutant {
        what: "a request refused because the database is away answers INTERNAL instead of UNAVAILABLE (retry)",
        edits: &[(
            "server/src/boundary.rs",
            "e if e.is_unavailable() => Self::unavailable(&e),",
            "e if e.is_unavailable() && false => Self::unavailable(&e),",
        )],
        suite: "chaos: PostgreSQL restarted under sign-ups (`server --test cluster signups_survive_a_postgres_restart`)",
        args: &["test", "-p", "server", "--test", "cluster", "signups_survive_a_postgres_restart"],
        env: &[],
    },
    Mutant {
        what: "a 5xx SMTP answer is retried like a 4xx one instead of dead-lettering the email",
        edits: &[(
            "backoffice/src/mail.rs",
            "Err(e) if e.is_permanent() => {",
            "Err(e) if e.is_permanent() && false => {",
        )],
        suite: "chaos: SMTP answers (`backoffice --test domain smtp_`)",
        args: &["test", "-p", "backoffice", "--test", "domain", "smtp_"],
        env: &[],
    },
    Mutant {
        what: "a provisioning job that failed for good leaves its tenant `provisioning` (poison job)",
        edits: &[(
            "backoffice/src/jobs/provision.rs",
            "WHERE id = $3 AND status = 'provisioning' RETURNING name, initiated_by",
            "WHERE id = $3 AND status = 'never' RETURNING name, initiated_by",
        )],
        suite: "chaos: poison job (`backoffice --test domain provisioning_failure_marks_tenant_failed`)",
        args: &["test", "-p", "backoffice", "--test", "domain", "provisioning_failure_marks_tenant_failed::sqlite"],
        env: &[],
    },
    Mutant {
        what: "the provisioning job has no end hook: a worker killed on its last allowed attempt leaves the tenant `provisioning`",
        edits: &[("backoffice/src/jobs/mod.rs", ".on_end::<provision::ProvisionTenant>()", "")],
        suite: "chaos: kill -9 on the last allowed attempt (`worker --test crash kill_9_on_the_last_allowed_attempt_fails_the_tenant`)",
        args: &[
            "test",
            "-p",
            "worker",
            "--test",
            "crash",
            "kill_9_on_the_last_allowed_attempt_fails_the_tenant::sqlite",
        ],
        env: &[],
    },
    Mutant {
        what: "the super-admin check lets any signed-in user through",
        edits: &[(
            "server/src/caller.rs",
            "if self.user.role != Role::SuperAdmin {",
            "if self.user.role != Role::SuperAdmin && false {",
        )],
        suite: "security: access matrix (`server --test security super_admin_rpcs_refuse_everyone_else`)",
        args: &["test", "-p", "server", "--test", "security", "super_admin_rpcs_refuse_everyone_else::sqlite"],
        env: &[],
    },
    Mutant {
        what: "tonic's own codec instead of ours: a malformed message is answered INTERNAL, not INVALID_ARGUMENT",
        edits: &[(
            "proto/build.rs",
            r#".codec_path("crate::codec::ProtoCodec")"#,
            r#".codec_path("tonic_prost::ProstCodec")"#,
        )],
        suite: "security: decoders fed garbage (`server --test security decoders_survive_garbage`)",
        args: &["test", "-p", "server", "--test", "security", "decoders_survive_garbage::sqlite"],
        env: &[],
    },
    Mutant {
        what: "an unknown email skips the dummy password hash (answers faster than a wrong password)",
        edits: &[(
            "backoffice/src/password.rs",
            "let real = phc.is_some();",
            "let real = phc.is_some();
        if !real {
            return Ok(false);
        }",
        )],
        suite: "security: login timing (`server --test login_timing`)",
        args: &["test", "-p", "server", "--test", "login_timing"],
        env: &[],
    },
    Mutant {
        what: "a stream is sent every user's notifications, not only its own",
        edits: &[(
            "backoffice/src/notify.rs",
            "WHERE user_id = $1 AND id > $2 AND acked_at IS NULL ORDER BY id LIMIT $3",
            "WHERE (user_id = $1 OR $1 <> '') AND id > $2 AND acked_at IS NULL ORDER BY id LIMIT $3",
        )],
        suite: "security: notification isolation under load (`server --test notifications users_never_see_each_others_notifications`)",
        args: &[
            "test",
            "-p",
            "server",
            "--test",
            "notifications",
            "users_never_see_each_others_notifications::postgres",
        ],
        env: &[],
    },
    Mutant {
        what: "one user's notifications may commit out of id order (PostgreSQL), so a stream can skip one for good",
        edits: &[(
            "database/src/tx.rs",
            r#"sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")"#,
            r#"sqlx::query("SELECT $1::int4, hashtext($2)")"#,
        )],
        suite: "load: notifications under concurrent activations (`backoffice --test domain one_users_notifications_commit_in_id_order`)",
        args: &["test", "-p", "backoffice", "--test", "domain", "one_users_notifications_commit_in_id_order"],
        env: &[],
    },
    Mutant {
        what: "a request waiting for a connection never has the PostgreSQL server probed, so during an outage it waits out the pool's 30 s",
        edits: &[("database/src/reach.rs", "probed = true;\n                    self.suspect();", "probed = true;")],
        suite: "outage: the server cut under a handle (`database --lib reach::tests::an_outage_fails_requests_after_its_grace`)",
        args: &["test", "-p", "database", "--lib", "reach::tests::an_outage_fails_requests_after_its_grace"],
        env: &[],
    },
];

/// Puts a file back as it was when dropped.
struct Restore {
    path: PathBuf,
    original: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.original) {
            eprintln!(
                "xtask: COULD NOT RESTORE {}: {e}; run `git checkout -- {}`",
                self.path.display(),
                self.path.display()
            );
        }
    }
}

/// Applies every edit of `m`; the files come back when the result is dropped.
fn apply(root: &Path, m: &Mutant) -> anyhow::Result<Vec<Restore>> {
    let mut restores = Vec::new();
    for (file, find, replace) in m.edits {
        let path = root.join(file);
        let current = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let n = current.matches(find).count();
        if n != 1 {
            bail!(
                "the mutant \"{}\" no longer applies: its text occurs {n} times in {file} (update xtask/src/mutants.rs)",
                m.what
            );
        }
        // The file as it was before this mutant touched it (two edits may share one).
        if !restores.iter().any(|r: &Restore| r.path == path) {
            restores.push(Restore { path: path.clone(), original: current.clone() });
        }
        std::fs::write(&path, current.replacen(find, replace, 1))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(restores)
}

/// Runs every mutant; returns the Markdown table of outcomes, or fails if any
/// mutant was not caught.
pub fn mutants(ws: &Workspace) -> anyhow::Result<String> {
    let pg = postgres::ensure_postgres().context("starting PostgreSQL for the suites")?;
    let mut table = String::from("| broken build | suite | outcome |\n|---|---|---|\n");
    let mut survivors = Vec::new();
    // `MUTANT=<words>` runs only the mutants whose description contains them.
    let only = std::env::var("MUTANT").unwrap_or_default();
    for m in MUTANTS.iter().filter(|m| m.what.contains(only.as_str())) {
        let restore = apply(&ws.root, m)?;
        let mut cmd = ws.cargo();
        cmd.args(m.args).env("TEST_DATABASE_URL", &pg.url).envs(m.env.iter().copied());
        eprintln!("xtask: mutant: {}\nxtask: {}", m.what, describe(&cmd));
        let out = cmd.output().with_context(|| format!("starting {}", describe(&cmd)))?;
        drop(restore);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let failed: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("test ") && l.ends_with(" FAILED"))
            .map(|l| l.trim_start_matches("test ").trim_end_matches(" ... FAILED"))
            .collect();
        let outcome = if !out.status.success() && !failed.is_empty() {
            format!("caught: {} failed", failed.join(", "))
        } else if out.status.success() {
            survivors.push(m.what);
            "**not caught**: the suite passed".to_owned()
        } else {
            survivors.push(m.what);
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| l.contains("error")).unwrap_or("no test ran");
            format!("**not caught**: {last}")
        };
        eprintln!("xtask: {outcome}");
        let mut files: Vec<&str> = m.edits.iter().map(|e| e.0).collect();
        files.dedup();
        let _ = writeln!(table, "| {} (`{}`) | {} | {outcome} |", m.what, files.join("`, `"), m.suite);
    }
    println!("{table}");
    if !survivors.is_empty() {
        bail!("{} broken build(s) not caught: {}", survivors.len(), survivors.join("; "));
    }
    Ok(table)
}
