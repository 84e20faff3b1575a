//! Inputs parsed into validated types at the edge (tenant names, emails,
//! passwords), so the rest of the code never sees an unchecked string.
//!
//! Every check reports which field is wrong and why, in words a user can act on;
//! transports turn a [`FieldErrors`] into a field-by-field `INVALID_ARGUMENT` or a
//! 400 with the same details.

use std::fmt;

pub mod lookalike;

/// One field's problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field as the client named it (`name`, `admin_email`, ...).
    pub field: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

/// Every problem found in one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        f.write_str(&parts.join("; "))
    }
}

impl FieldErrors {
    /// Adds a problem.
    pub fn push(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push(FieldError { field, message: message.into() });
    }

    /// Collects `r`'s error, returning its value if it had none.
    pub fn check<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// `Ok(())` when nothing was found.
    ///
    /// # Errors
    /// Self, when at least one problem was recorded.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Longest tenant name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// A tenant or company name: trimmed, 2 to 100 characters, no control characters,
/// with at least one letter or digit (so it yields a slug); normalised to NFKC
/// with invisible format characters removed, bidirectional controls and the
/// byte-order mark refused ([`lookalike`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    /// Validates `raw` as the field `field`.
    ///
    /// # Errors
    /// Empty, too short or long, control characters, bidirectional controls or a
    /// byte-order mark, or no letter or digit.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let err = |m: &str| FieldError { field, message: m.to_owned() };
        let normal = lookalike::normalise(raw).map_err(|c| FieldError {
            field,
            message: format!(
                "must not contain U+{:04X} (bidirectional controls and byte-order marks change how a name reads)",
                u32::from(c)
            ),
        })?;
        let s = normal.trim();
        if s.is_empty() {
            return Err(err("is required"));
        }
        let n = s.chars().count();
        if n > MAX_NAME_CHARS {
            return Err(FieldError {
                field,
                message: format!("must be at most {MAX_NAME_CHARS} characters (got {n})"),
            });
        }
        if n < 2 {
            return Err(err("must be at least 2 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(err("must not contain control characters"));
        }
        if !s.chars().any(char::is_alphanumeric) {
            return Err(err("must contain at least one letter or digit"));
        }
        // Collapse runs of inner whitespace so "Acme  Corp" and "Acme Corp" are one name.
        Ok(Self(s.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    /// The name as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is checked on: case-insensitive.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// The key lookalikes share (TR39's confusable skeleton, case-insensitive):
    /// unique among tenants too, so "Аcme" in Cyrillic cannot sit beside "Acme".
    pub fn skeleton(&self) -> String {
        lookalike::skeleton(&self.0)
    }

    /// A URL-friendly slug: ASCII letters and digits, dashes between words.
    pub fn slug(&self) -> String {
        let mut out = String::new();
        for c in self.0.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
        }
        let out = out.trim_end_matches('-').to_owned();
        if out.is_empty() { "tenant".to_owned() } else { out }
    }
}

/// An email address, lower-cased: one `@`, a plausible local part and domain.
/// Deliberately simple (RFC 5322 in full accepts addresses no mail server will);
/// the welcome email is the real proof of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Validates `raw` as the field `field`.
    ///
    /// # Errors
    /// Empty, too long, or not shaped like `local@domain.tld`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let err = |m: &str| FieldError { field, message: m.to_owned() };
        let s = raw.trim();
        if s.is_empty() {
            return Err(err("is required"));
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(FieldError { field, message: format!("must be at most {MAX_EMAIL_LEN} characters") });
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(err("is not an email address (expected name@example.com)"));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !local_ok || !domain_ok {
            return Err(err("is not an email address (expected name@example.com)"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The address, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(TenantName::parse("name", "  Acme   Corp ").map(|n| n.as_str().to_owned()), Ok("Acme Corp".into()));
        assert_eq!(TenantName::parse("name", "Acme Corp").map(|n| n.slug()), Ok("acme-corp".into()));
        assert_eq!(TenantName::parse("name", "ÄÖ Ünïcode GmbH").map(|n| n.key()), Ok("äö ünïcode gmbh".into()));
        for bad in ["", "   ", "a", "--", "tab\there", &"x".repeat(101)] {
            let e = TenantName::parse("name", bad).expect_err(bad);
            assert_eq!(e.field, "name");
        }
        let html = TenantName::parse("name", "<img src=x onerror=alert(1)>").expect("text is text");
        assert_eq!(html.slug(), "img-src-x-onerror-alert-1");
        let sql = TenantName::parse("name", "Robert'); DROP TABLE tenants;--").expect("text is text");
        assert_eq!(sql.slug(), "robert-drop-table-tenants");
    }

    #[test]
    fn emails() {
        assert_eq!(Email::parse("email", " Ann@Example.COM ").map(|e| e.to_string()), Ok("ann@example.com".into()));
        assert!(Email::parse("email", "a.b+tag@sub.example.org").is_ok());
        for bad in ["", "plain", "@x.com", "a@", "a@b", "a@@b.com", "a b@c.com", "a@-b.com", "a..b@c.com", "<a>@c.com"]
        {
            assert!(Email::parse("email", bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse("email", &format!("{}@example.com", "a".repeat(300))).is_err());
    }

    #[test]
    fn errors_list_every_field() {
        let mut errs = FieldErrors::default();
        errs.check(TenantName::parse("name", ""));
        errs.check(Email::parse("admin_email", "nope"));
        let e = errs.into_result().expect_err("two problems");
        assert_eq!(
            e.to_string(),
            "name: is required; admin_email: is not an email address (expected name@example.com)"
        );
    }
}
