//! The radio's control lines behind two seams: [`Ptt`] (keying the transmitter) and
//! [`CarrierDetect`] (is the receiver hearing a signal). One file per interface:
//!
//! - [`gpio`]: a Raspberry Pi pin (BCM numbering) or a line of a GPIO character device
//! - [`serial`]: the modem-control lines of a serial port (RTS/DTR out, CTS/DSR/DCD in)
//! - [`cm108`]: the GPIO pins and input bits of a CM108/CM119-family USB sound card (hidraw)
//! - [`rigctld`]: Hamlib's rigctld over TCP (CAT control of the radio)
//! - [`vox`]: carrier detect from the received audio level
//! - [`sim`]: in-process lines for tests and the demo
//!
//! Every PTT implementation starts unkeyed: its `open` constructor puts the line at the
//! unkeyed level before it returns, so `open` followed by dropping the value is the way to
//! force a transmitter off (the `ptt-off` command; see each module's `force_off`).

pub mod cm108;
pub mod gpio;
mod polled;
pub mod rigctld;
pub mod serial;
pub mod sim;
pub mod vox;

use std::io;
use std::sync::Arc;
use std::time::Duration;

/// What to do about a [`RadioError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Passing: the device was unplugged, rigctld is restarting, an answer came late. Try
    /// again or reopen the device; the gateway does so by itself.
    Retry,
    /// A setting is wrong: fix the configuration key the message names.
    FixSettings,
    /// The device, its wiring or its permissions are not as the settings need (no such
    /// chip, no access, a line held by another program, a rig that cannot do it).
    FixHardware,
}

/// What went wrong with an interface, said without knowing which line (PTT or carrier
/// detect) it serves; [`RadioError`] adds that.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// A setting is out of range or malformed.
    #[error("{0}")]
    Setting(String),
    /// The device is not what the settings need, or is held elsewhere.
    #[error("{0}")]
    Device(String),
    /// The operating system refused an open, a read or a write.
    #[error("{message}")]
    Io {
        /// What failed and what to check (it names the error).
        message: String,
        #[source]
        source: io::Error,
    },
    /// A GPIO could not be opened.
    #[error("{message}")]
    Gpio {
        /// What failed and what to check (it names the error).
        message: String,
        #[source]
        source: gpio::GpioError,
    },
    /// An exchange with rigctld failed.
    #[error("{message}")]
    Rigctld {
        /// The setting and what rigctld did (it names the error).
        message: String,
        #[source]
        source: rigctld::RigctldError,
    },
    /// A line read on a thread of its own gave no reading in time.
    #[error("no reading within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The last failure of a line read on a thread of its own, as that thread stored it.
    #[error(transparent)]
    Reading(Arc<Fault>),
}

impl Fault {
    /// An operating-system error with the message that explains it.
    pub fn io(message: impl Into<String>, source: io::Error) -> Self {
        Fault::Io {
            message: message.into(),
            source,
        }
    }

    /// The same fault, its message prefixed with `what` (`ptt.device auto: ...`).
    pub fn within(self, what: &str) -> Fault {
        match self {
            Fault::Setting(m) => Fault::Setting(format!("{what}: {m}")),
            Fault::Device(m) => Fault::Device(format!("{what}: {m}")),
            Fault::Io { message, source } => Fault::Io {
                message: format!("{what}: {message}"),
                source,
            },
            Fault::Gpio { message, source } => Fault::Gpio {
                message: format!("{what}: {message}"),
                source,
            },
            Fault::Rigctld { message, source } => Fault::Rigctld {
                message: format!("{what}: {message}"),
                source,
            },
            other @ (Fault::Timeout(_) | Fault::Reading(_)) => other,
        }
    }

    /// What to do about it.
    pub fn remedy(&self) -> Remedy {
        match self {
            Fault::Setting(_) => Remedy::FixSettings,
            Fault::Device(_) | Fault::Gpio { .. } => Remedy::FixHardware,
            Fault::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied
                | io::ErrorKind::InvalidInput
                | io::ErrorKind::Unsupported
                | io::ErrorKind::AlreadyExists
                | io::ErrorKind::ResourceBusy => Remedy::FixHardware,
                _ => Remedy::Retry,
            },
            Fault::Rigctld { source, .. } => source.remedy(),
            Fault::Timeout(_) => Remedy::Retry,
            Fault::Reading(f) => f.remedy(),
        }
    }
}

/// Errors of the PTT and carrier-detect interfaces: the line, the interface ("gpio",
/// "serial", ...) and what went wrong, with its source.
#[derive(Debug, thiserror::Error)]
pub enum RadioError {
    #[error("PTT {interface}: {source}")]
    Ptt {
        interface: String,
        #[source]
        source: Fault,
    },
    #[error("carrier detect {interface}: {source}")]
    Carrier {
        interface: String,
        #[source]
        source: Fault,
    },
}

impl RadioError {
    /// A PTT error of `interface` ("gpio", "serial", ...).
    pub fn ptt(interface: impl Into<String>, source: Fault) -> Self {
        RadioError::Ptt {
            interface: interface.into(),
            source,
        }
    }

    /// A carrier-detect error of `interface`.
    pub fn carrier(interface: impl Into<String>, source: Fault) -> Self {
        RadioError::Carrier {
            interface: interface.into(),
            source,
        }
    }

    /// What went wrong, without the line.
    pub fn fault(&self) -> &Fault {
        match self {
            RadioError::Ptt { source, .. } | RadioError::Carrier { source, .. } => source,
        }
    }

    /// What to do about it: retry (the gateway does), or fix the settings or the hardware.
    pub fn remedy(&self) -> Remedy {
        self.fault().remedy()
    }

    /// Whether trying again (or reopening the device) may work without anyone's help.
    pub fn is_transient(&self) -> bool {
        self.remedy() == Remedy::Retry
    }
}

/// Keys and unkeys the transmitter. Implementations must be idempotent.
///
/// The gateway calls it only from the radio's PTT thread (`gateway::ptt_thread`), one call
/// at a time, never from the async runtime: a call may block for the interface's time
/// budget (rigctld's 300 ms and a retry, a serial port's lock), and the bridge goes on
/// meanwhile. A call that hangs for good holds only that thread; the bridge gives up on it
/// after `gateway::ptt_thread::ANSWER_WITHIN`. The value is dropped on that thread too,
/// after a last `set(false)`.
pub trait Ptt: Send {
    /// Key (`true`) or unkey (`false`) the transmitter.
    fn set(&mut self, keyed: bool) -> Result<(), RadioError>;
    /// Checks that the interface still answers; called every few seconds, and only while
    /// the gateway is not transmitting. By default it sets the line unkeyed again, which
    /// also undoes a glitch that keyed it. Interfaces shared with a local operator (a rig's
    /// CAT port, where `T 0` would cut off someone talking on the mic) read instead.
    fn check(&mut self) -> Result<(), RadioError> {
        self.set(false)
    }
    /// A second handle that reads the transmitter's state back, for confirming during a
    /// transmission that it is still keyed (a restarted rigctld comes back unkeyed). It is
    /// used on the same PTT thread, between the keying calls, and has a connection of its
    /// own so a reading never disturbs the line's. `None` (the default): the interface cannot read its state back, or a line
    /// it holds cannot drop by itself.
    fn readback(&self) -> Option<Box<dyn PttReadback>> {
        None
    }
    /// Short description for logs ("sim", "gpio 17", ...).
    fn describe(&self) -> String;
}

/// Reads whether the transmitter is keyed (see [`Ptt::readback`]).
pub trait PttReadback: Send {
    /// `true` while the transmitter is keyed. May block for the interface's time budget.
    fn keyed(&mut self) -> Result<bool, RadioError>;
}

/// Tells whether the receiver hears a carrier. Called once per audio frame with the frame's
/// level, so level-based detectors (VOX) and line-based ones share one seam.
pub trait CarrierDetect: Send {
    /// `level_dbfs` is the peak level of the frame just captured; `frame_ms` its length.
    fn update(&mut self, level_dbfs: f32, frame_ms: u32) -> Result<bool, RadioError>;
    /// Whether [`update`](Self::update) looks at the audio's level. Detectors that read a
    /// line (COS/DCD) say no: the engine then asks them before it takes the frame and, while
    /// the squelch is closed, leaves the audio unconverted and unfiltered.
    fn needs_level(&self) -> bool {
        true
    }
    /// Short description for logs.
    fn describe(&self) -> String;
    /// Waits for the first readings and returns the error if the line cannot be read
    /// (`zello-gateway check`; the gateway itself keeps retrying such a line). Detectors
    /// that read a line on a thread of their own wait up to a few seconds; the others have
    /// nothing to wait for.
    fn verify(&mut self) -> Result<(), RadioError> {
        Ok(())
    }
}

/// What the interface tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    /// An empty regular file `name` in `dir`, standing in for a device node.
    pub(crate) fn empty_file(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, b"").unwrap();
        path
    }

    /// Waits until `f` holds, up to three seconds (a line read on a thread of its own is
    /// seen within milliseconds).
    pub(crate) fn eventually(f: impl FnMut() -> bool) -> bool {
        eventually_within(f, Duration::from_secs(3))
    }

    /// Waits until `f` holds, up to `within`.
    pub(crate) fn eventually_within(mut f: impl FnMut() -> bool, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    //! The settings of every interface, parsed the way the configuration file does
    //! (`ptt = { type = ... }`, `carrier = { type = ... }`).

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
    enum PttConfig {
        Gpio(gpio::GpioPttSettings),
        Gpiochip(gpio::GpioChipPttSettings),
        Serial(serial::SerialPttSettings),
        Cm108(cm108::Cm108PttSettings),
        Rigctld(rigctld::RigctldPttSettings),
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
    enum CarrierConfig {
        Gpio(gpio::GpioCarrierSettings),
        Gpiochip(gpio::GpioChipCarrierSettings),
        Serial(serial::SerialCarrierSettings),
        Cm108(cm108::Cm108CarrierSettings),
        Rigctld(rigctld::RigctldCarrierSettings),
    }

    #[derive(Debug, Deserialize)]
    struct Radio {
        ptt: PttConfig,
        carrier: CarrierConfig,
    }

    fn parse(ptt: &str, carrier: &str) -> Result<Radio, toml::de::Error> {
        toml::from_str(&format!("ptt = {ptt}\ncarrier = {carrier}"))
    }

    #[test]
    fn every_interface_parses_inside_the_tagged_tables() {
        let r = parse(
            r#"{ type = "gpio", pin = 17, active_low = true }"#,
            r#"{ type = "gpio", pin = 27, active_low = true, pull = "up", debounce_ms = 40 }"#,
        )
        .unwrap();
        assert!(matches!(r.ptt, PttConfig::Gpio(ref s) if s.pin == 17 && s.active_low));
        assert!(matches!(r.carrier, CarrierConfig::Gpio(ref s)
            if s.pull == gpio::Pull::Up && s.debounce_ms == 40));

        let r = parse(
            r#"{ type = "gpiochip", chip = "/dev/gpiochip4", line = 17 }"#,
            r#"{ type = "gpiochip", chip = "/dev/gpiochip4", line = 27 }"#,
        )
        .unwrap();
        assert!(matches!(r.ptt, PttConfig::Gpiochip(ref s) if s.line == 17 && !s.active_low));
        assert!(matches!(r.carrier, CarrierConfig::Gpiochip(ref s)
            if s.pull == gpio::Pull::None && s.debounce_ms == 20));

        let r = parse(
            r#"{ type = "serial", device = "/dev/ttyACM0", lines = ["DTR", "!RTS"] }"#,
            r#"{ type = "serial", device = "/dev/ttyACM0", line = "CTS", invert = true }"#,
        )
        .unwrap();
        assert!(matches!(r.ptt, PttConfig::Serial(ref s) if s.lines == ["DTR", "!RTS"]));
        assert!(matches!(r.carrier, CarrierConfig::Serial(ref s) if s.invert));

        let r = parse(
            r#"{ type = "cm108" }"#,
            r#"{ type = "cm108", bit = "VOL_DN" }"#,
        )
        .unwrap();
        assert!(matches!(r.ptt, PttConfig::Cm108(ref s)
            if s.device == "auto" && s.gpio == 3 && s.card.is_none()));
        assert!(matches!(r.carrier, CarrierConfig::Cm108(ref s) if s.bit == "VOL_DN"));

        let r = parse(
            r#"{ type = "rigctld" }"#,
            r#"{ type = "rigctld", address = "127.0.0.1:4533", poll_ms = 50 }"#,
        )
        .unwrap();
        assert!(matches!(r.ptt, PttConfig::Rigctld(ref s) if s.address == "127.0.0.1:4532"));
        assert!(matches!(r.carrier, CarrierConfig::Rigctld(ref s) if s.poll_ms == 50));
    }

    #[test]
    fn unknown_keys_are_refused_inside_the_tagged_tables() {
        for (ptt, carrier) in [
            (
                r#"{ type = "gpio", pin = 17, pul = "up" }"#,
                r#"{ type = "rigctld" }"#,
            ),
            (
                r#"{ type = "serial", device = "/x", lines = ["RTS"], baud = 9600 }"#,
                r#"{ type = "rigctld" }"#,
            ),
            (
                r#"{ type = "cm108", gpio = 3, pin = 3 }"#,
                r#"{ type = "rigctld" }"#,
            ),
            (
                r#"{ type = "rigctld", port = 4532 }"#,
                r#"{ type = "rigctld" }"#,
            ),
            (
                r#"{ type = "rigctld" }"#,
                r#"{ type = "cm108", bit = "VOL_DN", gpio = 3 }"#,
            ),
            (
                r#"{ type = "rigctld" }"#,
                r#"{ type = "gpio", pin = 27, debounce = 20 }"#,
            ),
        ] {
            let e = parse(ptt, carrier).unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{ptt} / {carrier}: {e}");
        }
    }

    #[test]
    fn an_io_error_is_transient_and_says_what_failed() {
        let e = RadioError::carrier(
            "serial",
            Fault::io(
                "serial /dev/ttyUSB0: cannot read DCD: gone",
                io::Error::new(io::ErrorKind::BrokenPipe, "gone"),
            ),
        );
        assert!(e.is_transient());
        assert_eq!(e.remedy(), Remedy::Retry);
        assert_eq!(
            e.to_string(),
            "carrier detect serial: serial /dev/ttyUSB0: cannot read DCD: gone"
        );
        let source = std::error::Error::source(&e).and_then(std::error::Error::source);
        let io = source.and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(io.map(io::Error::kind), Some(io::ErrorKind::BrokenPipe));
        // Kept across the thread that read the line, too.
        let stored = Fault::io("gone", io::Error::from(io::ErrorKind::NotFound));
        let stored = RadioError::carrier("serial", Fault::Reading(Arc::new(stored)));
        assert!(stored.is_transient());
        // No reading in time is passing as well.
        assert!(
            RadioError::carrier("rigctld", Fault::Timeout(Duration::from_secs(1))).is_transient()
        );
    }

    #[test]
    fn a_bad_setting_or_a_missing_permission_is_not_transient() {
        let e = RadioError::ptt("gpio", Fault::Setting("ptt.pin = 99: use 0 to 27".into()));
        assert!(!e.is_transient());
        assert_eq!(e.remedy(), Remedy::FixSettings);
        assert_eq!(e.to_string(), "PTT gpio: ptt.pin = 99: use 0 to 27");
        let e = RadioError::ptt(
            "cm108",
            Fault::io(
                "permission denied",
                io::Error::from(io::ErrorKind::PermissionDenied),
            ),
        );
        assert_eq!(e.remedy(), Remedy::FixHardware);
        assert!(!e.is_transient());
    }
}
