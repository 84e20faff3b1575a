//! `mail.v1.MailboxService`: the built-in mailbox behind `/admin/mail`.
//!
//! With the default file transport (no `SMTP_URL`) every email the product
//! sends is written whole to `DATA_DIR/mail/<outbox id>.eml`
//! (`backoffice::mail`). This service lists those files and decodes one for
//! reading (headers, the text body with its quoted-printable transfer encoding
//! undone, by `mail-parser`), so a newcomer reads the welcome email in the
//! product instead of in a raw file. Super admins only: the emails carry
//! set-password links.

use std::path::PathBuf;

use proto::mail::v1 as pb;
use proto::mail::v1::mailbox_service_server::MailboxService;
use tonic::{Request, Response, Status};

use crate::caller::Caller;

/// Most messages `ListMail` returns (the newest).
const MAX_LISTED: usize = 200;

/// The service.
pub struct MailboxGrpc {
    /// Where the file transport writes; `None` when email goes to SMTP.
    dir: Option<PathBuf>,
}

impl MailboxGrpc {
    /// Serves the files of `transport` (nothing when it is SMTP) to super admins.
    pub fn new(transport: &backoffice::mail::Transport) -> Self {
        let dir = match transport {
            backoffice::mail::Transport::Files(dir) => Some(dir.clone()),
            backoffice::mail::Transport::Smtp(_) => None,
        };
        Self { dir }
    }

    fn dir(&self) -> Result<&PathBuf, Status> {
        self.dir.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "Email goes to the SMTP server set in SMTP_URL, so none is kept here. \
                 Unset SMTP_URL to have emails written as files and read them on this page.",
            )
        })
    }
}

/// An outbox id: a UUID (so never a path).
fn mail_id(id: &str) -> Option<&str> {
    (id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(id)
}

fn summary(id: &str, raw: &[u8], written_ms: i64) -> (pb::MailSummary, String) {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let addr = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .map(|a| match (a.name(), a.address()) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (None, Some(e)) => e.to_owned(),
                (Some(n), None) => n.to_owned(),
                (None, None) => String::new(),
            })
            .unwrap_or_default()
    };
    let (subject, from, to, text) = match &parsed {
        Some(m) => (
            m.subject().unwrap_or("(no subject)").to_owned(),
            addr(m.from()),
            addr(m.to()),
            m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        ),
        None => {
            ("(unreadable message)".to_owned(), String::new(), String::new(), String::from_utf8_lossy(raw).into_owned())
        }
    };
    (pb::MailSummary { id: id.to_owned(), subject, from, to, written_at_unix_ms: written_ms }, text)
}

fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as i64)
}

fn io_status(e: std::io::Error, what: &str) -> Status {
    tracing::error!(error = %e, "reading {what}");
    Status::internal("the mail folder cannot be read; see the server log")
}

#[tonic::async_trait]
impl MailboxService for MailboxGrpc {
    async fn list_mail(&self, req: Request<pb::ListMailRequest>) -> Result<Response<pb::ListMailResponse>, Status> {
        Caller::of(&req).require_super_admin()?;
        let dir = self.dir()?;
        let folder = dir.display().to_string();
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Response::new(pb::ListMailResponse { messages: Vec::new(), folder }));
            }
            Err(e) => return Err(io_status(e, "the mail folder")),
        };
        let mut found = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_status(e, "the mail folder"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".eml").and_then(mail_id).map(str::to_owned) else { continue };
            if let Ok(meta) = entry.metadata().await {
                found.push((modified_ms(&meta), id, entry.path()));
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        let mut messages = Vec::new();
        for (at, id, path) in found.into_iter().take(MAX_LISTED) {
            if let Ok(raw) = tokio::fs::read(&path).await {
                messages.push(summary(&id, &raw, at).0);
            }
        }
        Ok(Response::new(pb::ListMailResponse { messages, folder }))
    }

    async fn get_mail(&self, req: Request<pb::GetMailRequest>) -> Result<Response<pb::MailMessage>, Status> {
        Caller::of(&req).require_super_admin()?;
        let dir = self.dir()?;
        let id = mail_id(&req.get_ref().id).ok_or_else(|| Status::invalid_argument("id: not an email id"))?;
        let path = dir.join(format!("{id}.eml"));
        let raw = match tokio::fs::read(&path).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Status::not_found(format!("email {id} not found")));
            }
            Err(e) => return Err(io_status(e, "an email")),
        };
        let at = tokio::fs::metadata(&path).await.map(|m| modified_ms(&m)).unwrap_or(0);
        let (summary, text) = summary(id, &raw, at);
        Ok(Response::new(pb::MailMessage { summary: Some(summary), text }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_is_decoded_and_ids_are_never_paths() {
        let raw = "From: Back Office <no-reply@backoffice.local>\r\nTo: a@b.test\r\nSubject: Hi\r\n\
                   Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   http://127.0.0.1:3000/set-password?token=3D0123456789abcdef0123456789abcdef0123456789=\r\n\
                   abcdef0123456789abcdef\r\n";
        let (s, text) = summary("x", raw.as_bytes(), 1);
        assert_eq!(s.subject, "Hi");
        assert_eq!(s.from, "Back Office <no-reply@backoffice.local>");
        assert!(
            text.contains("set-password?token=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            "{text}"
        );
        assert!(mail_id("../../etc/passwd").is_none());
        assert!(mail_id("0f8fad5b-d9cb-469f-a165-70867728950e").is_some());
    }
}
