//! The listener, the shared server object and the handle tests hold.

use super::SimConfig;
use super::conn;
use super::faults::{FaultSettings, Faults};
use super::hub::{Hub, State};
use super::log::{SimEvent, SimLog, SimLogEntry};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Ping and pong counts of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// WebSocket Pings written to the client.
    pub pings_sent: u64,
    /// WebSocket Pongs read from the client.
    pub pongs_received: u64,
}

/// The server's shared parts.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    state: Mutex<State>,
    pub(crate) log: SimLog,
    faults: Mutex<FaultSettings>,
    /// `true` while channel status is held back.
    pub(crate) hold_status: watch::Sender<bool>,
    pub(crate) cancel: CancellationToken,
    tasks: TaskTracker,
    runtime: tokio::runtime::Handle,
    next_conn: AtomicU64,
}

impl Shared {
    /// Locks the state.
    pub(crate) fn hub(self: &Arc<Self>) -> Hub<'_> {
        Hub {
            st: self.state.lock().unwrap_or_else(|e| e.into_inner()),
            sh: self,
        }
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultSettings> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a task on the server's runtime, tracked for shutdown.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn_on(fut, &self.runtime);
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn log_event(&self, event: SimEvent) {
        self.log.push(event);
    }
}

/// The Zello Channel API emulator.
#[derive(Debug)]
pub struct SimServer;

impl SimServer {
    /// Binds `addr` (port 0 picks a free port) and serves on the current tokio runtime until
    /// [`SimHandle::shutdown`].
    pub async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            log: SimLog::default(),
            faults: Mutex::new(FaultSettings::default()),
            hold_status: watch::Sender::new(false),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
            next_conn: AtomicU64::new(0),
        });
        shared.spawn(accept_loop(Arc::clone(&shared), listener, tls));
        tracing::debug!(%local_addr, "Zello emulator listening");
        Ok(SimHandle {
            faults: Faults::new(Arc::clone(&shared)),
            shared,
            local_addr,
        })
    }
}

async fn accept_loop(
    sh: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let accepted = tokio::select! {
            _ = sh.cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let id = sh.next_conn_id();
                sh.spawn(conn::serve_tcp(Arc::clone(&sh), tcp, peer, id, tls.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = sh.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// A running emulator. Clones share the same server.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    faults: Faults,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL to connect to: `ws://127.0.0.1:PORT/ws`, or
    /// `wss://localhost:PORT/ws` with TLS (the name a local certificate is made for).
    pub fn url(&self) -> String {
        let port = self.local_addr.port();
        let ip = self.local_addr.ip();
        let local = ip.is_loopback() || ip.is_unspecified();
        match (&self.shared.config.tls, local) {
            (Some(_), true) => format!("wss://localhost:{port}/ws"),
            (Some(_), false) => format!("wss://{}/ws", self.local_addr),
            (None, true) => {
                let ip = match ip {
                    IpAddr::V6(v6) if !v6.is_unspecified() => IpAddr::V6(v6),
                    _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
                };
                format!("ws://{}/ws", SocketAddr::new(ip, port))
            }
            (None, false) => format!("ws://{}/ws", self.local_addr),
        }
    }

    /// The fault knobs.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Everything logged so far (the last 10 000
    /// entries), oldest first.
    pub fn log(&self) -> Vec<SimLogEntry> {
        self.shared.log.snapshot()
    }

    /// The entries of [`SimHandle::log`] whose index is `next` or more, oldest first: what
    /// happened since the caller last looked, without copying the whole log each time.
    pub fn log_since(&self, next: u64) -> Vec<SimLogEntry> {
        self.shared.log.since(next)
    }

    /// Just the events of [`SimHandle::log`].
    pub fn events(&self) -> Vec<SimEvent> {
        self.log().into_iter().map(|e| e.event).collect()
    }

    /// Waits until an event matching `pred` is in the log (returning its entry), or `None`
    /// after `timeout` (on tokio's clock).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&SimEvent) -> bool,
    ) -> Option<SimLogEntry> {
        let wait = async {
            loop {
                let changed = self.shared.log.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if let Some(entry) = self.shared.log.find(&pred) {
                    return entry;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// The users online in `channel`, sorted (the echo user included when it is on).
    pub fn online_users(&self, channel: &str) -> Vec<String> {
        self.shared.hub().online_users(channel)
    }

    /// Ping and pong counts of `user`'s current connection.
    pub fn stats(&self, user: &str) -> Option<ConnStats> {
        self.shared.hub().stats(user)
    }

    /// Stops accepting, closes every connection (close code 1001) and stops the echo replays.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
    }

    /// Waits up to `timeout` for every task of the server to end after
    /// [`SimHandle::shutdown`]; returns whether they all did.
    pub async fn closed(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.shared.tasks.wait())
            .await
            .is_ok()
    }
}
