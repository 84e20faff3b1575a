//! Accepting connections with timeouts, so slow or silent clients cannot hold
//! sockets for ever (slowloris).
//!
//! `axum::serve` sets no timer: a client that sends a header a byte at a time,
//! or connects and sends nothing, keeps its socket open indefinitely (40 such
//! connections and 300 idle sockets were all still open after 40 s). This is
//! the same accept loop on hyper-util's connection builder, with:
//! - **a header timeout** ([`Timeouts::header`]): HTTP/1 must deliver each
//!   request head within it, counted from when the server starts waiting for
//!   one, so it is also the idle timeout of a kept-alive connection between
//!   requests (hyper's `header_read_timeout`);
//! - **a first-bytes deadline**: before hyper knows the protocol it reads the
//!   first bytes to tell HTTP/2's preface from HTTP/1, with no timer of its own;
//!   a connection that has not shown which protocol it speaks within the header
//!   timeout is closed (this loop watches the bytes go by);
//! - **HTTP/2 keep-alive pings** ([`Timeouts::idle`] apart, answered within the
//!   header timeout): a peer that stops answering is dropped, while live gRPC
//!   streams (which send heartbeats of their own) are untouched.
//!
//! Known limit: an HTTP/2 client that answers pings but opens no stream keeps its
//! connection (one socket, bounded by the listener's backlog and the OS).
//!
//! Each connection's requests carry its peer address as
//! `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info` did.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long connections may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For a request head (and the first bytes of a connection, and an HTTP/2
    /// ping's answer).
    pub header: Duration,
    /// Between HTTP/2 keep-alive pings.
    pub idle: Duration,
}

/// How long shutdown waits for open connections to finish their requests.
const DRAIN: Duration = Duration::from_secs(10);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A TCP stream that notes when the first bytes have shown the protocol: a
/// byte that departs from HTTP/2's preface (HTTP/1), or the whole preface.
struct Watched {
    io: TcpStream,
    /// Preface bytes matched so far.
    matched: usize,
    known: Arc<AtomicBool>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if !self.known.load(Ordering::Relaxed) {
            let new = buf.filled()[before..].to_vec();
            for b in new {
                if H2_PREFACE.get(self.matched) == Some(&b) {
                    self.matched += 1;
                    if self.matched == H2_PREFACE.len() {
                        self.known.store(true, Ordering::Relaxed);
                        break;
                    }
                } else {
                    self.known.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets open connections
/// finish their requests (at most [`DRAIN`]).
pub async fn serve(listener: TcpListener, app: Router, timeouts: Timeouts, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeouts.idle))
        .keep_alive_timeout(timeouts.header);
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors or a connection reset before accept:
                // the listener is fine; pause so a persistent error cannot spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(stream, peer, app.clone(), builder.clone(), timeouts, shutdown.clone()));
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open {DRAIN:?} after shutdown; closing them");
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let known = Arc::new(AtomicBool::new(false));
    let io = Watched { io: stream, matched: 0, known: known.clone() };
    let svc = tower::ServiceExt::map_request(app, move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    let first_bytes = tokio::time::sleep(timeouts.header);
    tokio::pin!(first_bytes);
    let (mut draining, mut first_checked) = (false, false);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut first_bytes, if !first_checked => {
                first_checked = true;
                if !known.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request within the header timeout; closing");
                    return;
                }
            }
            _ = shutdown.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}
