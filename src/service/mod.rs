//! Running as a systemd service: readiness and status ([`notify`]), the watchdog fed only
//! while every part of the gateway makes progress ([`watchdog`]), and where log lines go
//! ([`logging`]).
//!
//! How the daemon uses it:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use zello_gateway::service::{logging, Liveness, Notifier, Watchdog};
//! use tokio_util::sync::CancellationToken;
//!
//! logging::init(None)?;
//! let shutdown = CancellationToken::new();
//! let liveness = Liveness::new();
//! let session_beat = liveness.register("zello session"); // beats from its loop
//! let notifier = Notifier::from_env()?;
//! if let Some(n) = &notifier {
//!     if let Some(interval) = n.watchdog_interval() {
//!         let watchdog = Watchdog::new(n.clone(), liveness.clone(), interval);
//!         tokio::spawn(watchdog.run(shutdown.clone()));
//!     }
//!     n.ready()?;
//!     n.status("channel Dispatch online")?;
//! }
//! // ... run until shutdown ...
//! if let Some(n) = &notifier {
//!     n.stopping()?;
//! }
//! # drop(session_beat);
//! # Ok(())
//! # }
//! ```

pub mod logging;
pub mod notify;
pub mod slack;
pub mod watchdog;

pub use notify::{Notifier, NotifyError};
pub use watchdog::{Health, Heartbeat, Liveness, Watchdog};

/// The tokio runtime the program's commands run on, the daemon first; `zello-gateway bench`
/// runs its gateways on the same kind.
///
/// One thread: the Zello session, the router and every radio's bridge run on the thread
/// that starts the runtime. A packet from a codec thread then wakes that one thread, which
/// carries it through the bridge and the session to the socket, and a packet from the
/// socket reaches the codec thread's queue without waking another thread. (With worker
/// threads, tokio wakes a second one for most hand-offs; each wake-up costs tens of
/// microseconds on a small machine.) So nothing that blocks runs on it: each radio's PTT
/// line is keyed, checked and read back on a thread of its own (`gateway::ptt_thread`), and
/// hardware opens while the gateway runs go to tokio's blocking threads. `bench
/// --runtime-workers 1|2` measures the multi-thread runtime beside it (docs/performance.md).
pub fn runtime_builder() -> tokio::runtime::Builder {
    runtime_builder_with(0)
}

/// The daemon's runtime with `workers` worker threads instead (0: the current-thread
/// runtime [`runtime_builder`] gives), for `bench --runtime-workers` to compare the two.
pub fn runtime_builder_with(workers: usize) -> tokio::runtime::Builder {
    let mut builder = if workers == 0 {
        let mut b = tokio::runtime::Builder::new_current_thread();
        // Slack timers (the status API's LEVELs) ride on the wake-ups the thread makes
        // anyway. Not with worker threads: a task woken there just before a worker parks
        // goes to the shared queue and wakes another worker, the cost it would save.
        b.on_thread_park(slack::on_park);
        b
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all();
    builder
}

/// A file named `name` in the service's state directory (`$STATE_DIRECTORY`, set by
/// systemd's `StateDirectory=`: `/var/lib/zello-gateway`), or `None` when run by hand.
pub fn state_file(name: &str) -> Option<std::path::PathBuf> {
    let dirs = std::env::var_os("STATE_DIRECTORY")?;
    let first = dirs.to_str()?.split(':').next()?.trim();
    (!first.is_empty()).then(|| std::path::Path::new(first).join(name))
}

/// Writes `contents` to `path` so that it is never seen half-written and only its owner can
/// read it: to a temporary file beside it (mode 0600), synced, then renamed over `path`.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
