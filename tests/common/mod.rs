//! What the integration tests set up again and again, by concern: the binary and its files
//! ([`cli`]), the Zello emulator, sessions and the gateway on it ([`emulator`]), Hamlib's
//! rigctld ([`rig`]), measurements on audio ([`signal`]), the Zello Work emulator ([`work`]),
//! a headless browser ([`webdriver`]);
//! here, what several of those use.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod cli;
pub mod emulator;
pub mod rig;
pub mod signal;
pub mod webdriver;
pub mod work;

pub use emulator::{CHANNEL, Client, config, server, wait_for};
pub use rig::{start_rigctld, start_rigctld_on};

use std::time::Duration;

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
