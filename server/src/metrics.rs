//! `GET /metrics`: Prometheus text. Jobs by state and live workers come from the
//! database (the whole cluster); counters and histograms are this process's
//! (its embedded worker). Separate `worker` processes keep their own counters.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobengine::Jobs;

use crate::grpc::jobs::LIVE_WINDOW;

/// Renders the metrics; a database failure is a 503 so scrapers see the outage.
pub async fn handler(State(jobs): State<Jobs>) -> Response {
    let counts = jobs.counts().await;
    let workers = jobs.workers(LIVE_WINDOW.as_micros() as i64).await;
    match (counts, workers) {
        (Ok(c), Ok(w)) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            jobs.metrics().render(Some(&c), Some(w.len())),
        )
            .into_response(),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "metrics: cannot read the job store");
            (StatusCode::SERVICE_UNAVAILABLE, "job store unavailable\n").into_response()
        }
    }
}
