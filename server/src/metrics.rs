//! `GET /metrics`: Prometheus text. Jobs by state and live workers come from the
//! database (the whole cluster); counters and histograms are this process's
//! (its embedded worker). Separate `worker` processes serve their own counters on
//! their `METRICS_ADDR`, with the same rendering ([`jobengine::metrics::scrape`]).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobengine::Jobs;

/// Renders the metrics; a database failure is a 503 so scrapers see the outage.
pub async fn handler(State(jobs): State<Jobs>) -> Response {
    match jobengine::metrics::scrape(&jobs).await {
        Ok(text) => ([(header::CONTENT_TYPE, jobengine::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot read the job store");
            (StatusCode::SERVICE_UNAVAILABLE, "job store unavailable\n").into_response()
        }
    }
}
