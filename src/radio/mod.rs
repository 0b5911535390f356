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

/// Keys and unkeys the transmitter. Implementations must be idempotent and cheap.
pub trait Ptt: Send {
    /// Key (`true`) or unkey (`false`) the transmitter.
    fn set(&mut self, keyed: bool) -> Result<(), RadioError>;
    /// Short description for logs ("sim", "gpio 17", ...).
    fn describe(&self) -> String;
}

/// Tells whether the receiver hears a carrier. Called once per audio frame with the frame's
/// level, so level-based detectors (VOX) and line-based ones share one seam.
pub trait CarrierDetect: Send {
    /// `level_dbfs` is the peak level of the frame just captured; `frame_ms` its length.
    fn update(&mut self, level_dbfs: f32, frame_ms: u32) -> Result<bool, RadioError>;
    /// Short description for logs.
    fn describe(&self) -> String;
}
