//! [`Env`]: what the back office's jobs run with, and the test-only [`Fault`]
//! that slows or breaks provisioning.

use std::time::Duration;

use anyhow::anyhow;
use database::Db;
use jobengine::Jobs;

use crate::mail::Mail;
use crate::tenant_db::TenantDbs;

/// What the jobs need: built once at start, shared by every attempt.
pub struct Env {
    /// The job engine (for follow-up jobs and the clock).
    pub jobs: Jobs,
    /// The control plane.
    pub db: Db,
    /// Tenant databases.
    pub tenant_dbs: TenantDbs,
    /// Injected slowness or failure, for tests.
    pub fault: Option<Fault>,
    /// Email composition and delivery.
    pub mail: Mail,
}

/// Test-only slowness or failure, from `PROVISION_FAULT`: `slow:<ms>` waits that
/// long in every step; `fail` fails every attempt at the migrating step;
/// `fail:<text>` does so only for tenants whose name contains `<text>` (so one
/// server can show both outcomes). Off unless set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Sleep this long in each step.
    Slow(Duration),
    /// Fail at the migrating step.
    Fail,
    /// Fail at the migrating step when the tenant's name contains this.
    FailNamed(String),
}

impl Fault {
    /// Parses `PROVISION_FAULT`.
    ///
    /// # Errors
    /// Not `slow:<ms>`, `fail` or `fail:<text>`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "fail" => Ok(Fault::Fail),
            other if other.starts_with("fail:") && other.len() > 5 => Ok(Fault::FailNamed(other[5..].to_owned())),
            other => other
                .strip_prefix("slow:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| Fault::Slow(Duration::from_millis(ms)))
                .ok_or_else(|| anyhow!("PROVISION_FAULT={other:?}: expected slow:<ms>, fail or fail:<text>")),
        }
    }
}
