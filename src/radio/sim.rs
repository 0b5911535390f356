//! The simulated radio's control lines: in-process signals that tests and the demo can read
//! and drive.

use super::{CarrierDetect, Fault, Ptt, RadioError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A PTT line held in memory. Clones share the line, so a test keeps one to watch it.
#[derive(Debug, Clone, Default)]
pub struct SimPtt {
    keyed: Arc<AtomicBool>,
    key_count: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

impl SimPtt {
    /// A new, unkeyed line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the transmitter is keyed now.
    pub fn is_keyed(&self) -> bool {
        self.keyed.load(Ordering::SeqCst)
    }

    /// How many times it went from unkeyed to keyed.
    pub fn key_count(&self) -> u64 {
        self.key_count.load(Ordering::SeqCst)
    }

    /// Makes the interface fail (`true`, like an unplugged adapter) or work again. A failed
    /// interface keys nothing: the line drops and every call is an error.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
        if failing {
            self.keyed.store(false, Ordering::SeqCst);
        }
    }
}

impl Ptt for SimPtt {
    fn set(&mut self, keyed: bool) -> Result<(), RadioError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(RadioError::ptt(
                "sim",
                Fault::io(
                    "the simulated interface is failing",
                    std::io::Error::from(std::io::ErrorKind::BrokenPipe),
                ),
            ));
        }
        let was = self.keyed.swap(keyed, Ordering::SeqCst);
        if keyed && !was {
            self.key_count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "sim".into()
    }
}

/// Carrier detect that follows a schedule of (start, end) times in seconds, counted in audio
/// frames from the start of the input: the simulated radio's squelch.
#[derive(Debug, Clone)]
pub struct ScheduleCarrier {
    spans: Vec<(f64, f64)>,
    elapsed_ms: u64,
}

impl ScheduleCarrier {
    /// Carrier is up during each `[start, end)` span.
    pub fn new(spans: Vec<(f64, f64)>) -> Self {
        ScheduleCarrier {
            spans,
            elapsed_ms: 0,
        }
    }
}

impl CarrierDetect for ScheduleCarrier {
    fn update(&mut self, _level_dbfs: f32, frame_ms: u32) -> Result<bool, RadioError> {
        let t = self.elapsed_ms as f64 / 1000.0;
        self.elapsed_ms += frame_ms as u64;
        Ok(self.spans.iter().any(|&(a, b)| t >= a && t < b))
    }

    fn describe(&self) -> String {
        format!("schedule {:?}", self.spans)
    }
}

/// Carrier detect driven from outside through a shared flag (tests), or fixed.
#[derive(Debug, Clone, Default)]
pub struct FlagCarrier {
    up: Arc<AtomicBool>,
}

impl FlagCarrier {
    /// A carrier that starts down.
    pub fn new() -> Self {
        Self::default()
    }

    /// A carrier fixed at `up` (`always` / `none` in the configuration).
    pub fn fixed(up: bool) -> Self {
        let c = Self::default();
        c.set(up);
        c
    }

    /// Raises or drops the carrier.
    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

impl CarrierDetect for FlagCarrier {
    fn update(&mut self, _level_dbfs: f32, _frame_ms: u32) -> Result<bool, RadioError> {
        Ok(self.up.load(Ordering::SeqCst))
    }

    fn needs_level(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        "flag".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptt_is_shared_and_counts_keying() {
        let mut p = SimPtt::new();
        let watch = p.clone();
        assert!(!watch.is_keyed());
        p.set(true).unwrap();
        p.set(true).unwrap();
        assert!(watch.is_keyed());
        p.set(false).unwrap();
        p.set(true).unwrap();
        assert_eq!(watch.key_count(), 2);
    }

    #[test]
    fn schedule_follows_frame_time() {
        let mut c = ScheduleCarrier::new(vec![(0.12, 0.24)]);
        let states: Vec<bool> = (0..6).map(|_| c.update(-90.0, 60).unwrap()).collect();
        // Frames start at 0, 60, 120, 180, 240, 300 ms.
        assert_eq!(states, [false, false, true, true, false, false]);
    }

    #[test]
    fn flag_carrier() {
        let mut c = FlagCarrier::new();
        let handle = c.clone();
        assert!(!c.update(0.0, 20).unwrap());
        handle.set(true);
        assert!(c.update(-90.0, 20).unwrap());
        assert!(FlagCarrier::fixed(true).update(-90.0, 20).unwrap());
    }
}
