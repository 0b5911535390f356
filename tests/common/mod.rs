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

    /// Waits for the logon, with or without the refresh token as `with_refresh_token` says.
    pub async fn logged_on(&mut self, within: Duration, with_refresh_token: bool) {
        self.expect(within, |e| {
            matches!(e, SessionEvent::LoggedOn { with_refresh_token: w } if *w == with_refresh_token)
        })
        .await;
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

/// A stand-in for systemd's notify socket (`$NOTIFY_SOCKET`): a datagram socket bound in a
/// temporary folder, whose messages the test reads.
pub struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// A notifier sending to this socket (no watchdog interval of its own).
    pub fn notifier(&self) -> zello_gateway::service::Notifier {
        zello_gateway::service::Notifier::connect(self.path.as_os_str()).unwrap()
    }

    /// Every message received since the last call, oldest first.
    pub fn received(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// Waits (in real time, up to `within`) for a message for which `pred` holds, returning
    /// it and every message before it.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let fresh = self.received();
            let found = fresh.iter().any(|m| pred(m));
            seen.extend(fresh);
            if found {
                return seen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no matching notify message within {within:?}; got {seen:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The Zello Work API emulator and clients logged on to it.
pub mod work {
    use std::time::Duration;
    use zello_gateway::secret::Secret;
    use zello_gateway::work::sim::{WorkSeed, WorkSim, WorkSimConfig, WorkSimHandle};
    use zello_gateway::work::{ClientOptions, WorkClient};

    /// The demo network's API key and admin.
    pub const API_KEY: &str = "sim-api-key";
    pub const ADMIN: &str = "admin";
    pub const ADMIN_PASSWORD: &str = "admin";

    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The demo network on a free loopback port; media ready after `media_steps` polls.
    pub async fn sim(media_steps: u32) -> WorkSimHandle {
        let data = WorkSeed::demo()
            .build(now(), std::path::Path::new("."))
            .unwrap();
        let config = WorkSimConfig {
            media_steps,
            ..WorkSimConfig::new(data)
        };
        WorkSim::start("127.0.0.1:0".parse().unwrap(), config)
            .await
            .expect("the Zello Work emulator starts")
    }

    /// Quick retries and polls for tests.
    pub fn options() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(10),
            media_poll_timeout: Duration::from_secs(10),
            media_poll_interval: Duration::from_millis(5),
            media_wait: Duration::from_secs(30),
            retries: 3,
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            ca_file: None,
        }
    }

    /// A client logged on as the demo network's admin.
    pub async fn admin(sim: &WorkSimHandle) -> WorkClient {
        let mut c = WorkClient::new(&sim.url(), options()).unwrap();
        c.login(ADMIN, &Secret::new(ADMIN_PASSWORD), &Secret::new(API_KEY))
            .await
            .expect("the admin logs in");
        c
    }
}

/// A child process killed when the test ends, also when it fails.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Hamlib's rigctld with its dummy rig (`-m 1 -P RIG`: it keys through CAT) on `port`, once
/// it answers; and its address.
pub fn start_rigctld_on(port: u16) -> (Reaped, String) {
    let child = std::process::Command::new("rigctld")
        .args(["-m", "1", "-P", "RIG", "-T", "127.0.0.1", "-t"])
        .arg(port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start rigctld ({e}): run scripts/deps.sh (it installs libhamlib-utils)")
        });
    let rig = Reaped(child);
    let address = format!("127.0.0.1:{port}");
    let start = std::time::Instant::now();
    while zello_gateway::radio::rigctld::read_ptt(&address).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rigctld did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (rig, address)
}

/// [`start_rigctld_on`] a free port.
pub fn start_rigctld() -> (Reaped, String) {
    start_rigctld_on(free_port())
}

/// Log lines written through a test's own subscriber ([`Captured::start`]), or through any
/// subscriber given it as its writer.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures what this thread logs, at debug and above, until the guard is dropped (a
    /// paused-clock runtime runs every task on the test's thread).
    pub fn start(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        )
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Everything captured so far, line by line.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }
}

/// Waits for the first gateway event `pred` accepts (a lag is skipped, not fatal).
pub async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<zello_gateway::gateway::GatewayEvent>,
    within: Duration,
    pred: impl Fn(&zello_gateway::gateway::GatewayEvent) -> bool,
) -> zello_gateway::gateway::GatewayEvent {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("observer closed: {e}"),
            }
        }
    })
    .await
    .expect("event in time")
}

/// Runs `scripts/pulse-test-env.sh`: the private PulseAudio server and the ALSA devices the
/// sound-card tests use (again after a test stopped the server).
pub fn setup_pulse() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pulse-test-env.sh");
    let status = std::process::Command::new(script)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run scripts/pulse-test-env.sh");
    assert!(status.success(), "scripts/pulse-test-env.sh failed");
}
