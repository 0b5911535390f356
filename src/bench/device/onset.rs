//! When audio reaches the source: a reader of the capture device of its own, with 5 ms
//! periods through ALSA, that notes the instant each burst starts.
//!
//! The instant of a burst is when the read that returned its first loud sample came back,
//! less the samples after that one in the period (they arrived later). A 5 ms period bounds
//! what the reader adds to the figure.

use crate::bench::rig::Onsets;
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The reader's period.
pub(crate) const PERIOD: Duration = Duration::from_millis(5);
/// The longest wait for a period before the reader looks at its stop flag again.
const WAIT_MS: u32 = 200;

/// What ALSA refused, and at which step (empty for the open itself).
#[derive(Debug, thiserror::Error)]
pub(crate) enum OnsetError {
    #[error("{context}{source}")]
    Alsa {
        /// The step and a colon ("mono: "), or nothing.
        context: String,
        #[source]
        source: alsa::Error,
    },
    #[error("{0}")]
    Thread(#[source] std::io::Error),
}

/// ALSA's error at `step` ("" for none).
fn alsa(step: impl Into<String>) -> impl FnOnce(alsa::Error) -> OnsetError {
    let step = step.into();
    move |source| OnsetError::Alsa {
        context: if step.is_empty() {
            step
        } else {
            format!("{step}: ")
        },
        source,
    }
}

/// Opens `device` for capture at `rate`, mono, 16 bit, with `period` and four periods of
/// buffer, in non-blocking mode; the error says what ALSA said.
pub(crate) fn open_capture(device: &str, rate: u32, period: Duration) -> Result<PCM, OnsetError> {
    let pcm = PCM::new(device, Direction::Capture, true).map_err(alsa(""))?;
    {
        let hw = HwParams::any(&pcm).map_err(alsa(""))?;
        hw.set_channels(1).map_err(alsa("mono"))?;
        hw.set_rate(rate, ValueOr::Nearest)
            .map_err(alsa(format!("{rate} Hz")))?;
        hw.set_format(Format::s16()).map_err(alsa("16 bit"))?;
        hw.set_access(Access::RWInterleaved).map_err(alsa(""))?;
        let frames =
            (u128::from(rate) * period.as_micros() / 1_000_000).max(1) as alsa::pcm::Frames;
        hw.set_period_size_near(frames, ValueOr::Nearest)
            .map_err(alsa(format!("period of {frames} frames")))?;
        hw.set_buffer_size_near(frames * 4)
            .map_err(alsa(format!("buffer of {} frames", frames * 4)))?;
        pcm.hw_params(&hw).map_err(alsa(""))?;
    }
    Ok(pcm)
}

/// Checks that `device` opens for playback; the error says what ALSA said.
pub(crate) fn check_playback(device: &str) -> Result<(), OnsetError> {
    PCM::new(device, Direction::Playback, false)
        .map(drop)
        .map_err(alsa(""))
}

/// A running reader.
pub(crate) struct OnsetReader {
    stop: Arc<AtomicBool>,
    onsets: Arc<Mutex<Vec<Instant>>>,
    failure: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl OnsetReader {
    /// Opens `device` and starts reading it on a thread of its own.
    pub(crate) fn start(device: &str, rate: u32) -> Result<OnsetReader, OnsetError> {
        let pcm = open_capture(device, rate, PERIOD)?;
        let stop = Arc::new(AtomicBool::new(false));
        let onsets: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let thread = {
            let (stop, onsets, failure) = (stop.clone(), onsets.clone(), failure.clone());
            std::thread::Builder::new()
                .name("bench-onsets".into())
                .spawn(move || {
                    if let Err(e) = read(&pcm, rate, &stop, &onsets) {
                        *crate::bench::rig::lock(&failure) = Some(e.to_string());
                    }
                })
                .map_err(OnsetError::Thread)?
        };
        Ok(OnsetReader {
            stop,
            onsets,
            failure,
            thread: Some(thread),
        })
    }

    /// The bursts heard so far, in order.
    pub(crate) fn onsets(&self) -> Vec<Instant> {
        crate::bench::rig::lock(&self.onsets).clone()
    }

    /// Why the reader stopped early, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        crate::bench::rig::lock(&self.failure).clone()
    }
}

impl Drop for OnsetReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The reader looks at the flag at least every WAIT_MS.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(
    pcm: &PCM,
    rate: u32,
    stop: &AtomicBool,
    onsets: &Mutex<Vec<Instant>>,
) -> Result<(), OnsetError> {
    let io = pcm.io_i16().map_err(alsa(""))?;
    let frames = (u128::from(rate) * PERIOD.as_micros() / 1_000_000).max(1) as usize;
    let mut buf = vec![0i16; frames];
    let mut detector = Onsets::new(rate);
    let mut errors = 0;
    pcm.start().ok();
    while !stop.load(Ordering::SeqCst) {
        // Waits at most a moment, so a stalled device cannot keep the reader from stopping.
        let ready = pcm
            .wait(Some(WAIT_MS))
            .and_then(|ready| if ready { io.readi(&mut buf) } else { Ok(0) });
        let n = match ready {
            Ok(0) => continue,
            Ok(n) => {
                errors = 0;
                n
            }
            Err(e) if e.errno() == libc::EAGAIN => continue,
            Err(e) => {
                // An overrun: start again (many in a row mean the device is gone).
                errors += 1;
                if errors > 10 {
                    return Err(alsa("reading the device failed")(e));
                }
                pcm.try_recover(e, true)
                    .map_err(alsa("reading the device failed"))?;
                pcm.start().ok();
                continue;
            }
        };
        let now = Instant::now();
        let mut found = None;
        detector.feed(&buf[..n], |i| {
            found.get_or_insert(i);
        });
        if let Some(i) = found {
            let later = Duration::from_secs_f64((n - i) as f64 / f64::from(rate));
            crate::bench::rig::lock(onsets).push(now.checked_sub(later).unwrap_or(now));
        }
    }
    Ok(())
}
