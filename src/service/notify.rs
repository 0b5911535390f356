//! The systemd notify protocol (`sd_notify(3)`), written out by hand: one datagram of
//! `VARIABLE=value` lines per message, sent to the socket systemd names in `$NOTIFY_SOCKET`.
//!
//! The unit runs the gateway with `Type=notify`, `NotifyAccess=main` and `WatchdogSec=30`:
//! systemd counts the service as started only after [`Notifier::ready`], shows the last
//! [`Notifier::status`] in `systemctl status zello-gateway`, and restarts the gateway when no
//! [`Notifier::watchdog`] arrives within `WatchdogSec` (the [`Watchdog`](super::Watchdog) task
//! sends them only while every part of the gateway makes progress).
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) there is no notifier and nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

/// How long one message may wait for room in systemd's socket queue before it is given up.
/// systemd reads its notify socket promptly; a full queue means it is busy, and a watchdog
/// ping that misses is followed by the next one.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why talking to systemd did not work.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` does not name a socket this gateway can use.
    #[error(
        "NOTIFY_SOCKET={value:?}: {reason} (systemd sets it for Type=notify services; unset it when running the gateway by hand)"
    )]
    BadSocket {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No socket could be created.
    #[error(
        "cannot create a socket to talk to systemd: {0} (the system is short of file descriptors or memory)"
    )]
    Socket(#[source] io::Error),
    /// systemd did not take a message.
    #[error(
        "cannot send {message} to systemd at {socket}: {source} (is the service still starting or stopping? check `systemctl status zello-gateway`)"
    )]
    Send {
        /// The first line of the message (`READY=1`, `WATCHDOG=1`, ...).
        message: String,
        /// The socket it went to.
        socket: String,
        /// The error from the kernel.
        source: io::Error,
    },
    /// `$WATCHDOG_USEC` or `$WATCHDOG_PID` is not a number.
    #[error(
        "{variable}={value:?} is not a number (systemd sets it from WatchdogSec=; unset it when running the gateway by hand)"
    )]
    BadWatchdog {
        /// `WATCHDOG_USEC` or `WATCHDOG_PID`.
        variable: &'static str,
        /// Its value.
        value: String,
    },
}

/// A connection to systemd's notify socket. Cheap to clone: clones share one socket.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    socket: UnixDatagram,
    address: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for messages.
    label: String,
    watchdog: Option<Duration>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("socket", &self.inner.label)
            .field("watchdog", &self.inner.watchdog)
            .finish()
    }
}

impl Notifier {
    /// The notifier for this process: `Ok(None)` when not started by systemd as a notify
    /// service (`$NOTIFY_SOCKET` unset or empty). The watchdog interval comes from
    /// `$WATCHDOG_USEC`, and only when `$WATCHDOG_PID` is unset or names this process.
    ///
    /// The variables are left in the environment (changing the environment of a running
    /// multi-threaded process is unsound); the gateway starts no child processes that could
    /// mistake them for their own.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        Self::from_values(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// [`Notifier::from_env`] on given values, so it can be tested without touching the
    /// process environment.
    fn from_values(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        pid: u32,
    ) -> Result<Option<Notifier>, NotifyError> {
        let Some(address) = notify_socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let watchdog = watchdog_interval_from(watchdog_usec, watchdog_pid, pid)?;
        let mut notifier = Self::connect(address)?;
        if let Some(inner) = Arc::get_mut(&mut notifier.inner) {
            inner.watchdog = watchdog;
        }
        Ok(Some(notifier))
    }

    /// A notifier sending to `address`: an absolute socket path, or `@name` for a Linux
    /// abstract socket (the two forms `$NOTIFY_SOCKET` takes). It has no watchdog interval.
    pub fn connect(address: &OsStr) -> Result<Notifier, NotifyError> {
        let label = address.to_string_lossy().into_owned();
        let bad = |reason: String| NotifyError::BadSocket {
            value: label.clone(),
            reason,
        };
        let bytes = address.as_bytes();
        let address = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(address)
                .map_err(|e| bad(format!("not a usable socket path: {e}")))?,
            Some(b'@') => abstract_address(&bytes[1..]).map_err(|e| bad(e.to_string()))?,
            _ => {
                return Err(bad(
                    "must be an absolute path or @name of a Unix datagram socket".into(),
                ));
            }
        };
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(NotifyError::Socket)?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                socket,
                address,
                label,
                watchdog: None,
            }),
        })
    }

    /// How often systemd expects [`Notifier::watchdog`] (`WatchdogSec=`), if it watches this
    /// process. Ping at least twice as often.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.watchdog
    }

    /// Startup is complete: systemd marks the service started and starts units ordered after
    /// it. `READY=1`.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send("READY=1")
    }

    /// A one-line status shown by `systemctl status` (`STATUS=...`). Line breaks are replaced
    /// by spaces: each line of a notify message is a separate assignment.
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        self.send(&format!("STATUS={}", one_line(text)))
    }

    /// Keep-alive for systemd's watchdog. `WATCHDOG=1`.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// The gateway is shutting down (`STOPPING=1`), so systemd does not take a slow stop for
    /// a hang.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }

    /// The gateway is reloading its configuration. Sends `RELOADING=1` with
    /// `MONOTONIC_USEC=` (CLOCK_MONOTONIC now, as systemd requires for `Type=notify-reload`
    /// and to tell this reload from an earlier one); send [`Notifier::ready`] when done.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// Sends one raw message: newline-separated `VARIABLE=value` assignments (see
    /// `sd_notify(3)`), for the ones without a method here (`EXTEND_TIMEOUT_USEC=...`).
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        let inner = &*self.inner;
        inner
            .socket
            .send_to_addr(message.as_bytes(), &inner.address)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                message: message.lines().next().unwrap_or_default().to_string(),
                socket: inner.label.clone(),
                source,
            })
    }
}

/// The address of a Linux abstract socket.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

/// Abstract sockets exist on Linux only.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets (@name) exist on Linux only",
    ))
}

/// The watchdog interval systemd asks of process `pid`: `WATCHDOG_USEC` microseconds, unless
/// `WATCHDOG_PID` names another process. Zero means no watchdog.
fn watchdog_interval_from(
    usec: Option<&OsStr>,
    watchdog_pid: Option<&OsStr>,
    pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let number = |variable: &'static str, value: &OsStr| {
        value
            .to_str()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| NotifyError::BadWatchdog {
                variable,
                value: value.to_string_lossy().into_owned(),
            })
    };
    let Some(usec) = usec.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let usec = number("WATCHDOG_USEC", usec)?;
    if let Some(p) = watchdog_pid.filter(|v| !v.is_empty())
        && number("WATCHDOG_PID", p)? != u64::from(pid)
    {
        return Ok(None);
    }
    Ok((usec > 0).then(|| Duration::from_micros(usec)))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd's `MONOTONIC_USEC` is measured on.
fn monotonic_usec() -> u64 {
    // SAFETY: a timespec is plain integers, for which all zeroes is a valid value (zeroed
    // rather than a struct literal: some 32-bit targets add padding fields).
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

/// `text` with line breaks turned into spaces.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::ffi::OsString;

    /// A stand-in for systemd's notify socket: a datagram socket bound in a temporary folder.
    pub(crate) struct FakeSystemd {
        socket: UnixDatagram,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    impl FakeSystemd {
        pub(crate) fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_nonblocking(true).unwrap();
            FakeSystemd {
                socket,
                path,
                _dir: dir,
            }
        }

        pub(crate) fn notifier(&self) -> Notifier {
            Notifier::connect(self.path.as_os_str()).unwrap()
        }

        /// Every message received so far, oldest first.
        pub(crate) fn received(&self) -> Vec<String> {
            drain(&self.socket)
        }
    }

    fn drain(socket: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn sends_exactly_the_protocol_messages() {
        let systemd = FakeSystemd::new();
        let n = systemd.notifier();
        n.ready().unwrap();
        n.status("2 radios, channel \"Dispatch\" online").unwrap();
        n.status("line one\nREADY=1").unwrap();
        n.watchdog().unwrap();
        n.stopping().unwrap();
        assert_eq!(
            systemd.received(),
            [
                "READY=1",
                "STATUS=2 radios, channel \"Dispatch\" online",
                "STATUS=line one READY=1",
                "WATCHDOG=1",
                "STOPPING=1",
            ]
        );
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let systemd = FakeSystemd::new();
        let before = monotonic_usec();
        systemd.notifier().reloading().unwrap();
        let after = monotonic_usec();
        let got = systemd.received();
        assert_eq!(got.len(), 1, "{got:?}");
        let (first, second) = got[0].split_once('\n').unwrap();
        assert_eq!(first, "RELOADING=1");
        let usec: u64 = second
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before > 0 && (before..=after).contains(&usec), "{usec}");
    }

    #[test]
    fn abstract_socket_names() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("zello-gateway-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        receiver.set_nonblocking(true).unwrap();
        let n = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready().unwrap();
        assert_eq!(drain(&receiver), ["READY=1"]);
    }

    #[test]
    fn environment_values() {
        let systemd = FakeSystemd::new();
        let socket = systemd.path.as_os_str();
        let os = |s: &str| OsString::from(s);
        // Not under systemd.
        assert!(
            Notifier::from_values(None, None, None, 7)
                .unwrap()
                .is_none()
        );
        assert!(
            Notifier::from_values(Some(&os("")), None, None, 7)
                .unwrap()
                .is_none()
        );
        // Under systemd, with and without a watchdog for this process.
        let n = Notifier::from_values(Some(socket), None, None, 7)
            .unwrap()
            .unwrap();
        assert_eq!(n.watchdog_interval(), None);
        n.ready().unwrap();
        assert_eq!(systemd.received(), ["READY=1"]);
        let interval = |usec: &str, pid: Option<&str>| {
            Notifier::from_values(Some(socket), Some(&os(usec)), pid.map(os).as_deref(), 7)
                .map(|n| n.unwrap().watchdog_interval())
        };
        assert_eq!(
            interval("30000000", None).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            interval("30000000", Some("7")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(interval("30000000", Some("8")).unwrap(), None);
        assert_eq!(interval("0", None).unwrap(), None);
        let e = interval("thirty", None).unwrap_err();
        assert!(e.to_string().contains("WATCHDOG_USEC=\"thirty\""), "{e}");
        let e = interval("30000000", Some("me")).unwrap_err();
        assert!(e.to_string().contains("WATCHDOG_PID"), "{e}");
    }

    #[test]
    fn bad_addresses_and_absent_listeners_are_errors() {
        for bad in ["run/notify", "vsock:2:1234"] {
            let e = Notifier::connect(OsStr::new(bad)).unwrap_err();
            assert!(matches!(e, NotifyError::BadSocket { .. }), "{e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nobody-listens");
        let n = Notifier::connect(gone.as_os_str()).unwrap();
        let e = n.ready().unwrap_err();
        assert!(e.to_string().contains("READY=1"), "{e}");
        assert!(e.to_string().contains("nobody-listens"), "{e}");
    }
}
