//! The radio's control lines behind two seams: [`Ptt`] (keying the transmitter) and
//! [`CarrierDetect`] (is the receiver hearing a signal). One file per interface.

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
