//! Serial-port modem-control lines: PTT on RTS and/or DTR, carrier detect on CTS, DSR or
//! DCD (DigiRig, AIOC, homebrew interfaces on a USB-serial adapter).
//!
//! # `lines`: which outputs key the transmitter
//! Each entry names an output line, `"RTS"` or `"DTR"` (any case), that follows the
//! transmitter: on (asserted) while keyed, off while unkeyed. A leading `!` inverts it: off
//! while keyed, on while unkeyed. Entries are applied in the order given, both when keying
//! and when unkeying. A line may appear once. Examples: `["RTS"]` (DigiRig), `["DTR"]`,
//! `["DTR", "!RTS"]` (AIOC, which keys on DTR on with RTS off).
//!
//! # Opening
//! Linux asserts DTR and RTS whenever a serial port is opened, which can key a radio. Right
//! after opening, before anything else, every line a PTT lists is set to its unkeyed level
//! (in the listed order), and every output line no PTT lists is turned off. This runs again
//! after every reopen.
//!
//! A port used by both a PTT and a carrier detect is opened once and shared (see
//! [`PortRegistry`]). Open the PTT first so its unkeyed levels are known when the port opens:
//! a carrier detect that opens a port on its own turns both output lines off.
//!
//! # Unplugged adapters
//! A failed write or read closes the port. The PTT reopens it on its next `set`; the carrier
//! detect retries once a second, reporting an error meanwhile.
//!
//! # Closing
//! The port is closed once nothing uses it; the kernel then drops DTR and RTS (HUPCL).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd as _, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use super::polled::{LineState, PolledCarrier};
use super::{Fault, Ptt, RadioError};
use crate::audio::debug_fields;
use crate::sync::lock;

/// The modem-control lines of a serial port.
pub trait ModemLines: Send {
    /// Asserts (`true`) or clears RTS.
    fn set_rts(&mut self, on: bool) -> io::Result<()>;
    /// Asserts (`true`) or clears DTR.
    fn set_dtr(&mut self, on: bool) -> io::Result<()>;
    /// Whether CTS is asserted.
    fn cts(&mut self) -> io::Result<bool>;
    /// Whether DSR is asserted.
    fn dsr(&mut self) -> io::Result<bool>;
    /// Whether DCD is asserted.
    fn dcd(&mut self) -> io::Result<bool>;
}

/// An I/O error from a modem-line call of `port`.
fn line_error(port: &serialport::TTYPort, e: serialport::Error) -> io::Error {
    if e.kind == serialport::ErrorKind::Unknown && !has_modem_lines(port.as_raw_fd()) {
        return io::Error::new(
            io::ErrorKind::Unsupported,
            "this port has no modem-control lines",
        );
    }
    io::Error::from(e)
}

/// Whether the modem-control ioctls work on `fd`: they fail with ENOTTY on a
/// pseudo-terminal, or with a driver without them.
fn has_modem_lines(fd: RawFd) -> bool {
    let mut bits: libc::c_int = 0;
    // SAFETY: TIOCMGET writes one c_int through the pointer, valid for the whole call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCMGET, &mut bits) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOTTY)
}

/// Whether `device` opens but is no terminal (ENOTTY): a character device that is not a
/// serial port.
fn not_a_terminal(device: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(device)
    else {
        return false;
    };
    // SAFETY: the descriptor stays open for the whole call.
    let tty = unsafe { libc::isatty(file.as_raw_fd()) } == 1;
    !tty && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTTY)
}

impl ModemLines for serialport::TTYPort {
    fn set_rts(&mut self, on: bool) -> io::Result<()> {
        serialport::SerialPort::write_request_to_send(self, on).map_err(|e| line_error(self, e))
    }

    fn set_dtr(&mut self, on: bool) -> io::Result<()> {
        serialport::SerialPort::write_data_terminal_ready(self, on).map_err(|e| line_error(self, e))
    }

    fn cts(&mut self) -> io::Result<bool> {
        serialport::SerialPort::read_clear_to_send(self).map_err(|e| line_error(self, e))
    }

    fn dsr(&mut self) -> io::Result<bool> {
        serialport::SerialPort::read_data_set_ready(self).map_err(|e| line_error(self, e))
    }

    fn dcd(&mut self) -> io::Result<bool> {
        serialport::SerialPort::read_carrier_detect(self).map_err(|e| line_error(self, e))
    }
}

/// `ptt = { type = "serial", device = "/dev/ttyUSB0", lines = ["RTS"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialPttSettings {
    /// The serial device; prefer the stable names in `/dev/serial/by-id/`.
    pub device: PathBuf,
    /// The lines that key the transmitter (see the module documentation).
    pub lines: Vec<String>,
}

/// `carrier = { type = "serial", device = "/dev/ttyUSB0", line = "CTS" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialCarrierSettings {
    /// The serial device.
    pub device: PathBuf,
    /// The input line: "CTS", "DSR" or "DCD" (any case).
    pub line: String,
    /// Carrier is up while the line is off (default false: while on).
    #[serde(default)]
    pub invert: bool,
}

/// A modem-control output line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModemOutput {
    /// Request To Send.
    Rts,
    /// Data Terminal Ready.
    Dtr,
}

impl ModemOutput {
    fn name(self) -> &'static str {
        match self {
            ModemOutput::Rts => "RTS",
            ModemOutput::Dtr => "DTR",
        }
    }

    fn set(self, port: &mut dyn ModemLines, on: bool) -> io::Result<()> {
        match self {
            ModemOutput::Rts => port.set_rts(on),
            ModemOutput::Dtr => port.set_dtr(on),
        }
    }
}

/// A modem-control input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemInput {
    /// Clear To Send.
    Cts,
    /// Data Set Ready.
    Dsr,
    /// Data Carrier Detect.
    Dcd,
}

impl ModemInput {
    /// Parses "CTS", "DSR" or "DCD" (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "CTS" => Some(ModemInput::Cts),
            "DSR" => Some(ModemInput::Dsr),
            "DCD" => Some(ModemInput::Dcd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ModemInput::Cts => "CTS",
            ModemInput::Dsr => "DSR",
            ModemInput::Dcd => "DCD",
        }
    }

    fn read(self, port: &mut dyn ModemLines) -> io::Result<bool> {
        match self {
            ModemInput::Cts => port.cts(),
            ModemInput::Dsr => port.dsr(),
            ModemInput::Dcd => port.dcd(),
        }
    }
}

/// One entry of `lines`: an output line and whether it is inverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLine {
    /// The output line.
    pub line: ModemOutput,
    /// Off while keyed, on while unkeyed (`!` in the settings).
    pub inverted: bool,
}

impl KeyLine {
    /// The line's level (on = `true`) while the transmitter is `keyed` or not.
    pub fn level(self, keyed: bool) -> bool {
        keyed != self.inverted
    }
}

impl std::fmt::Display for KeyLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}",
            if self.inverted { "!" } else { "" },
            self.line.name()
        )
    }
}

/// Parses and checks `ptt.lines`; the error names the entry and what is accepted.
pub fn parse_lines(lines: &[String]) -> Result<Vec<KeyLine>, Fault> {
    if lines.is_empty() {
        return Err(Fault::Setting(
            "ptt.lines is empty: list the line(s) that key the transmitter, such as \
                    [\"RTS\"], or [\"DTR\", \"!RTS\"] for an AIOC"
                .into(),
        ));
    }
    let mut out: Vec<KeyLine> = Vec::with_capacity(lines.len());
    for (i, entry) in lines.iter().enumerate() {
        let trimmed = entry.trim();
        let (inverted, name) = match trimmed.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        let line = match name.to_ascii_uppercase().as_str() {
            "RTS" => ModemOutput::Rts,
            "DTR" => ModemOutput::Dtr,
            _ => {
                return Err(Fault::Setting(format!(
                    "ptt.lines[{i}] = {entry:?}: unknown line; use \"RTS\" or \"DTR\", with a \
                     leading \"!\" for a line that is off while keyed (CTS, DSR and DCD are \
                     inputs, for carrier detect)"
                )));
            }
        };
        if let Some(prev) = out.iter().position(|k| k.line == line) {
            return Err(Fault::Setting(format!(
                "ptt.lines: {} is listed twice ({:?} and {entry:?}); list each line once",
                line.name(),
                lines[prev]
            )));
        }
        out.push(KeyLine { line, inverted });
    }
    Ok(out)
}

/// Opens a device's modem lines.
pub type Opener = Arc<dyn Fn(&Path) -> io::Result<Box<dyn ModemLines>> + Send + Sync>;

/// Opens a real serial port. Its DTR is left as the kernel set it on open; the caller sets
/// every line right after.
pub fn open_tty(device: &Path) -> io::Result<Box<dyn ModemLines>> {
    let path = device.to_str().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path is not valid UTF-8")
    })?;
    if let Ok(meta) = std::fs::metadata(device)
        && !std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a serial port",
        ));
    }
    let port = serialport::new(path, 9600)
        .timeout(Duration::from_millis(100))
        .preserve_dtr_on_open()
        .open_native()
        .map_err(|e| match e.kind {
            // serialport reports a port locked by another program as "no device".
            serialport::ErrorKind::NoDevice => {
                io::Error::new(io::ErrorKind::ResourceBusy, e.description)
            }
            // ENOTTY: a character device that is not a terminal.
            serialport::ErrorKind::Unknown if not_a_terminal(device) => {
                io::Error::new(io::ErrorKind::InvalidInput, "not a serial port")
            }
            _ => io::Error::from(e),
        })?;
    Ok(Box::new(port))
}

/// What to do about an error opening a serial device.
fn open_advice(key: &str, device: &Path, e: &io::Error) -> String {
    let what = format!("{key} {}", device.display());
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{what}: no such device: is the adapter plugged in? Its stable name is in \
             /dev/serial/by-id/"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "{what}: permission denied: add the user to the dialout group (`sudo usermod \
             -aG dialout USER`), then log in again or restart the service"
        ),
        io::ErrorKind::ResourceBusy => format!(
            "{what}: busy: another program has the port open (see `fuser -v {}`); stop it \
             or use another port",
            device.display()
        ),
        _ => format!("{what}: cannot open: {e}"),
    }
}

/// A serial port shared by the PTT and carrier detect that use it.
struct SharedPort {
    device: PathBuf,
    opener: Opener,
    port: Option<Box<dyn ModemLines>>,
    /// The output lines PTTs use, with their unkeyed levels, in their listed order.
    claimed: Vec<(ModemOutput, bool)>,
}

impl SharedPort {
    /// The open port, reopening it (and setting every output line to its idle level) if a
    /// failure closed it.
    fn port(&mut self) -> io::Result<&mut dyn ModemLines> {
        if self.port.is_none() {
            let mut port = (self.opener)(&self.device)?;
            Self::set_idle(port.as_mut(), &self.claimed)?;
            self.port = Some(port);
        }
        match self.port.as_deref_mut() {
            Some(p) => Ok(p),
            None => Err(io::Error::other("the port is closed")),
        }
    }

    /// Claimed lines to their unkeyed levels, in order; then unclaimed lines off.
    fn set_idle(port: &mut dyn ModemLines, claimed: &[(ModemOutput, bool)]) -> io::Result<()> {
        for &(line, level) in claimed {
            line.set(port, level)?;
        }
        for line in [ModemOutput::Dtr, ModemOutput::Rts] {
            if !claimed.iter().any(|&(l, _)| l == line) {
                line.set(port, false)?;
            }
        }
        Ok(())
    }

    /// Closes the port after a failure; the next use reopens it.
    fn fail(&mut self) {
        self.port = None;
    }
}

/// The serial ports in use, by device path, so a PTT and a carrier detect on one device share
/// one open port. A port closes when its last user is dropped.
pub struct PortRegistry {
    opener: Opener,
    ports: Mutex<HashMap<PathBuf, Weak<Mutex<SharedPort>>>>,
}

impl PortRegistry {
    /// A registry opening devices with `opener` (tests pass an in-memory one).
    pub fn new(opener: Opener) -> Self {
        PortRegistry {
            opener,
            ports: Mutex::new(HashMap::new()),
        }
    }

    /// The process-wide registry of real serial ports.
    pub fn global() -> &'static PortRegistry {
        static GLOBAL: OnceLock<PortRegistry> = OnceLock::new();
        GLOBAL.get_or_init(|| PortRegistry::new(Arc::new(open_tty)))
    }

    /// The shared port of `device`, opened now if nobody uses it yet. `claim` lists the
    /// output lines a PTT uses with their unkeyed levels: they are set at once (right after
    /// opening if the port is new). Errors are I/O errors of the open or the writes, or
    /// `AlreadyExists` when another PTT claimed one of the lines.
    fn attach(
        &self,
        device: &Path,
        claim: &[(ModemOutput, bool)],
    ) -> io::Result<Arc<Mutex<SharedPort>>> {
        let key = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
        let mut ports = lock(&self.ports);
        ports.retain(|_, weak| weak.strong_count() > 0);
        if let Some(shared) = ports.get(&key).and_then(Weak::upgrade) {
            let mut port = lock(&shared);
            if let Some(&(line, _)) = claim
                .iter()
                .find(|(l, _)| port.claimed.iter().any(|(c, _)| c == l))
            {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is already keyed by another PTT", line.name()),
                ));
            }
            port.claimed.extend_from_slice(claim);
            let result = port.port().and_then(|p| {
                for &(line, level) in claim {
                    line.set(p, level)?;
                }
                Ok(())
            });
            if let Err(e) = result {
                port.fail();
                let n = port.claimed.len() - claim.len();
                port.claimed.truncate(n);
                return Err(e);
            }
            drop(port);
            return Ok(shared);
        }
        let mut port = SharedPort {
            device: device.to_path_buf(),
            opener: self.opener.clone(),
            port: None,
            claimed: claim.to_vec(),
        };
        port.port()?;
        let shared = Arc::new(Mutex::new(port));
        ports.insert(key, Arc::downgrade(&shared));
        Ok(shared)
    }
}

/// PTT on a serial port's RTS and/or DTR.
pub struct SerialPtt {
    port: Arc<Mutex<SharedPort>>,
    lines: Vec<KeyLine>,
    label: String,
    /// The last set failed: log the recovery once.
    failed: bool,
}

debug_fields!(SerialPtt { label });

impl SerialPtt {
    /// Opens (or shares) the port and sets every listed line to its unkeyed level at once.
    pub fn open(s: &SerialPttSettings) -> Result<Self, RadioError> {
        Self::open_in(PortRegistry::global(), s)
    }

    /// [`SerialPtt::open`] with a given registry.
    pub fn open_in(registry: &PortRegistry, s: &SerialPttSettings) -> Result<Self, RadioError> {
        let lines = parse_lines(&s.lines).map_err(|f| RadioError::ptt("serial", f))?;
        let claim: Vec<(ModemOutput, bool)> =
            lines.iter().map(|k| (k.line, k.level(false))).collect();
        let port = registry.attach(&s.device, &claim).map_err(|e| {
            let m = if e.kind() == io::ErrorKind::AlreadyExists {
                format!(
                    "ptt.lines {}: {e}; each line of a port can key only one radio",
                    s.device.display()
                )
            } else {
                open_advice("ptt.device", &s.device, &e)
            };
            RadioError::ptt("serial", Fault::io(m, e))
        })?;
        let names: Vec<String> = lines.iter().map(|k| k.to_string()).collect();
        let ptt = SerialPtt {
            port,
            lines,
            label: format!("serial {} {}", s.device.display(), names.join(",")),
            failed: false,
        };
        info!(ptt = %ptt.label, "PTT ready, unkeyed");
        Ok(ptt)
    }
}

impl Ptt for SerialPtt {
    fn set(&mut self, keyed: bool) -> Result<(), RadioError> {
        let mut shared = lock(&self.port);
        let result = shared.port().and_then(|p| {
            for k in &self.lines {
                k.line.set(p, k.level(keyed))?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if self.failed {
                    self.failed = false;
                    info!(ptt = %self.label, "serial port back");
                }
                Ok(())
            }
            Err(e) => {
                shared.fail();
                self.failed = true;
                let message = format!(
                    "ptt.device {}: cannot {}: {e}; if the adapter was unplugged, it is \
                     reopened on the next attempt",
                    shared.device.display(),
                    if keyed { "key" } else { "unkey" }
                );
                Err(RadioError::ptt("serial", Fault::io(message, e)))
            }
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

impl Drop for SerialPtt {
    fn drop(&mut self) {
        let mut shared = lock(&self.port);
        shared
            .claimed
            .retain(|(l, _)| !self.lines.iter().any(|k| k.line == *l));
    }
}

/// Forces the transmitter off (the `ptt-off` command): opens the port, sets every listed
/// line to its unkeyed level, and closes it (the kernel then drops DTR and RTS).
pub fn force_off(s: &SerialPttSettings) -> Result<(), RadioError> {
    SerialPtt::open(s).map(drop)
}

/// How often the carrier line is read.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait before reopening a port that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Carrier detect on a serial port's CTS, DSR or DCD.
///
/// Reading a modem line of a USB-serial adapter can wait on a USB transfer, so a thread reads
/// it every 10 ms and `update` only loads the last value.
pub type SerialCarrier = PolledCarrier<Serial>;

/// Marks the serial port's [`PolledCarrier`].
#[derive(Debug)]
pub enum Serial {}

impl SerialCarrier {
    /// Opens (or shares) the port and starts reading the line.
    pub fn open(s: &SerialCarrierSettings) -> Result<Self, RadioError> {
        Self::open_in(PortRegistry::global(), s)
    }

    /// [`SerialCarrier::open`] with a given registry.
    pub fn open_in(registry: &PortRegistry, s: &SerialCarrierSettings) -> Result<Self, RadioError> {
        let line = ModemInput::parse(&s.line).ok_or_else(|| {
            RadioError::carrier(
                "serial",
                Fault::Setting(format!(
                    "carrier.line = {:?}: unknown line; use \"CTS\", \"DSR\" or \"DCD\" (RTS \
                     and DTR are outputs, for PTT)",
                    s.line
                )),
            )
        })?;
        let port = registry.attach(&s.device, &[]).map_err(|e| {
            RadioError::carrier(
                "serial",
                Fault::io(open_advice("carrier.device", &s.device, &e), e),
            )
        })?;
        let label = format!(
            "serial {} {}{}",
            s.device.display(),
            if s.invert { "!" } else { "" },
            line.name()
        );
        // Read once now so the first frames see the real state.
        let first = {
            let mut shared = lock(&port);
            shared.port().and_then(|p| line.read(p))
        };
        let on = first.map_err(|e| {
            let message = format!(
                "carrier.device {}: cannot read {}: {e}",
                s.device.display(),
                line.name()
            );
            RadioError::carrier("serial", Fault::io(message, e))
        })?;
        let invert = s.invert;
        PolledCarrier::start(
            "serial",
            on != invert,
            label,
            "serial-carrier",
            None,
            move |state, label| poll(port, line, invert, state, label),
        )
    }
}

fn poll(
    port: Arc<Mutex<SharedPort>>,
    line: ModemInput,
    invert: bool,
    state: Arc<LineState>,
    label: String,
) {
    let mut failing = false;
    while !state.stopped() {
        let read = {
            let mut shared = lock(&port);
            let r = shared.port().and_then(|p| line.read(p));
            if r.is_err() {
                shared.fail();
            }
            r
        };
        match read {
            Ok(on) => {
                state.set(on != invert);
                if failing {
                    failing = false;
                    info!(carrier = %label, "serial port back");
                }
                if !state.sleep(POLL) {
                    break;
                }
            }
            Err(e) => {
                let message = format!("{label}: cannot read {}: {e}", line.name());
                if !failing {
                    failing = true;
                    warn!(carrier = %label, error = %e, "serial port unavailable, retrying every second");
                }
                state.fail(Fault::io(message, e));
                if !state.sleep(RETRY) {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::CarrierDetect as _;
    use crate::radio::testing::{empty_file, eventually};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An in-memory port: records every call, reads inputs from shared flags, can fail.
    #[derive(Clone, Default)]
    struct Modem {
        log: Arc<Mutex<Vec<String>>>,
        fail: Arc<AtomicBool>,
        missing: Arc<AtomicBool>,
        cts: Arc<AtomicBool>,
        dsr: Arc<AtomicBool>,
        dcd: Arc<AtomicBool>,
    }

    impl Modem {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        fn clear(&self) {
            self.log.lock().unwrap().clear();
        }

        fn record(&self, s: String) -> io::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(io::Error::other("device disconnected"));
            }
            self.log.lock().unwrap().push(s);
            Ok(())
        }

        fn registry(&self) -> PortRegistry {
            let m = self.clone();
            PortRegistry::new(Arc::new(move |path: &Path| {
                if m.missing.load(Ordering::SeqCst) {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
                }
                m.log
                    .lock()
                    .unwrap()
                    .push(format!("open {}", path.display()));
                Ok(Box::new(m.clone()) as Box<dyn ModemLines>)
            }))
        }
    }

    impl ModemLines for Modem {
        fn set_rts(&mut self, on: bool) -> io::Result<()> {
            self.record(format!("rts={}", on as u8))
        }

        fn set_dtr(&mut self, on: bool) -> io::Result<()> {
            self.record(format!("dtr={}", on as u8))
        }

        fn cts(&mut self) -> io::Result<bool> {
            self.record("cts?".into())
                .map(|_| self.cts.load(Ordering::SeqCst))
        }

        fn dsr(&mut self) -> io::Result<bool> {
            self.record("dsr?".into())
                .map(|_| self.dsr.load(Ordering::SeqCst))
        }

        fn dcd(&mut self) -> io::Result<bool> {
            self.record("dcd?".into())
                .map(|_| self.dcd.load(Ordering::SeqCst))
        }
    }

    fn ptt_settings(device: &str, lines: &[&str]) -> SerialPttSettings {
        SerialPttSettings {
            device: device.into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn carrier_settings(device: &str, line: &str, invert: bool) -> SerialCarrierSettings {
        SerialCarrierSettings {
            device: device.into(),
            line: line.into(),
            invert,
        }
    }

    /// The error of opening a PTT on `device` (RTS) of a modem that `setup` breaks.
    fn open_error(device: &str, setup: impl FnOnce(&Modem)) -> String {
        let m = Modem::default();
        setup(&m);
        SerialPtt::open_in(&m.registry(), &ptt_settings(device, &["RTS"]))
            .unwrap_err()
            .to_string()
    }

    /// Log entries other than carrier reads (the polling thread adds those at any time).
    fn writes(m: &Modem) -> Vec<String> {
        m.log().into_iter().filter(|s| !s.ends_with('?')).collect()
    }

    #[test]
    fn aioc_lines_are_unkeyed_right_after_open() {
        let m = Modem::default();
        let reg = m.registry();
        let mut ptt =
            SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyACM0", &["DTR", "!RTS"])).unwrap();
        assert_eq!(m.log(), ["open /dev/ttyACM0", "dtr=0", "rts=1"]);
        m.clear();
        ptt.set(true).unwrap();
        assert_eq!(m.log(), ["dtr=1", "rts=0"]);
        m.clear();
        ptt.set(false).unwrap();
        assert_eq!(m.log(), ["dtr=0", "rts=1"]);
        assert_eq!(ptt.describe(), "serial /dev/ttyACM0 DTR,!RTS");
    }

    #[test]
    fn each_line_and_inversion() {
        let cases: [(&[&str], &[&str], &[&str]); 5] = [
            (&["RTS"], &["rts=0", "dtr=0"], &["rts=1"]),
            (&["DTR"], &["dtr=0", "rts=0"], &["dtr=1"]),
            (&["!RTS"], &["rts=1", "dtr=0"], &["rts=0"]),
            (&["!dtr"], &["dtr=1", "rts=0"], &["dtr=0"]),
            (&["rts", "dtr"], &["rts=0", "dtr=0"], &["rts=1", "dtr=1"]),
        ];
        for (lines, on_open, keyed) in cases {
            let m = Modem::default();
            let reg = m.registry();
            let mut ptt = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", lines)).unwrap();
            let mut expected = vec!["open /dev/ttyUSB0".to_string()];
            expected.extend(on_open.iter().map(|s| s.to_string()));
            assert_eq!(m.log(), expected, "{lines:?}");
            m.clear();
            ptt.set(true).unwrap();
            assert_eq!(m.log(), keyed, "{lines:?}");
            m.clear();
            ptt.set(false).unwrap();
            let unkeyed: Vec<&str> = on_open[..lines.len()].to_vec();
            assert_eq!(m.log(), unkeyed, "{lines:?}");
        }
    }

    #[test]
    fn lines_are_validated() {
        let err = |lines: &[&str]| {
            let v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            parse_lines(&v).unwrap_err().to_string()
        };
        assert!(err(&[]).contains("ptt.lines is empty"));
        let e = err(&["RTS", "CTS"]);
        assert!(e.contains("ptt.lines[1] = \"CTS\": unknown line"), "{e}");
        let e = err(&["RTS", "!rts"]);
        assert!(
            e.contains("RTS is listed twice (\"RTS\" and \"!rts\")"),
            "{e}"
        );
        assert!(err(&[""]).contains("ptt.lines[0] = \"\""));
        assert!(err(&["!!RTS"]).contains("unknown line"));
        assert!(err(&["RTS,DTR"]).contains("unknown line"));
        let ok = parse_lines(&[" dtr ".to_string(), "! RTS".to_string()]).unwrap();
        assert_eq!(
            ok,
            [
                KeyLine {
                    line: ModemOutput::Dtr,
                    inverted: false
                },
                KeyLine {
                    line: ModemOutput::Rts,
                    inverted: true
                }
            ]
        );

        let m = Modem::default();
        let reg = m.registry();
        let e = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PTT serial: ptt.lines is empty"), "{e}");
        assert!(m.log().is_empty(), "nothing opened for a bad setting");
    }

    #[test]
    fn port_errors_are_reported_and_the_port_reopened() {
        let m = Modem::default();
        let reg = m.registry();
        let mut ptt = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["RTS"])).unwrap();
        m.fail.store(true, Ordering::SeqCst);
        let e = ptt.set(true).unwrap_err().to_string();
        assert!(
            e.starts_with("PTT serial: ptt.device /dev/ttyUSB0: cannot key: device disconnected"),
            "{e}"
        );
        // Still unplugged: the reopen fails too.
        m.missing.store(true, Ordering::SeqCst);
        assert!(ptt.set(false).is_err());
        // Back: reopened, set idle, then keyed.
        m.missing.store(false, Ordering::SeqCst);
        m.fail.store(false, Ordering::SeqCst);
        m.clear();
        ptt.set(true).unwrap();
        assert_eq!(m.log(), ["open /dev/ttyUSB0", "rts=0", "dtr=0", "rts=1"]);
    }

    #[test]
    fn open_errors_name_the_setting() {
        let e = open_error("/dev/ttyUSB7", |m| m.missing.store(true, Ordering::SeqCst));
        assert!(
            e.starts_with("PTT serial: ptt.device /dev/ttyUSB7: no such device"),
            "{e}"
        );

        // A failing first write leaves nothing open.
        let e = open_error("/dev/ttyUSB0", |m| m.fail.store(true, Ordering::SeqCst));
        assert!(e.contains("device disconnected"), "{e}");

        let advice = |kind| {
            open_advice(
                "ptt.device",
                Path::new("/dev/ttyUSB0"),
                &io::Error::from(kind),
            )
        };
        assert!(advice(io::ErrorKind::PermissionDenied).contains("dialout group"));
        assert!(advice(io::ErrorKind::ResourceBusy).contains("another program"));
    }

    #[test]
    fn missing_real_device_gives_a_clear_error() {
        let e = SerialPtt::open(&ptt_settings("/dev/ttyUSB99", &["RTS"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "PTT serial: ptt.device /dev/ttyUSB99: no such device: is the adapter plugged in? \
             Its stable name is in /dev/serial/by-id/"
        );
        assert!(force_off(&ptt_settings("/dev/ttyUSB99", &["DTR", "!RTS"])).is_err());
        let e = SerialCarrier::open(&carrier_settings("/dev/ttyUSB99", "CTS", false))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("carrier detect serial: carrier.device /dev/ttyUSB99: no such device"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_tty_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = empty_file(dir.path(), "ttyFake");
        let e = SerialPtt::open(&SerialPttSettings {
            device: path.clone(),
            lines: vec!["RTS".into()],
        })
        .unwrap_err()
        .to_string();
        assert!(e.ends_with("not a serial port"), "{e}");
        let e = SerialPtt::open(&ptt_settings("/dev/null", &["RTS"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("/dev/null: cannot open: not a serial port"),
            "{e}"
        );
    }

    /// A pseudo-terminal pair: the master stays open while the slave path is used.
    fn pty() -> (std::fs::File, PathBuf) {
        use std::os::fd::AsRawFd;
        let master = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .unwrap();
        let fd = master.as_raw_fd();
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: fd is an open /dev/ptmx; the buffer outlives the calls and its length is
        // passed.
        let path = unsafe {
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            std::ffi::CStr::from_ptr(name.as_ptr())
        };
        (master, PathBuf::from(path.to_str().unwrap()))
    }

    /// The real port code opens a terminal and reports clearly that it has no modem lines
    /// (pseudo-terminals have none; USB adapters do).
    #[test]
    fn a_terminal_without_modem_lines_is_reported() {
        let (_master, slave) = pty();
        let mut port = open_tty(&slave).unwrap();
        let e = port.set_rts(true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        // While we hold it, a second opener is told the port is busy.
        let e = SerialPtt::open(&ptt_settings(slave.to_str().unwrap(), &["RTS"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("busy: another program has the port open"), "{e}");
        drop(port);
        let e = SerialPtt::open(&SerialPttSettings {
            device: slave.clone(),
            lines: vec!["DTR".into(), "!RTS".into()],
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("this port has no modem-control lines"), "{e}");
        assert!(
            e.contains(&format!("ptt.device {}", slave.display())),
            "{e}"
        );
    }

    #[test]
    fn ptt_and_carrier_share_one_port() {
        let m = Modem::default();
        let reg = m.registry();
        let mut ptt = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["RTS"])).unwrap();
        let mut cos =
            SerialCarrier::open_in(&reg, &carrier_settings("/dev/ttyUSB0", "cts", false)).unwrap();
        let opens = m.log().iter().filter(|s| s.starts_with("open")).count();
        assert_eq!(opens, 1, "{:?}", m.log());
        // The carrier did not touch the PTT's line.
        assert_eq!(writes(&m), ["open /dev/ttyUSB0", "rts=0", "dtr=0"]);
        assert!(!cos.update(-90.0, 20).unwrap());
        m.cts.store(true, Ordering::SeqCst);
        assert!(eventually(|| cos.update(-90.0, 20).unwrap()));
        ptt.set(true).unwrap();
        assert_eq!(cos.describe(), "serial /dev/ttyUSB0 CTS");

        // A second PTT on the same port may not take the same line...
        let e = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["DTR", "RTS"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RTS is already keyed by another PTT"), "{e}");
        // ... but another line is fine, and it is unkeyed at once.
        m.clear();
        let _second = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["!DTR"])).unwrap();
        assert_eq!(writes(&m), ["dtr=1"]);
        // Once the first PTT is gone its line is free again.
        drop(ptt);
        let _third = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["RTS"])).unwrap();
    }

    #[test]
    fn carrier_lines_inversion_and_errors() {
        for (name, invert) in [("CTS", false), ("dsr", true), ("DCD", false)] {
            let m = Modem::default();
            let reg = m.registry();
            let mut cos =
                SerialCarrier::open_in(&reg, &carrier_settings("/dev/ttyS0", name, invert))
                    .unwrap();
            // A carrier opening the port alone turns both outputs off.
            assert_eq!(writes(&m), ["open /dev/ttyS0", "dtr=0", "rts=0"]);
            assert_eq!(cos.update(-90.0, 20).unwrap(), invert, "{name}");
            let flag = match name.to_ascii_uppercase().as_str() {
                "CTS" => m.cts.clone(),
                "DSR" => m.dsr.clone(),
                _ => m.dcd.clone(),
            };
            flag.store(true, Ordering::SeqCst);
            assert!(
                eventually(|| cos.update(-90.0, 20).unwrap() != invert),
                "{name}"
            );
            let read = format!("{}?", name.to_ascii_lowercase());
            assert!(m.log().contains(&read), "{name}");
        }

        let m = Modem::default();
        let reg = m.registry();
        let mut cos =
            SerialCarrier::open_in(&reg, &carrier_settings("/dev/ttyS0", "CTS", false)).unwrap();
        m.cts.store(true, Ordering::SeqCst);
        assert!(eventually(|| cos.update(-90.0, 20).unwrap()));
        m.fail.store(true, Ordering::SeqCst);
        assert!(eventually(|| cos.update(-90.0, 20).is_err()));
        let e = cos.update(-90.0, 20).unwrap_err().to_string();
        assert!(
            e.starts_with("carrier detect serial: serial /dev/ttyS0 CTS: cannot read CTS"),
            "{e}"
        );
        m.fail.store(false, Ordering::SeqCst);
        assert!(eventually(|| cos.update(-90.0, 20).is_ok_and(|up| up)));

        let e = SerialCarrier::open_in(&reg, &carrier_settings("/dev/ttyS0", "RTS", false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("carrier.line = \"RTS\": unknown line"), "{e}");
    }

    #[test]
    fn the_port_closes_when_unused() {
        let m = Modem::default();
        let reg = m.registry();
        let ptt = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["RTS"])).unwrap();
        drop(ptt);
        m.clear();
        let _ptt = SerialPtt::open_in(&reg, &ptt_settings("/dev/ttyUSB0", &["DTR"])).unwrap();
        assert_eq!(
            m.log(),
            ["open /dev/ttyUSB0", "dtr=0", "rts=0"],
            "opened afresh"
        );
    }

    #[test]
    fn settings_deserialize() {
        let s: SerialPttSettings =
            toml::from_str("device = \"/dev/ttyACM0\"\nlines = [\"DTR\", \"!RTS\"]").unwrap();
        assert_eq!(s, ptt_settings("/dev/ttyACM0", &["DTR", "!RTS"]));
        assert!(toml::from_str::<SerialPttSettings>("device = \"/dev/ttyACM0\"").is_err());
        assert!(
            toml::from_str::<SerialPttSettings>("device = \"/x\"\nlines = [\"RTS\"]\nbaud = 9600")
                .is_err()
        );
        let s: SerialCarrierSettings =
            toml::from_str("device = \"/dev/ttyUSB0\"\nline = \"DCD\"").unwrap();
        assert!(!s.invert);
        assert!(
            toml::from_str::<SerialCarrierSettings>(
                "device = \"/x\"\nline = \"CTS\"\ninverted = true"
            )
            .is_err()
        );
    }
}
