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

/// Errors of the PTT and carrier-detect interfaces.
#[derive(Debug, thiserror::Error)]
pub enum RadioError {
    #[error("PTT {interface}: {message}")]
    Ptt { interface: String, message: String },
    #[error("carrier detect {interface}: {message}")]
    Carrier { interface: String, message: String },
}

impl RadioError {
    /// A PTT error of `interface` ("gpio", "serial", ...).
    pub fn ptt(interface: impl Into<String>, message: impl Into<String>) -> Self {
        RadioError::Ptt {
            interface: interface.into(),
            message: message.into(),
        }
    }

    /// A carrier-detect error of `interface`.
    pub fn carrier(interface: impl Into<String>, message: impl Into<String>) -> Self {
        RadioError::Carrier {
            interface: interface.into(),
            message: message.into(),
        }
    }
}

/// Keys and unkeys the transmitter. Implementations must be idempotent.
///
/// The gateway calls it only from the radio's PTT thread
/// ([`crate::gateway::ptt_thread`]), one call at a time, never from the async runtime: a
/// call may block for the interface's time budget (rigctld's 300 ms and a retry, a serial
/// port's lock), and the bridge goes on meanwhile. A call that hangs for good holds only
/// that thread; the bridge gives up on it after
/// [`ANSWER_WITHIN`](crate::gateway::ptt_thread::ANSWER_WITHIN). The value is dropped on
/// that thread too, after a last `set(false)`.
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

    fn parse(ptt: &str, carrier: &str) -> Result<Radio, String> {
        toml::from_str(&format!("ptt = {ptt}\ncarrier = {carrier}")).map_err(|e| e.to_string())
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
            let e = parse(ptt, carrier).unwrap_err();
            assert!(e.contains("unknown field"), "{ptt} / {carrier}: {e}");
        }
    }
}
