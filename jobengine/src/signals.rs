//! Graceful shutdown on SIGTERM and SIGINT, for binaries embedding workers.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGTERM or SIGINT (Ctrl-C). A second signal is
/// left to the default handler's successor: tokio keeps the handler installed, so
/// binaries that want "second Ctrl-C kills" should exit on their own timer.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
