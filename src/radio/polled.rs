//! What a carrier-detect thread shares with its [`CarrierDetect`](super::CarrierDetect): the
//! last state read, the error while reading fails, and the request to stop. Line reads that
//! can block (a USB transfer, a TCP exchange with rigctld, a hidraw report) happen on the
//! thread; `update` on the codec thread only loads what the thread stored, never waits.

use super::RadioError;
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DOWN: u8 = 0;
const UP: u8 = 1;
const FAILED: u8 = 2;

/// The thread's side: stores what it reads and learns when to stop.
pub(crate) struct LineState {
    state: AtomicU8,
    error: Mutex<String>,
    stop: AtomicBool,
    /// Whether the thread has stored a reading (or a failure) yet.
    read: AtomicBool,
    /// Failures stored so far.
    failures: AtomicU32,
}

impl LineState {
    /// The carrier is up (`true`) or down.
    pub(crate) fn set(&self, up: bool) {
        self.state
            .store(if up { UP } else { DOWN }, Ordering::Release);
        self.read.store(true, Ordering::Release);
    }

    /// Reading fails with `message` (what `update` returns until the next [`Self::set`]).
    pub(crate) fn fail(&self, message: String) {
        *lock(&self.error) = message;
        self.state.store(FAILED, Ordering::Release);
        self.failures.fetch_add(1, Ordering::AcqRel);
        self.read.store(true, Ordering::Release);
    }

    /// Whether the carrier detect was dropped.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `total` in steps of 20 ms; false if the carrier detect was dropped meanwhile.
    pub(crate) fn sleep(&self, total: Duration) -> bool {
        let step = Duration::from_millis(20);
        let mut left = total;
        while !left.is_zero() {
            if self.stopped() {
                return false;
            }
            let d = left.min(step);
            std::thread::sleep(d);
            left -= d;
        }
        !self.stopped()
    }
}

/// The carrier detect's side. Dropping it tells the thread to stop.
pub(crate) struct Polled {
    shared: Arc<LineState>,
    interface: &'static str,
}

impl Polled {
    /// Starts as `up` for `interface` ("serial", "rigctld", "cm108").
    pub(crate) fn new(interface: &'static str, up: bool) -> Self {
        let shared = Arc::new(LineState {
            state: AtomicU8::new(if up { UP } else { DOWN }),
            error: Mutex::new(String::new()),
            stop: AtomicBool::new(false),
            read: AtomicBool::new(false),
            failures: AtomicU32::new(0),
        });
        Polled { shared, interface }
    }

    /// The thread's handle.
    pub(crate) fn share(&self) -> Arc<LineState> {
        self.shared.clone()
    }

    /// The last state stored; never waits. While reading fails, the error (or `fallback`
    /// when the thread holds the message at this instant).
    pub(crate) fn read(&self, fallback: impl FnOnce() -> String) -> Result<bool, RadioError> {
        match self.shared.state.load(Ordering::Acquire) {
            UP => Ok(true),
            DOWN => Ok(false),
            _ => {
                let message = match self.shared.error.try_lock() {
                    Ok(m) if !m.is_empty() => m.clone(),
                    _ => fallback(),
                };
                Err(RadioError::carrier(self.interface, message))
            }
        }
    }
}

impl Polled {
    /// Waits for the thread's first readings (`zello-gateway check`): the error of the first
    /// failure within `settle` (or, when nothing was read by then, within `within`), or an
    /// error when nothing was read within `within`. Blocks; never for the gateway's codec
    /// thread.
    pub(crate) fn first_reading(
        &self,
        settle: Duration,
        within: Duration,
    ) -> Result<(), RadioError> {
        let start = Instant::now();
        loop {
            if self.shared.failures.load(Ordering::Acquire) > 0 {
                let message = lock(&self.shared.error).clone();
                return Err(RadioError::carrier(self.interface, message));
            }
            let waited = start.elapsed();
            if waited >= settle && self.shared.read.load(Ordering::Acquire) {
                return Ok(());
            }
            if waited >= within {
                return Err(RadioError::carrier(
                    self.interface,
                    format!("no reading within {} ms", within.as_millis()),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sees_what_the_thread_stores_and_stops_it_when_dropped() {
        let polled = Polled::new("serial", false);
        let line = polled.share();
        assert!(matches!(polled.read(|| "x".into()), Ok(false)));
        line.set(true);
        assert!(matches!(polled.read(|| "x".into()), Ok(true)));
        line.fail("serial /dev/ttyUSB0: cannot read DCD: gone".into());
        let e = polled.read(|| "fallback".into()).unwrap_err().to_string();
        assert!(e.contains("cannot read DCD: gone"), "{e}");
        line.set(false);
        assert!(matches!(polled.read(|| "x".into()), Ok(false)));
        assert!(line.sleep(Duration::from_millis(30)));
        drop(polled);
        assert!(line.stopped());
        assert!(
            !line.sleep(Duration::from_secs(10)),
            "returns at once once stopped"
        );
    }
}
