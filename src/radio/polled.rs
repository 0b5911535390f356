//! What a carrier-detect thread shares with its [`CarrierDetect`](super::CarrierDetect): the
//! last state read, the error while reading fails, and the request to stop. Line reads that
//! can block (a USB transfer, a TCP exchange with rigctld, a hidraw report) happen on the
//! thread; `update` on the codec thread only loads what the thread stored, never waits.
//! [`PolledCarrier`] is the carrier detect of every such interface (serial, rigctld, cm108).

use super::{CarrierDetect, Fault, RadioError};
use crate::sync::lock;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::info;

const DOWN: u8 = 0;
const UP: u8 = 1;
const FAILED: u8 = 2;

/// The thread's side: stores what it reads and learns when to stop.
pub(crate) struct LineState {
    state: AtomicU8,
    error: Mutex<Option<Arc<Fault>>>,
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

    /// Reading fails with `fault` (what `update` returns until the next [`Self::set`]).
    pub(crate) fn fail(&self, fault: Fault) {
        *lock(&self.error) = Some(Arc::new(fault));
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
            error: Mutex::new(None),
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
    /// when the thread holds the error at this instant).
    pub(crate) fn read(&self, fallback: impl FnOnce() -> Fault) -> Result<bool, RadioError> {
        match self.shared.state.load(Ordering::Acquire) {
            UP => Ok(true),
            DOWN => Ok(false),
            _ => {
                let fault = match self.shared.error.try_lock() {
                    Ok(f) => f.clone().map(Fault::Reading),
                    Err(_) => None,
                };
                Err(RadioError::carrier(
                    self.interface,
                    fault.unwrap_or_else(fallback),
                ))
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
                let fault = match lock(&self.shared.error).clone() {
                    Some(f) => Fault::Reading(f),
                    None => Fault::Device("reading failed".into()),
                };
                return Err(RadioError::carrier(self.interface, fault));
            }
            let waited = start.elapsed();
            if waited >= settle && self.shared.read.load(Ordering::Acquire) {
                return Ok(());
            }
            if waited >= within {
                return Err(RadioError::carrier(self.interface, Fault::Timeout(within)));
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

/// A carrier detect whose line a thread of its own reads: `I` marks the interface, whose
/// module gives it its `open`.
pub struct PolledCarrier<I> {
    polled: Polled,
    label: String,
    /// What `verify` waits for (see [`Polled::first_reading`]); `None`: the first state was
    /// read before the thread started.
    verify: Option<(Duration, Duration)>,
    interface: PhantomData<fn() -> I>,
}

impl<I> std::fmt::Debug for PolledCarrier<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledCarrier")
            .field("interface", &self.polled.interface)
            .field("label", &self.label)
            .finish()
    }
}

impl<I> PolledCarrier<I> {
    /// Starts `read` on a thread named `thread` for `interface` ("serial", ...), the carrier
    /// `up` until it reads otherwise; `label` names the line in logs.
    pub(crate) fn start(
        interface: &'static str,
        up: bool,
        label: String,
        thread: &str,
        verify: Option<(Duration, Duration)>,
        read: impl FnOnce(Arc<LineState>, String) + Send + 'static,
    ) -> Result<Self, RadioError> {
        let polled = Polled::new(interface, up);
        let state = polled.share();
        let thread_label = label.clone();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || read(state, thread_label))
            .map_err(|e| {
                RadioError::carrier(
                    interface,
                    Fault::io(format!("cannot start the reading thread: {e}"), e),
                )
            })?;
        info!(carrier = %label, "carrier detect ready");
        Ok(PolledCarrier {
            polled,
            label,
            verify,
            interface: PhantomData,
        })
    }
}

impl<I> CarrierDetect for PolledCarrier<I> {
    /// Loads the last state read; never waits. While the line cannot be read it returns the
    /// error.
    fn update(&mut self, _level_dbfs: f32, _frame_ms: u32) -> Result<bool, RadioError> {
        self.polled
            .read(|| Fault::Device(format!("{}: cannot read", self.label)))
    }

    fn needs_level(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    fn verify(&mut self) -> Result<(), RadioError> {
        match self.verify {
            Some((settle, within)) => self.polled.first_reading(settle, within),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sees_what_the_thread_stores_and_stops_it_when_dropped() {
        let polled = Polled::new("serial", false);
        let line = polled.share();
        let x = || Fault::Device("x".into());
        assert!(matches!(polled.read(x), Ok(false)));
        line.set(true);
        assert!(matches!(polled.read(x), Ok(true)));
        line.fail(Fault::io(
            "serial /dev/ttyUSB0: cannot read DCD: gone",
            std::io::Error::other("gone"),
        ));
        let e = polled
            .read(|| Fault::Device("fallback".into()))
            .unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("cannot read DCD: gone"), "{e}");
        line.set(false);
        assert!(matches!(polled.read(x), Ok(false)));
        assert!(line.sleep(Duration::from_millis(30)));
        drop(polled);
        assert!(line.stopped());
        assert!(
            !line.sleep(Duration::from_secs(10)),
            "returns at once once stopped"
        );
    }
}
