//! Shared helpers for the integration tests: an emulator on a loopback port and sessions
//! logged on to it.
#![allow(dead_code)]

use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zello_gateway::secret::Secret;
use zello_gateway::zello::session::{self, SessionConfig, SessionEvent, SessionHandle};
use zello_gateway::zello::sim::{SimConfig, SimHandle, SimServer};

pub const CHANNEL: &str = "Dispatch";

/// Starts an emulator on 127.0.0.1 with a free port.
pub async fn server(config: SimConfig) -> SimHandle {
    SimServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("emulator starts")
}

/// Session settings for `user` on `CHANNEL` of `server`.
pub fn config(server: &SimHandle, user: &str) -> SessionConfig {
    SessionConfig {
        server: server.url(),
        username: user.into(),
        password: Secret::new("pw"),
        channels: vec![CHANNEL.into()],
        ..SessionConfig::default()
    }
}

/// A running session and its events.
pub struct Client {
    pub handle: SessionHandle,
    pub events: mpsc::Receiver<SessionEvent>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Client {
    pub fn start(config: SessionConfig) -> Client {
        let stop = CancellationToken::new();
        let (handle, events, task) = session::spawn(config, stop.clone()).expect("session starts");
        Client {
            handle,
            events,
            stop,
            task,
        }
    }

    /// Starts and waits until `CHANNEL` is ready.
    pub async fn ready(config: SessionConfig) -> Client {
        let mut c = Client::start(config);
        c.expect(Duration::from_secs(10), |e| {
            matches!(e, SessionEvent::Channel { ready: true, .. })
        })
        .await;
        c
    }

    /// Waits for an event matching `pred`, skipping others; panics with what was seen if
    /// none comes in time.
    pub async fn expect(
        &mut self,
        within: Duration,
        pred: impl Fn(&SessionEvent) -> bool,
    ) -> SessionEvent {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(e)) => seen.push(format!("{e:?}")),
                Ok(None) => panic!("session ended; saw {seen:#?}"),
                Err(_) => panic!("no matching event within {within:?}; saw {seen:#?}"),
            }
        }
    }

    /// Collects every event for `within`.
    pub async fn collect(&mut self, within: Duration) -> Vec<SessionEvent> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(e);
        }
        out
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}
