//! The settings the `server` and `worker` binaries share, defined once.
//!
//! Each group is a [`clap::Args`] struct that a binary flattens into its own
//! top-level `#[derive(Parser)] struct Settings`. Every setting is a long flag and
//! an environment variable with the same meaning (the flag wins when both are
//! given), with its default in `--help`. The groups turn themselves into the
//! libraries' typed values ([`jobengine::WorkerConfig`], [`backoffice::mail::Mail`],
//! [`backoffice::env::Fault`]): libraries read no environment.
//!
//! Why clap's derive with its `env` feature rather than our own lookups: one
//! declaration gives the flag, the variable, the default, the validation, the error
//! naming the setting, and the help text, so they cannot drift apart (before, five
//! files read variables and none printed help).
//!
//! # Layout
//! - [`database`]: the control-plane database and the data folder;
//! - [`mail`]: how email is composed and sent;
//! - [`jobs`]: the worker's settings and the provisioning fault injection;
//! - [`Show`] and [`redact_url`]: `config` subcommands print the effective
//!   settings, secrets hidden.
//!
//! # Adding a setting
//! Add a field to the group it belongs to (or to a binary's own `Settings` if only
//! one binary has it), with `#[arg(long, env = "NAME")]` and a doc comment (the
//! help text), convert it where the group builds its typed value, list it in the
//! group's [`Show`], and add it to the README's settings table.

pub mod database;
pub mod jobs;
pub mod mail;

pub use database::DatabaseArgs;
pub use jobs::{ProvisionArgs, WorkerArgs};
pub use mail::MailArgs;

/// What a redacted secret is shown as.
pub const HIDDEN: &str = "(hidden)";

/// A settings group that can list its effective values, for `config` subcommands
/// and the tests that compare a flag with its variable.
pub trait Show {
    /// Appends `(VARIABLE, value)` for every setting of the group, in `--help`
    /// order; secrets redacted, an unset optional setting as an empty value.
    fn show(&self, out: &mut Vec<(&'static str, String)>);
}

/// Renders settings as `VARIABLE=value` lines (the syntax of an environment file).
pub fn render(entries: &[(&'static str, String)]) -> String {
    entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// `url` without its password (`scheme://user:(hidden)@host/...`), for logs and
/// `config`; URLs without one are returned as they are.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[scheme_end..].find(['/', '?', '#']).map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else {
        return url.to_owned();
    };
    match url[scheme_end..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:{HIDDEN}{}", &url[..scheme_end], &url[at..]),
        None => url.to_owned(),
    }
}

/// `value` with an empty (or blank) string taken as unset, the way an exported but
/// empty variable (`SMTP_URL=`) always meant "unset" here.
pub(crate) fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact_url("postgres://bo:s3cret@db:5432/app"), "postgres://bo:(hidden)@db:5432/app");
        assert_eq!(redact_url("smtps://u:p@ss@mail:465"), "smtps://u:(hidden)@mail:465");
        assert_eq!(redact_url("postgres://bo@db/app"), "postgres://bo@db/app");
        assert_eq!(redact_url("sqlite://data/app.db"), "sqlite://data/app.db");
        assert_eq!(redact_url("smtp://mail:25?from=a@b"), "smtp://mail:25?from=a@b");
    }
}
