//! `notifications.v1.NotificationService`: the signed-in user's toasts.
//!
//! `Subscribe` identifies the caller by the session (cookie or bearer), replays
//! their unacknowledged notifications (after `resume_after` when given), then
//! streams new ones as the [`Hub`] wakes it. Every [`HEARTBEAT`] an idle stream
//! sends a heartbeat so proxies keep it open. The stream ends when the session is
//! revoked (logout, on any server), when it expires, when the server shuts down,
//! or when the client goes away. It has no buffer of its own: each message waits
//! for the client's flow control, and only rows not yet sent are read.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backoffice::identity::{Identity, secret_hash};
use backoffice::notify::{Notification, Notifications};
use futures::Stream;
use jobengine::Clock;
use proto::notifications::v1 as pb;
use proto::notifications::v1::notification_service_server::NotificationService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::boundary::invalid_field;
use crate::caller::{Caller, Session};
use crate::grpc::status::status;
use crate::hub::Hub;

/// How often an idle stream sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Most ids one `Ack` takes.
pub const MAX_ACK: usize = 1000;

/// The service.
pub struct NotificationsGrpc {
    identity: Identity,
    notes: Notifications,
    hub: Arc<Hub>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
}

impl NotificationsGrpc {
    /// Serves the notifications in `notes` to sessions checked by `identity`,
    /// woken by `hub`; streams end when `shutdown` fires.
    pub fn new(
        identity: Identity,
        notes: Notifications,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Self {
        Self { identity, notes, hub, clock, shutdown }
    }
}

fn pb_kind(kind: &str) -> pb::Kind {
    match kind {
        "success" => pb::Kind::Success,
        "error" => pb::Kind::Error,
        "info" => pb::Kind::Info,
        _ => pb::Kind::Unspecified,
    }
}

fn pb_notification(n: &Notification) -> pb::SubscribeResponse {
    pb::SubscribeResponse {
        event: Some(pb::subscribe_response::Event::Notification(pb::Notification {
            id: n.id,
            kind: pb_kind(&n.kind).into(),
            title: n.title.clone(),
            body: n.body.clone(),
            link: n.link.clone(),
            created_at_unix_ms: n.created_at / 1000,
        })),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl NotificationService for NotificationsGrpc {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let Session { token, user, expires_at, .. } = Caller::of(&req).signed_in()?.clone();
        let resume_after = req.get_ref().resume_after;
        if resume_after < 0 {
            return Err(invalid_field("resume_after", "must not be negative"));
        }
        let reg = self.hub.register(&user.id, &secret_hash(&token));
        let (tx, rx) = mpsc::channel(1);
        let stream = Subscriber {
            identity: self.identity.clone(),
            notes: self.notes.clone(),
            clock: self.clock.clone(),
            shutdown: self.shutdown.clone(),
            token,
            user_id: user.id,
            expires_at,
            last: resume_after,
            tx,
        };
        tokio::spawn(stream.run(reg));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let user = Caller::of(&req).signed_in()?.user.clone();
        let ids = &req.get_ref().ids;
        if ids.len() > MAX_ACK {
            return Err(invalid_field("ids", format!("at most {MAX_ACK} at once, got {}", ids.len())));
        }
        let n = self.notes.ack(&user.id, ids, self.clock.now()).await.map_err(status)?;
        Ok(Response::new(pb::AckResponse { acknowledged: n as i64 }))
    }
}

/// One open stream.
struct Subscriber {
    identity: Identity,
    notes: Notifications,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    token: String,
    user_id: String,
    expires_at: i64,
    /// The last id sent.
    last: i64,
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
}

/// Why a stream stopped.
enum Stop {
    ClientGone,
    Ended(Status),
}

impl Subscriber {
    async fn run(mut self, reg: crate::hub::Registration) {
        let why = loop {
            if let Err(stop) = self.send_pending().await {
                break stop;
            }
            let until_expiry = Duration::from_micros((self.expires_at - self.clock.now()).max(0) as u64);
            tokio::select! {
                () = reg.wake.notified() => {
                    // A wake may follow a gap (listener reconnect) in which the
                    // session was revoked unseen: check it before sending more.
                    match self.identity.authenticate(&self.token).await {
                        Ok(Some(_)) => {}
                        Ok(None) => break Stop::Ended(Status::unauthenticated("your session has ended; sign in again")),
                        Err(e) => tracing::warn!(error = %e, "rechecking a stream's session"),
                    }
                }
                () = tokio::time::sleep(HEARTBEAT) => {
                    let beat = pb::SubscribeResponse {
                        event: Some(pb::subscribe_response::Event::Heartbeat(pb::Heartbeat {
                            server_time_unix_ms: self.clock.now() / 1000,
                        })),
                    };
                    if self.tx.send(Ok(beat)).await.is_err() {
                        break Stop::ClientGone;
                    }
                }
                () = tokio::time::sleep(until_expiry) => {
                    break Stop::Ended(Status::unauthenticated("your session has expired; sign in again"));
                }
                () = reg.end.cancelled() => break Stop::Ended(Status::unauthenticated("signed out")),
                () = self.shutdown.cancelled() => break Stop::Ended(Status::unavailable("the server is shutting down; reconnect")),
                () = self.tx.closed() => break Stop::ClientGone,
            }
        };
        if let Stop::Ended(s) = why {
            let _ = self.tx.send(Err(s)).await;
        }
    }

    /// Sends every pending notification after the last one sent.
    async fn send_pending(&mut self) -> Result<(), Stop> {
        loop {
            let rows = match self.notes.pending(&self.user_id, self.last).await {
                Ok(rows) => rows,
                Err(e) => {
                    // The database is away (a restart): the next wake or heartbeat
                    // tries again; nothing is lost, the rows wait in the table.
                    tracing::warn!(error = %e, "reading notifications for a stream");
                    return Ok(());
                }
            };
            let full = rows.len() as i64 == backoffice::notify::PAGE;
            for n in &rows {
                self.tx.send(Ok(pb_notification(n))).await.map_err(|_| Stop::ClientGone)?;
                self.last = n.id;
            }
            if !full {
                return Ok(());
            }
        }
    }
}
