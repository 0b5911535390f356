//! The processes the device phase starts: the gateway itself (`run --config`), players that
//! feed the capture device's source (`pacat`), and the plain ALSA client it is compared with
//! (`arecord`). Each is stopped, by its own process id, when its handle is dropped.

use crate::bench::BenchError;
use crate::bench::rig::lock;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a player or recorder must stay up after starting to count as started.
const START_CHECK: Duration = Duration::from_millis(300);

/// A child process, stopped with SIGTERM (then SIGKILL) when dropped.
pub(crate) struct Spawned {
    what: String,
    child: Option<Child>,
}

impl Spawned {
    /// Starts `command`; a program that is not installed is [`BenchError::Tool`].
    fn start(what: &str, mut command: Command, package: &'static str) -> Result<Self, BenchError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BenchError::Tool {
                    tool: program,
                    package,
                }
            } else {
                BenchError::Setup {
                    what: what.into(),
                    message: e.to_string(),
                }
            }
        })?;
        Ok(Spawned {
            what: what.into(),
            child: Some(child),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `None` while it runs, else how it ended.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Fails, with what it wrote on stderr, if it has already ended.
    fn check_running(&mut self, hint: &str) -> Result<(), BenchError> {
        std::thread::sleep(START_CHECK);
        let Some(status) = self.exited() else {
            return Ok(());
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.as_mut().and_then(|c| c.stderr.take()) {
            let _ = e.read_to_string(&mut err);
        }
        Err(BenchError::Setup {
            what: self.what.clone(),
            message: format!("it ended at once ({status}): {}; {hint}", err.trim()),
        })
    }

    /// Asks it to stop (SIGTERM), and kills it after `grace`.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill only sends a signal, to our own child, which we have not
                // reaped (try_wait said it runs), so the id is still its own.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + grace;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Where `pacat` finds the PulseAudio server: `$PULSE_SERVER` when set, else the test
/// server of `scripts/pulse-test-env.sh` (`$ZELLO_PULSE_SOCKET` or
/// `/tmp/zello-gateway-pulse-<uid>/native`) when its socket exists.
pub(crate) fn pulse_server() -> Option<String> {
    if let Some(s) = std::env::var_os("PULSE_SERVER").filter(|s| !s.is_empty()) {
        return Some(s.to_string_lossy().into_owned());
    }
    let socket = std::env::var("ZELLO_PULSE_SOCKET").unwrap_or_else(|_| {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        format!("/tmp/zello-gateway-pulse-{uid}/native")
    });
    Path::new(&socket)
        .exists()
        .then(|| format!("unix:{socket}"))
}

/// What a player plays.
pub(crate) enum Feed<'a> {
    /// Silence for as long as it runs.
    Silence,
    /// A raw file (16 bit little-endian mono at the card's rate), once; then it ends.
    File(&'a Path),
}

/// `pacat` playing into the PulseAudio sink `sink` (the capture device's source is its
/// monitor), asking the server for `latency_ms` of latency: a large latency makes the
/// server move audio in large blocks, a small one in small blocks, for every client of the
/// sink.
pub(crate) fn feeder(
    sink: &str,
    rate: u32,
    latency_ms: u32,
    feed: Feed<'_>,
) -> Result<Spawned, BenchError> {
    let input = match feed {
        Feed::Silence => std::fs::File::open("/dev/zero"),
        Feed::File(path) => std::fs::File::open(path),
    }
    .map_err(|e| BenchError::Setup {
        what: "the player".into(),
        message: e.to_string(),
    })?;
    let mut command = Command::new("pacat");
    command
        .arg("--playback")
        .arg(format!("--device={sink}"))
        .args(["--format=s16le", "--channels=1", "--raw"])
        .arg(format!("--rate={rate}"))
        .arg(format!("--latency-msec={latency_ms}"))
        .arg("--client-name=zello-gateway bench")
        .stdin(input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(server) = pulse_server() {
        command.env("PULSE_SERVER", server);
    }
    let mut p = Spawned::start(
        &format!("pacat into {sink} ({latency_ms} ms latency)"),
        command,
        "pulseaudio-utils",
    )?;
    if matches!(feed, Feed::Silence) {
        p.check_running(&format!(
            "is the PulseAudio sink {sink} there? run scripts/pulse-test-env.sh"
        ))?;
    }
    Ok(p)
}

/// `arecord` reading `device` at `rate`, mono, 16 bit, with the given period and buffer,
/// into nothing.
pub(crate) fn recorder(
    device: &str,
    rate: u32,
    period_us: u64,
    buffer_us: u64,
) -> Result<Spawned, BenchError> {
    let mut command = Command::new("arecord");
    command
        .args(["-q", "-D", device, "-f", "S16_LE", "-c", "1", "-t", "raw"])
        .arg(format!("-r{rate}"))
        .arg(format!("--period-time={period_us}"))
        .arg(format!("--buffer-time={buffer_us}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Spawned::start(&format!("arecord on {device}"), command, "alsa-utils")?;
    p.check_running("run scripts/pulse-test-env.sh, or name a device that exists")?;
    Ok(p)
}

/// Lines a process wrote on stderr, each with when it was read.
pub(crate) type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// The gateway, started as `zello-gateway run --config FILE` with `RUST_LOG=info`, its log
/// collected line by line.
pub(crate) struct GatewayChild {
    pub(crate) process: Spawned,
    lines: Lines,
    reader: Option<JoinHandle<()>>,
}

impl GatewayChild {
    pub(crate) fn start(exe: &Path, config: &Path) -> Result<GatewayChild, BenchError> {
        let mut command = Command::new(exe);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Log to stderr, not journald; no systemd notifications or state of a service.
        for var in [
            "JOURNAL_STREAM",
            "INVOCATION_ID",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "STATE_DIRECTORY",
            "NO_COLOR",
        ] {
            command.env_remove(var);
        }
        let mut process = Spawned::start(
            &format!("the gateway ({})", exe.display()),
            command,
            "zello-gateway",
        )?;
        let lines: Lines = Arc::default();
        let stderr = process
            .child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .ok_or_else(|| BenchError::Setup {
                what: "the gateway's log".into(),
                message: "no stderr pipe".into(),
            })?;
        let reader = {
            let lines = lines.clone();
            std::thread::Builder::new()
                .name("bench-gw-log".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        lock(&lines).push((Instant::now(), line));
                    }
                })
                .map_err(|e| BenchError::Setup {
                    what: "the gateway's log reader".into(),
                    message: e.to_string(),
                })?
        };
        Ok(GatewayChild {
            process,
            lines,
            reader: Some(reader),
        })
    }

    /// The first line containing `text` read at or after `since`.
    pub(crate) fn line_since(&self, since: Instant, text: &str) -> Option<(Instant, String)> {
        lock(&self.lines)
            .iter()
            .find(|(at, l)| *at >= since && l.contains(text))
            .cloned()
    }

    /// The first line for which `pick` gives something.
    pub(crate) fn find_map<T>(&self, pick: impl Fn(&str) -> Option<T>) -> Option<T> {
        lock(&self.lines).iter().find_map(|(_, l)| pick(l))
    }

    /// The last `n` lines, for error messages.
    pub(crate) fn tail(&self, n: usize) -> String {
        let lines = lock(&self.lines);
        let start = lines.len().saturating_sub(n);
        lines[start..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the gateway (SIGTERM, as systemd does) and the log reader.
    pub(crate) fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for GatewayChild {
    fn drop(&mut self) {
        self.stop();
    }
}
