//! Tests only: the test PostgreSQL server reached through a TCP forwarder that
//! a test can cut and restore, to play a server that goes away and comes back.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A forwarder from a local port to the server `TEST_DATABASE_URL` names.
pub(crate) struct Forwarder {
    port: u16,
    upstream: String,
    /// The accept loop and every forwarded connection, aborted by [`Forwarder::cut`].
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

/// `TEST_DATABASE_URL`.
pub(crate) fn test_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (cargo xtask test sets it)")
}

/// A port nothing listens on (the kernel's pick, released at once).
pub(crate) async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

impl Forwarder {
    /// A forwarder on a free port, not listening until [`Forwarder::restore`].
    pub(crate) async fn new() -> Self {
        let real: sqlx::postgres::PgConnectOptions = test_url().parse().expect("TEST_DATABASE_URL");
        Self {
            port: closed_port().await,
            upstream: format!("{}:{}", real.get_host(), real.get_port()),
            tasks: Arc::default(),
        }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `TEST_DATABASE_URL` with its host and port replaced by the forwarder's.
    pub(crate) fn url(&self) -> String {
        let url = test_url();
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (auth, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let user = auth.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}/{rest}", self.port)
    }

    /// Starts listening (again) and forwarding.
    pub(crate) async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the forwarder");
        let upstream = self.upstream.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let upstream = upstream.clone();
                let copy = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("tasks").push(copy.abort_handle());
            }
        });
        self.tasks.lock().expect("tasks").push(accept.abort_handle());
    }

    /// Stops listening and drops every forwarded connection: to the client,
    /// the server is gone (connections refused, open ones closed).
    pub(crate) fn cut(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}
