//! `GET /metrics`: Prometheus text. Jobs by state and live workers come from the
//! database (the whole cluster); counters and histograms are this process's
//! (its embedded worker). Separate `worker` processes serve their own counters on
//! their `METRICS_ADDR`, with the same rendering ([`jobengine::metrics::scrape`]).

use axum::extract::Request;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jobengine::Jobs;

/// Who may read `/metrics` (the `METRICS_TOKEN` setting). The counts name job
/// kinds, workers' host names and timings: not for the public internet.
#[derive(Debug, Clone)]
pub struct Access {
    /// The SHA-256 of the token `Authorization: Bearer` must carry; none: only
    /// direct loopback clients.
    token_hash: Option<String>,
}

impl Access {
    /// Access with `token` (or, with none, from this machine only).
    pub fn new(token: Option<&str>) -> Self {
        Self { token_hash: token.map(backoffice::identity::secret_hash) }
    }

    /// Whether the request may read the metrics: the right bearer token, or with
    /// no token set, a loopback peer that is not a proxy forwarding for someone.
    fn allows(&self, req: &Request) -> Result<(), StatusCode> {
        let h = req.headers();
        match &self.token_hash {
            Some(want) => {
                let sent = crate::caller::credential(h).filter(|c| c.via == crate::caller::Via::Bearer);
                // Hashes compared, so the time taken says nothing about the token.
                match sent {
                    Some(c) if backoffice::identity::secret_hash(&c.token) == *want => Ok(()),
                    _ => Err(StatusCode::UNAUTHORIZED),
                }
            }
            None => {
                let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|n| h.contains_key(*n));
                let local = crate::client::ip(req.extensions()).is_some_and(|ip| ip.is_loopback());
                if local && !forwarded { Ok(()) } else { Err(StatusCode::NOT_FOUND) }
            }
        }
    }
}

/// The layer in front of [`handler`]: 401 without the token when one is set;
/// 404 (as if there were nothing here) for remote clients when none is.
pub async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    match access.allows(&req) {
        Ok(()) => next.run(req).await,
        Err(StatusCode::UNAUTHORIZED) => {
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "send METRICS_TOKEN as a bearer token\n")
                .into_response()
        }
        Err(code) => code.into_response(),
    }
}

/// Renders the metrics; a database failure is a 503 so scrapers see the outage.
pub async fn handler(State(jobs): State<Jobs>) -> Response {
    match jobengine::metrics::scrape(&jobs).await {
        Ok(text) => ([(header::CONTENT_TYPE, jobengine::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            // A scrape every few seconds during an outage: its start and end are
            // logged once by the database layer.
            if e.is_outage() {
                tracing::debug!(error = %e, "metrics: cannot read the job store");
            } else {
                tracing::error!(error = %e, "metrics: cannot read the job store");
            }
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, "job store unavailable\n").into_response();
            crate::boundary::set_retry_after(resp.headers_mut(), crate::boundary::UNAVAILABLE_RETRY);
            resp
        }
    }
}
