//! The device thread of one side of the sound card: opens the PCM, watches the counters the
//! reader or writer keeps, and closes and reopens the PCM with backoff when it fails. The
//! reader or writer finds each fresh PCM through a [`Link`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::counters::{Counters, clear_failure, failure_text};
use super::{DeviceHealth, SoundMonitor, lock};
use crate::audio::AudioError;
use crate::net::backoff::Backoff;

/// What the device thread and the reader (or writer) share. The ring end is handed over in
/// `slot`, which the reader locks only when `epoch` has changed; the callbacks never see it.
pub(super) struct Link<E> {
    pub(super) key: &'static str,
    pub(super) device: String,
    pub(super) counters: Arc<Counters>,
    /// Bumped each time a fresh ring end is put in `slot`.
    pub(super) epoch: AtomicU64,
    /// Bumped each time the device is lost.
    pub(super) losses: AtomicU64,
    /// Frames per sound-card callback of the current stream.
    pub(super) period: AtomicUsize,
    pub(super) slot: Mutex<Option<E>>,
    pub(super) health: Arc<Mutex<DeviceHealth>>,
}

impl<E> Link<E> {
    pub(super) fn new(key: &'static str, device: &str, counters: Arc<Counters>) -> Self {
        Self {
            key,
            device: device.to_string(),
            counters,
            epoch: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            period: AtomicUsize::new(0),
            slot: Mutex::new(None),
            health: Arc::new(Mutex::new(DeviceHealth::Closed)),
        }
    }

    fn lost_error(&self) -> AudioError {
        let reason = match &*lock(&self.health) {
            DeviceHealth::Lost { reason, .. } => reason.clone(),
            _ => "the stream failed".to_string(),
        };
        AudioError::Device {
            device: self.device.clone(),
            message: format!(
                "{} lost: {reason}; reopening it in the background",
                self.key
            ),
        }
    }
}

/// The reader's (or writer's) end of a [`Link`].
pub(super) struct LinkEnd<E> {
    pub(super) link: Arc<Link<E>>,
    pub(super) epoch: u64,
    pub(super) losses: u64,
    pub(super) ring: Option<E>,
}

pub(super) enum Poll<'a, E> {
    /// The device was lost since the last call: report it (once).
    Lost(AudioError),
    /// A ring from a newly opened stream: start afresh.
    Fresh(&'a mut E),
    /// The same ring as before.
    Ready(&'a mut E),
    /// No stream (lost, reopening).
    Absent,
}

impl<E> LinkEnd<E> {
    fn new(link: Arc<Link<E>>) -> Self {
        Self {
            link,
            epoch: 0,
            losses: 0,
            ring: None,
        }
    }

    pub(super) fn poll(&mut self) -> Poll<'_, E> {
        let losses = self.link.losses.load(Ordering::Acquire);
        if losses != self.losses {
            self.losses = losses;
            self.ring = None;
            return Poll::Lost(self.link.lost_error());
        }
        let epoch = self.link.epoch.load(Ordering::Acquire);
        let fresh = epoch != self.epoch;
        if fresh {
            self.epoch = epoch;
            if let Some(ring) = lock(&self.link.slot).take() {
                self.ring = Some(ring);
            }
        }
        match self.ring.as_mut() {
            None => Poll::Absent,
            Some(ring) if fresh => Poll::Fresh(ring),
            Some(ring) => Poll::Ready(ring),
        }
    }
}

/// A stream that opened: the stream (kept on the device thread), the ring end for the reader or
/// writer, and the frames per callback.
pub(super) struct Opened<E, S> {
    pub(super) stream: S,
    pub(super) ring: E,
    pub(super) period: usize,
    pub(super) description: String,
}

/// Reopen delays after a loss.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// First reopen attempt after this long, then twice as long each time...
    pub(super) backoff_first: Duration,
    /// ...up to this.
    pub(super) backoff_max: Duration,
    /// How often the device thread looks at the stream.
    pub(super) poll: Duration,
    /// A stream that reports errors and has moved no samples for this long is lost.
    pub(super) grace: Duration,
    /// A stream that has moved no samples for this long while asked is lost, errors or not.
    pub(super) stall: Duration,
}

impl Timing {
    /// The reopen delays: `backoff_first`, doubling up to `backoff_max`, without jitter (one
    /// gateway's sound card is not a crowd of clients reconnecting at once).
    pub(super) fn reopen_backoff(&self) -> Backoff {
        Backoff::new(self.backoff_first, self.backoff_max)
    }
}

pub(super) const TIMING: Timing = Timing {
    backoff_first: Duration::from_secs(1),
    backoff_max: Duration::from_secs(30),
    poll: Duration::from_millis(250),
    grace: Duration::from_millis(300),
    stall: Duration::from_secs(5),
};

/// Waits on `stop` for `d`; true when the thread should end (the backend was dropped).
fn stopped(stop: &Receiver<()>, d: Duration) -> bool {
    !matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

/// How long closing a stream may take before the device thread stops waiting for it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Closes a stream on a helper thread and waits for it at most [`CLOSE_TIMEOUT`]: a driver
/// that hangs while closing a device that has gone away must not stop the device thread from
/// reopening it (or the gateway from shutting down). A stream that does not close in time is
/// left behind with its thread.
fn release<S: Send + 'static>(stream: S, key: &'static str, device: &str) {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let closer = std::thread::Builder::new()
        .name("sound-close".into())
        .spawn(move || {
            drop(stream);
            let _ = done_tx.send(());
        });
    // If the thread cannot start, the stream was dropped with the closure, here.
    if closer.is_ok() && done_rx.recv_timeout(CLOSE_TIMEOUT).is_err() {
        tracing::warn!(
            key,
            device,
            "the sound driver did not close the stream within {} s; leaving it behind",
            CLOSE_TIMEOUT.as_secs()
        );
    }
}

/// The device thread: opens the stream (reporting the first result through `first`), watches
/// it, and reopens it with backoff after a loss, until `stop` is dropped.
fn run_device<E, S: Send + 'static>(
    link: &Link<E>,
    mut open: impl FnMut() -> Result<Opened<E, S>, AudioError>,
    stop: &Receiver<()>,
    timing: Timing,
    first: SyncSender<Result<String, AudioError>>,
) {
    let counters = &link.counters;
    clear_failure(counters);
    let mut opened = match open() {
        Ok(o) => o,
        Err(e) => {
            let _ = first.send(Err(e));
            return;
        }
    };
    let mut first = Some(first);
    loop {
        let stream = opened.stream;
        link.period.store(opened.period, Ordering::Relaxed);
        *lock(&link.slot) = Some(opened.ring);
        *lock(&link.health) = DeviceHealth::Open;
        link.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(first) = first.take() {
            let _ = first.send(Ok(opened.description.clone()));
        }

        let Some(reason) = watch(counters, stop, timing) else {
            release(stream, link.key, &link.device);
            *lock(&link.health) = DeviceHealth::Closed;
            return;
        };
        release(stream, link.key, &link.device);
        lock(&link.slot).take();
        *lock(&link.health) = DeviceHealth::Lost {
            since: SystemTime::now(),
            reason: reason.clone(),
            attempts: 0,
            last_error: None,
        };
        counters.losses.fetch_add(1, Ordering::Relaxed);
        link.losses.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(
            key = link.key,
            device = %link.device,
            "sound device lost: {reason}; reopening it in the background"
        );
        let lost_at = Instant::now();
        let mut backoff = timing.reopen_backoff();
        let mut attempts = 0u32;
        opened = loop {
            if stopped(stop, backoff.next_delay(0.0)) {
                *lock(&link.health) = DeviceHealth::Closed;
                return;
            }
            attempts = attempts.saturating_add(1);
            clear_failure(counters);
            match open() {
                Ok(o) => break o,
                Err(e) => {
                    tracing::debug!(key = link.key, device = %link.device, attempts, "reopen failed: {e}");
                    if let DeviceHealth::Lost {
                        attempts: a,
                        last_error,
                        ..
                    } = &mut *lock(&link.health)
                    {
                        *a = attempts;
                        *last_error = Some(e.to_string());
                    }
                }
            }
        };
        counters.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            key = link.key,
            device = %link.device,
            "sound device back after {:.1} s ({})",
            lost_at.elapsed().as_secs_f64(),
            opened.description
        );
    }
}

/// Watches a running stream; returns why it is lost, or `None` when the thread should end.
/// A stream is quiet while the reader or writer asks it for samples and it moves none; time
/// nobody asks does not count.
fn watch(counters: &Counters, stop: &Receiver<()>, timing: Timing) -> Option<String> {
    let mut last = counters.callbacks.load(Ordering::Relaxed);
    let mut last_attempts = counters.attempts.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let mut last_errors = counters.errors.load(Ordering::Acquire);
    loop {
        if stopped(stop, timing.poll) {
            return None;
        }
        let failure = || failure_text(counters.failure.load(Ordering::Relaxed)).to_string();
        if counters.fatal.load(Ordering::Acquire) {
            return Some(failure());
        }
        let now = counters.callbacks.load(Ordering::Relaxed);
        let attempts = counters.attempts.load(Ordering::Relaxed);
        if now != last || attempts == last_attempts {
            last_change = Instant::now();
        }
        last = now;
        last_attempts = attempts;
        let errors = counters.errors.load(Ordering::Acquire);
        let erring = errors != last_errors;
        last_errors = errors;
        let quiet = last_change.elapsed();
        if erring && quiet >= timing.grace {
            return Some(failure());
        }
        if quiet >= timing.stall {
            return Some(format!(
                "the device moved no audio for {} s",
                timing.stall.as_secs()
            ));
        }
    }
}

/// The device thread of one side, and the link to it.
pub(super) struct DeviceThread<E> {
    pub(super) end: LinkEnd<E>,
    pub(super) stop: Option<Sender<()>>,
    pub(super) thread: Option<JoinHandle<()>>,
}

impl<E: Send + 'static> DeviceThread<E> {
    /// Starts the device thread and waits for the first open.
    pub(super) fn start<S: Send + 'static>(
        link: Link<E>,
        timing: Timing,
        open: impl FnMut() -> Result<Opened<E, S>, AudioError> + Send + 'static,
    ) -> Result<(Self, String), AudioError> {
        let link = Arc::new(link);
        let (stop_tx, stop_rx) = mpsc::channel();
        let (first_tx, first_rx) = mpsc::sync_channel(1);
        let thread_link = link.clone();
        let name = format!("sound-{}", link.key.trim_start_matches("audio."));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run_device(&thread_link, open, &stop_rx, timing, first_tx))
            .map_err(|source| AudioError::DeviceThread {
                device: link.device.clone(),
                source,
            })?;
        let description = match first_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(AudioError::Device {
                    device: link.device.clone(),
                    message: "the device thread ended without opening the device".into(),
                });
            }
        };
        Ok((
            Self {
                end: LinkEnd::new(link),
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            description,
        ))
    }
}

impl<E> DeviceThread<E> {
    pub(super) fn health(&self) -> DeviceHealth {
        lock(&self.end.link.health).clone()
    }

    pub(super) fn monitor(&self) -> SoundMonitor {
        let link = &self.end.link;
        SoundMonitor {
            key: link.key,
            device: link.device.clone(),
            counters: link.counters.clone(),
            health: link.health.clone(),
        }
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.end.link.counters
    }
}

impl<E> Drop for DeviceThread<E> {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    use super::super::counters::on_io_failure;
    use super::super::open::open_error;
    use super::super::{INPUT_KEY, OUTPUT_KEY};
    use crate::audio::alsa_pcm::IoFailure;

    /// A stand-in for an open PCM in device-thread tests.
    struct FakeStream;

    /// A stream that opened, with no ring.
    fn opened<S>(stream: S) -> Opened<(), S> {
        Opened {
            stream,
            ring: (),
            period: 0,
            description: String::new(),
        }
    }

    fn fast() -> Timing {
        Timing {
            backoff_first: Duration::from_millis(20),
            backoff_max: Duration::from_millis(80),
            poll: Duration::from_millis(5),
            grace: Duration::from_millis(60),
            stall: Duration::from_millis(300),
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn reopen_delays_double_from_1_s_up_to_30_s() {
        let mut backoff = TIMING.reopen_backoff();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay(0.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn loss_is_reported_once_and_the_device_comes_back_after_backoff() {
        let counters = Arc::new(Counters::default());
        let link = Link::new(INPUT_KEY, "fake", counters.clone());
        // The device is there at first, then absent for three attempts, then back.
        let attempts = Arc::new(AtomicU64::new(0));
        let a = attempts.clone();
        let c = counters.clone();
        let (mut t, _) = DeviceThread::start(link, fast(), move || {
            let n = a.fetch_add(1, Ordering::Relaxed);
            if (1..4).contains(&n) {
                return Err(open_error(INPUT_KEY, "fake", "no such sound device"));
            }
            c.callbacks.fetch_add(1, Ordering::Relaxed);
            Ok(opened(FakeStream))
        })
        .unwrap();
        assert!(matches!(t.end.poll(), Poll::Fresh(_)));
        assert_eq!(t.health(), DeviceHealth::Open);
        // Keep the fake stream calling back while the test polls.
        let beat = || counters.callbacks.fetch_add(1, Ordering::Relaxed);
        beat();
        // The stream fails.
        on_io_failure(&counters, &IoFailure::Gone("No such device".into()));
        wait_for(|| matches!(t.health(), DeviceHealth::Lost { .. }));
        let Poll::Lost(e) = t.end.poll() else {
            panic!("loss not reported")
        };
        assert!(e.to_string().contains("disappeared"), "{e}");
        // Reported once; then nothing until the device is back.
        wait_for(|| {
            beat();
            match t.end.poll() {
                Poll::Absent => false,
                Poll::Fresh(_) => true,
                Poll::Lost(_) => panic!("loss reported twice"),
                Poll::Ready(_) => panic!("stale ring"),
            }
        });
        assert_eq!(t.health(), DeviceHealth::Open);
        assert_eq!(attempts.load(Ordering::Relaxed), 5);
        let stats = counters.snapshot();
        assert_eq!((stats.losses, stats.reopens), (1, 1));
        // A stream that is asked for samples and moves none is lost too.
        wait_for(|| {
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            matches!(t.health(), DeviceHealth::Lost { ref reason, .. } if reason.contains("moved no audio"))
        });
        drop(t);
    }

    #[test]
    fn io_errors_are_a_loss_only_when_the_stream_stops() {
        let counters = Arc::new(Counters::default());
        let link = Link::new(INPUT_KEY, "flaky", counters.clone());
        let (mut t, _) = DeviceThread::start(link, fast(), || Ok(opened(FakeStream))).unwrap();
        assert!(matches!(t.end.poll(), Poll::Fresh(_)));
        // Errors now and then while the stream keeps moving samples: carried on.
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            counters.callbacks.fetch_add(1, Ordering::Relaxed);
            on_io_failure(&counters, &IoFailure::Other("Input/output error".into()));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(t.health(), DeviceHealth::Open);
        assert!(matches!(t.end.poll(), Poll::Ready(_)));
        // Errors while asked, and no samples moved: lost.
        wait_for(|| {
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            on_io_failure(&counters, &IoFailure::Other("Input/output error".into()));
            matches!(t.health(), DeviceHealth::Lost { .. })
        });
        let Poll::Lost(e) = t.end.poll() else {
            panic!("loss not reported")
        };
        assert!(e.to_string().contains("I/O error"), "{e}");
        assert!(counters.snapshot().stream_errors > 10);
    }

    /// A stream whose driver hangs while closing it.
    struct HangingStream(Arc<AtomicBool>);

    impl Drop for HangingStream {
        fn drop(&mut self) {
            while !self.0.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn a_stream_that_hangs_while_closing_does_not_stop_the_reopen() {
        let counters = Arc::new(Counters::default());
        let link = Link::new(OUTPUT_KEY, "hangs", counters.clone());
        let release_all = Arc::new(AtomicBool::new(false));
        let r = release_all.clone();
        let opens = Arc::new(AtomicU64::new(0));
        let o = opens.clone();
        let (mut t, _) = DeviceThread::start(link, fast(), move || {
            o.fetch_add(1, Ordering::Relaxed);
            Ok(opened(HangingStream(r.clone())))
        })
        .unwrap();
        let beat = || counters.callbacks.fetch_add(1, Ordering::Relaxed);
        on_io_failure(
            &counters,
            &IoFailure::Gone("File descriptor in bad state".into()),
        );
        let started = Instant::now();
        wait_for(|| {
            beat();
            opens.load(Ordering::Relaxed) == 2
        });
        // Reopened after the close timeout, not never.
        assert!(started.elapsed() >= CLOSE_TIMEOUT);
        assert!(matches!(t.end.poll(), Poll::Lost(_)));
        release_all.store(true, Ordering::Relaxed);
        drop(t);
    }

    #[test]
    fn first_open_failure_is_returned() {
        let link = Link::<()>::new(OUTPUT_KEY, "nothing", Arc::default());
        let e = DeviceThread::start(link, fast(), || -> Result<Opened<(), FakeStream>, _> {
            Err(open_error(OUTPUT_KEY, "nothing", "no such sound device"))
        })
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "audio.output = \"nothing\": no such sound device"
        );
    }
}
