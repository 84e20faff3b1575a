//! The browser's gRPC-web client. Only compiled into the hydrated build; on the
//! server the functions do nothing (pages render placeholders there).

use proto::jobs::v1::JobCounts;

/// Follows `JobService.WatchCounts`, calling `on_counts` per message and
/// `on_error` when the stream fails; reconnects after a pause.
#[cfg(feature = "hydrate")]
pub fn watch_counts(on_counts: impl Fn(JobCounts) + 'static, on_error: impl Fn(String) + 'static) {
    use proto::jobs::v1::WatchCountsRequest;
    use proto::jobs::v1::job_service_client::JobServiceClient;

    leptos::task::spawn_local(async move {
        let origin = leptos::prelude::window().location().origin().unwrap_or_default();
        loop {
            let mut client = JobServiceClient::new(tonic_web_wasm_client::Client::new(origin.clone()));
            match client.watch_counts(WatchCountsRequest { interval_ms: 500 }).await {
                Ok(resp) => {
                    let mut stream = resp.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(c)) => on_counts(c),
                            Ok(None) => break,
                            Err(status) => {
                                on_error(format!("live updates interrupted: {}", status.message()));
                                break;
                            }
                        }
                    }
                }
                Err(status) => on_error(format!("cannot follow jobs: {}", status.message())),
            }
            sleep_ms(2000).await;
        }
    });
}

#[cfg(feature = "hydrate")]
async fn sleep_ms(ms: i32) {
    let promise = leptos::web_sys::js_sys::Promise::new(&mut |resolve, _| {
        let _ = leptos::prelude::window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Server side: nothing to follow.
#[cfg(not(feature = "hydrate"))]
pub fn watch_counts(_on_counts: impl Fn(JobCounts) + 'static, _on_error: impl Fn(String) + 'static) {}
