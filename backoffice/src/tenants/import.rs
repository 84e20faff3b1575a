//! Bulk tenant creation: a super admin's CSV of `name,admin email` rows.
//!
//! Policy: all or nothing. Every row is checked first, with the very checks
//! [`Tenants::create_by_admin`] makes (the name and email parsers, the name's
//! lookalike skeleton, the email's account or live tenant), plus duplicates within
//! the file; when any row is wrong, nothing is created and every problem is
//! answered with its line and field, so the admin fixes the file and sends it
//! again. (Creating the valid rows only would leave a half-imported file whose
//! resubmission then fails on every row it had created.) When all are valid, the
//! tenants and their provisioning jobs are written in ONE transaction as one job
//! batch, whose completion job ([`crate::jobs::import_done`]) sends the importing
//! admin one notice ("50 tenants: 49 active, 1 failed") instead of a toast per
//! tenant.

use std::collections::HashMap;

use database::query;
use serde::Serialize;

use super::{Origin, Tenant, Tenants, db_name_for};
use crate::error::Error;
use crate::identity::User;
use crate::jobs::import_done::ImportDone;
use crate::jobs::provision::ProvisionTenant;
use crate::validate::{Email, TenantName};

/// Most rows one import takes.
pub const MAX_ROWS: usize = 1000;
/// Largest file, in bytes (1,000 rows of the longest names and emails fit).
pub const MAX_BYTES: usize = 1 << 20;

/// One problem in one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The line in the file, from 1 (a header, when present, is line 1).
    pub line: usize,
    /// `name`, `admin_email`, or `row` for the row's shape; `csv` for the file.
    pub field: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl RowError {
    /// The field as a path the transports name (`rows[3].admin_email`; the file
    /// as a whole is `csv`).
    pub fn path(&self) -> String {
        if self.field == "csv" { "csv".to_owned() } else { format!("rows[{}].{}", self.line, self.field) }
    }
}

/// The problems on one line each, for messages and logs.
pub fn describe(errors: &[RowError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.path(), e.message)).collect::<Vec<_>>().join("; ")
}

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The job batch of the tenants' provisioning.
    pub batch_id: i64,
    /// The tenants (`provisioning`), in file order.
    pub tenants: Vec<Tenant>,
}

/// A row that parsed.
struct Row {
    line: usize,
    name: TenantName,
    email: Email,
}

/// Parses `csv` into rows, collecting every problem.
fn parse(csv: &str) -> Result<Vec<Row>, Vec<RowError>> {
    let file_error = |message: String| vec![RowError { line: 0, field: "csv", message }];
    if csv.len() > MAX_BYTES {
        return Err(file_error(format!("at most {MAX_BYTES} bytes")));
    }
    // Browsers post a textarea's lines with CRLF, and the csv crate's line
    // numbers count CRLF line ends wrongly: one kind of line end, so the lines
    // named in errors are the file's.
    let csv = csv.replace("\r\n", "\n").replace('\r', "\n");
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(csv.as_bytes());
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut records = 0usize;
    for (i, record) in reader.records().enumerate() {
        let line = record.as_ref().ok().and_then(|r| r.position()).map_or(i + 1, |p| p.line() as usize);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError { line, field: "row", message: format!("not readable as CSV: {e}") });
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue; // Blank lines are not rows.
        }
        let is_header = i == 0
            && record.get(0).is_some_and(|c| c.eq_ignore_ascii_case("name"))
            && record.get(1).is_some_and(|c| {
                let c = c.to_ascii_lowercase().replace(['_', '-'], " ");
                c == "admin email" || c == "email"
            });
        if is_header {
            continue;
        }
        records += 1;
        if records > MAX_ROWS {
            return Err(file_error(format!("at most {MAX_ROWS} rows")));
        }
        if record.len() != 2 {
            let message = format!("expected 2 columns (name, admin email), found {}", record.len());
            errors.push(RowError { line, field: "row", message });
            continue;
        }
        let name = TenantName::parse("name", &record[0]);
        let email = Email::parse("admin_email", &record[1]);
        match (name, email) {
            (Ok(name), Ok(email)) => rows.push(Row { line, name, email }),
            (name, email) => {
                for e in [name.err(), email.err()].into_iter().flatten() {
                    errors.push(RowError { line, field: e.field, message: e.message });
                }
            }
        }
    }
    if records == 0 && errors.is_empty() {
        return Err(file_error("no rows: expected lines of `name,admin email`".to_owned()));
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}

/// Duplicates within the file: the same name (case-insensitively or as a
/// lookalike) or the same email as an earlier row.
fn duplicates(rows: &[Row]) -> Vec<RowError> {
    let mut errors = Vec::new();
    let (mut names, mut skeletons, mut emails) = (HashMap::new(), HashMap::new(), HashMap::new());
    for r in rows {
        let first = names.get(&r.name.key()).or_else(|| skeletons.get(&r.name.skeleton())).copied();
        if let Some(first) = first {
            let message = format!("the same name as line {first}, or one that looks like it");
            errors.push(RowError { line: r.line, field: "name", message });
        }
        if let Some(first) = emails.get(r.email.as_str()) {
            let message = format!("the same admin email as line {first}");
            errors.push(RowError { line: r.line, field: "admin_email", message });
        }
        names.entry(r.name.key()).or_insert(r.line);
        skeletons.entry(r.name.skeleton()).or_insert(r.line);
        emails.entry(r.email.as_str().to_owned()).or_insert(r.line);
    }
    errors
}

impl Tenants {
    /// A super admin imports tenants from `csv` (see the module docs for the
    /// policy): one transaction, one job batch, one notice when it ends.
    ///
    /// # Errors
    /// [`Error::InvalidRows`] naming every bad row and field (nothing written); a
    /// database failure.
    pub async fn import_by_admin(&self, admin: &User, csv: &str) -> Result<Imported, Error> {
        let rows = parse(csv).map_err(Error::InvalidRows)?;
        let errors = duplicates(&rows);
        if !errors.is_empty() {
            return Err(Error::InvalidRows(errors));
        }
        let now = self.clock.now();
        let mut tx = self.jobs.begin().await?;
        // Against existing tenants and accounts: the checks `create_by_admin` makes.
        let mut errors = Vec::new();
        for r in &rows {
            let (email_taken, name_taken) = super::conflicts(&mut tx, &r.name, &r.email).await?;
            if name_taken {
                let message = "a tenant with this name (or one that looks like it) already exists".to_owned();
                errors.push(RowError { line: r.line, field: "name", message });
            }
            if email_taken {
                errors.push(RowError { line: r.line, field: "admin_email", message: "already has an account".into() });
            }
        }
        if !errors.is_empty() {
            tx.rollback().await?;
            return Err(Error::InvalidRows(errors));
        }
        let ids: Vec<uuid::Uuid> = rows.iter().map(|_| uuid::Uuid::new_v4()).collect();
        let jobs = ids
            .iter()
            .map(|id| self.jobs.new_job(&ProvisionTenant { tenant_id: id.to_string() }, None))
            .collect::<Result<Vec<_>, _>>()?;
        let done = self.jobs.new_job(&ImportDone { admin_id: admin.id.clone() }, None)?;
        let label = format!("import of {} tenants by {}", rows.len(), admin.email);
        let batch = self.jobs.enqueue_batch_in(&mut tx, &label, &jobs, Some(&done)).await?;
        let mut tenants = Vec::with_capacity(rows.len());
        for ((r, uuid), job) in rows.iter().zip(&ids).zip(&batch.jobs) {
            let tenant: Option<Tenant> = query(
                "INSERT INTO tenants (id, name, name_key, name_skeleton, slug, status, origin, initiated_by,
                                      admin_email, db_name, job_id, created_at, updated_at, import_batch_id)
                 VALUES ($1, $2, $3, $4, $5, 'provisioning', $6, $7, $8, $9, $10, $11, $11, $12)
                 ON CONFLICT DO NOTHING
                 RETURNING *",
            )
            .bind(uuid.to_string())
            .bind(r.name.as_str())
            .bind(r.name.key())
            .bind(r.name.skeleton())
            .bind(r.name.slug())
            .bind(Origin::Admin.as_str())
            .bind(admin.id.as_str())
            .bind(r.email.as_str())
            .bind(db_name_for(uuid))
            .bind(job.id)
            .bind(now)
            .bind(batch.id)
            .fetch_optional(&mut tx)
            .await?;
            match tenant {
                Some(t) => tenants.push(t),
                None => {
                    // A concurrent create took the name or email after the checks
                    // (PostgreSQL): nothing of the import is kept.
                    tx.rollback().await?;
                    let message = "taken by a tenant created at the same time; send the file again".to_owned();
                    return Err(Error::InvalidRows(vec![RowError { line: r.line, field: "name", message }]));
                }
            }
        }
        tx.commit().await?;
        Ok(Imported { batch_id: batch.id, tenants })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(csv: &str) -> Vec<(usize, &'static str)> {
        match parse(csv) {
            Ok(rows) => duplicates(&rows).iter().map(|e| (e.line, e.field)).collect(),
            Err(e) => e.iter().map(|e| (e.line, e.field)).collect(),
        }
    }

    #[test]
    fn rows_are_checked_one_by_one_with_their_lines() {
        assert_eq!(
            parse("name,admin email\nAcme,a@acme.test\n\"Globex, Inc.\",b@globex.test\n").map(|r| r.len()).ok(),
            Some(2)
        );
        assert_eq!(parse("Acme,a@acme.test").map(|r| r.len()).ok(), Some(1), "the header is optional");
        assert_eq!(
            errors("name,email\nAcme,a@acme.test\nX,not-an-email\nOk Co,ok@ok.test,extra\n"),
            [(3, "name"), (3, "admin_email"), (4, "row")]
        );
        assert_eq!(
            errors("Acme,a@acme.test\nACME,b@acme.test\nOther,a@acme.test\n"),
            [(2, "name"), (3, "admin_email")]
        );
        // A browser posts a textarea's lines with CRLF.
        assert_eq!(errors("NoJs Co,nojs@bulk.test\r\n,missing@bulk.test\r\n"), [(2, "name")]);
        assert_eq!(errors(""), [(0, "csv")]);
        let many: String = (0..=MAX_ROWS).map(|i| format!("Tenant {i},t{i}@example.test\n")).collect();
        assert_eq!(errors(&many), [(0, "csv")]);
    }
}
