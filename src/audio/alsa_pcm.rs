//! One ALSA PCM, opened with an explicit period and read or written without blocking.
//!
//! The sound-card backend ([`super::sound`]) does not run a stream thread that sleeps in
//! `poll()` on the PCM: a PCM behind a plugin with an emulated poll descriptor (PulseAudio's
//! and PipeWire's ALSA plugins) can say "ready" with nothing to read, and a thread that polls
//! it then spins. Instead the codec thread, which ticks once per frame anyway, takes what the
//! device has gathered (capture) or queues its frame (playback) with non-blocking calls. That
//! costs no wake-up of its own, and nothing can spin: no call here waits.
//!
//! The pure parts (period sizes, error sorting, sample conversion) are tested directly; the
//! device itself in `tests/sound.rs` against PulseAudio null sinks.

use alsa::pcm::{Access, Format, HwParams, PCM, State};
use alsa::{Direction as AlsaDirection, ValueOr};
use rtrb::Producer;

/// The device period the configuration asks for when it names none (`audio.period_ms`).
pub const DEFAULT_PERIOD_MS: u32 = 20;
/// Periods outside this range are refused at load (ms).
pub const PERIOD_MS_RANGE: std::ops::RangeInclusive<u32> = 2..=100;
/// Audio the playback buffer holds, at least (ms): room for a frame of up to 60 ms, a late
/// tick, and the silence ahead of a message, without adding latency (the codec thread queues
/// ahead only the silence it means to).
const BUFFER_MS: u32 = 250;
/// Audio the capture buffer holds, at least (ms): a sound server may hand over a large block
/// at once (PulseAudio after idling); the codec thread takes whatever is there on each tick,
/// and trims a backlog that stays, so a large buffer adds no latency.
const CAPTURE_BUFFER_MS: u32 = 1000;
/// The buffer holds at least this many periods.
const MIN_PERIODS: usize = 4;
/// Frames moved per call at most (bounds the conversion buffer).
const CHUNK_FRAMES: usize = 1024;

/// The direction a PCM is opened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Capture,
    Playback,
}

impl Direction {
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Direction::Capture => "capture",
            Direction::Playback => "play",
        }
    }

    fn alsa(self) -> AlsaDirection {
        match self {
            Direction::Capture => AlsaDirection::Capture,
            Direction::Playback => AlsaDirection::Playback,
        }
    }
}

/// The sample format the PCM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SampleKind {
    I16,
    F32,
}

impl std::fmt::Display for SampleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SampleKind::I16 => "i16",
            SampleKind::F32 => "f32",
        })
    }
}

/// Why a PCM did not open, sorted so the caller can say what to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OpenFailure {
    /// No PCM of that name.
    NotFound,
    /// Another program has it open.
    Busy,
    /// The user may not open it.
    Permission,
    /// The rate is not one the device runs at: the rates it takes (min, max).
    Rate { min: u32, max: u32 },
    /// Neither 16-bit nor float samples.
    Format,
    /// Anything else: ALSA's error.
    Other(alsa::Error),
}

/// What a read or write met, other than data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoFailure {
    /// An overrun (capture) or underrun (playback): the PCM was prepared again.
    Xrun,
    /// The device is gone (unplugged, its server went away): reopen it.
    Gone(String),
    /// Another error; the device may carry on.
    Other(String),
}

/// Sorts an ALSA error from a read or write by its errno.
pub(crate) fn sort_io_error(errno: i32, text: &str) -> IoFailure {
    match errno {
        libc::EPIPE | libc::ESTRPIPE => IoFailure::Xrun,
        libc::ENODEV | libc::EBADFD | libc::ENXIO | libc::ESHUTDOWN | libc::ENOTCONN => {
            IoFailure::Gone(text.to_string())
        }
        _ => IoFailure::Other(text.to_string()),
    }
}

/// Sorts an ALSA error at open by its errno.
pub(crate) fn sort_open_error(errno: i32, error: alsa::Error) -> OpenFailure {
    match errno {
        libc::ENOENT => OpenFailure::NotFound,
        libc::EBUSY | libc::EAGAIN => OpenFailure::Busy,
        libc::EACCES | libc::EPERM => OpenFailure::Permission,
        _ => OpenFailure::Other(error),
    }
}

/// Frames in `ms` milliseconds at `rate` (at least one).
pub(crate) fn frames_for_ms(rate: u32, ms: u32) -> usize {
    ((u64::from(rate) * u64::from(ms) / 1000) as usize).max(1)
}

/// `frames` at `rate` in milliseconds.
pub(crate) fn frames_ms(frames: usize, rate: u32) -> f64 {
    frames as f64 * 1000.0 / f64::from(rate.max(1))
}

/// The buffer to ask for: [`BUFFER_MS`] ([`CAPTURE_BUFFER_MS`] for capture), and at least
/// [`MIN_PERIODS`] periods.
pub(crate) fn buffer_frames(rate: u32, period: usize, direction: Direction) -> usize {
    let ms = match direction {
        Direction::Capture => CAPTURE_BUFFER_MS,
        Direction::Playback => BUFFER_MS,
    };
    frames_for_ms(rate, ms).max(period.saturating_mul(MIN_PERIODS))
}

/// The PCM's settings as opened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opened {
    pub rate: u32,
    pub channels: usize,
    pub kind: SampleKind,
    /// Frames per period.
    pub period: usize,
    /// Frames the device's buffer holds.
    pub buffer: usize,
    /// The period asked for, in frames.
    pub period_asked: usize,
}

impl Opened {
    /// One line for the log: rate, channels, format, period and buffer, and what was asked
    /// when the device gave another period.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "{} Hz, {} channel(s), {}, period {} frames ({:.1} ms), buffer {} frames ({:.0} ms)",
            self.rate,
            self.channels,
            self.kind,
            self.period,
            frames_ms(self.period, self.rate),
            self.buffer,
            frames_ms(self.buffer, self.rate),
        );
        if self.period != self.period_asked {
            s.push_str(&format!(
                "; asked for a period of {} frames ({:.1} ms), the device's nearest is {}",
                self.period_asked,
                frames_ms(self.period_asked, self.rate),
                self.period
            ));
        }
        s
    }
}

/// An open PCM and the buffers its conversions use (allocated at open).
pub(crate) struct Pcm {
    pcm: PCM,
    pub(crate) opened: Opened,
    direction: Direction,
    i16_buf: Vec<i16>,
    f32_buf: Vec<f32>,
}

fn other(e: &alsa::Error) -> OpenFailure {
    sort_open_error(e.errno(), *e)
}

/// Sets channels (mono if the device has it, else the fewest), format (16-bit, else float),
/// rate, period and buffer.
fn configure(
    hw: &HwParams<'_>,
    rate: u32,
    period_ms: u32,
    direction: Direction,
) -> Result<(usize, SampleKind, usize), OpenFailure> {
    hw.set_access(Access::RWInterleaved)
        .map_err(|e| other(&e))?;
    let kind = if hw.set_format(Format::s16()).is_ok() {
        SampleKind::I16
    } else if hw.set_format(Format::float()).is_ok() {
        SampleKind::F32
    } else {
        return Err(OpenFailure::Format);
    };
    let channels = hw.set_channels_near(1).map_err(|e| other(&e))?;
    if hw.set_rate(rate, ValueOr::Nearest).is_err() {
        let min = hw.get_rate_min().unwrap_or(0);
        let max = hw.get_rate_max().unwrap_or(0);
        return Err(OpenFailure::Rate { min, max });
    }
    let asked = frames_for_ms(rate, period_ms);
    let period = hw
        .set_period_size_near(asked as alsa::pcm::Frames, ValueOr::Nearest)
        .map_err(|e| other(&e))?;
    let period = usize::try_from(period).unwrap_or(asked).max(1);
    hw.set_buffer_size_near(buffer_frames(rate, period, direction) as alsa::pcm::Frames)
        .map_err(|e| other(&e))?;
    Ok((channels.max(1) as usize, kind, asked))
}

impl Pcm {
    /// Opens `name` for `direction` at `rate` with a period near `period_ms`, in non-blocking
    /// mode. Capture is started by the first read, playback by [`start`](Self::start).
    pub(crate) fn open(
        name: &str,
        direction: Direction,
        rate: u32,
        period_ms: u32,
    ) -> Result<Pcm, OpenFailure> {
        let pcm = PCM::new(name, direction.alsa(), true).map_err(|e| other(&e))?;
        let (channels, kind, asked) = {
            let hw = HwParams::any(&pcm).map_err(|e| other(&e))?;
            let set = configure(&hw, rate, period_ms, direction)?;
            pcm.hw_params(&hw).map_err(|e| other(&e))?;
            set
        };
        let (buffer, period) = pcm.get_params().map_err(|e| other(&e))?;
        let (buffer, period) = (buffer as usize, (period as usize).max(1));
        {
            let sw = pcm.sw_params_current().map_err(|e| other(&e))?;
            // Reads and writes take whatever there is (no poll waits on this PCM); playback
            // starts when the backend says, after the silence ahead of a message is queued.
            sw.set_avail_min(1).map_err(|e| other(&e))?;
            let start = match direction {
                Direction::Capture => 1,
                Direction::Playback => buffer as alsa::pcm::Frames * 2,
            };
            sw.set_start_threshold(start).map_err(|e| other(&e))?;
            pcm.sw_params(&sw).map_err(|e| other(&e))?;
        }
        let samples = CHUNK_FRAMES * channels;
        Ok(Pcm {
            pcm,
            opened: Opened {
                rate,
                channels,
                kind,
                period,
                buffer,
                period_asked: asked,
            },
            direction,
            i16_buf: vec![0; samples],
            f32_buf: vec![0.0; samples],
        })
    }

    /// The PCM's state, brought up to date first (a plugin notices an xrun only when asked
    /// where the device stands).
    pub(crate) fn state(&self) -> State {
        let _ = self.pcm.avail_update();
        self.pcm.state()
    }

    /// Starts the stream (playback after its lead is queued; capture on its first read).
    pub(crate) fn start(&self) -> Result<(), IoFailure> {
        self.pcm.start().map_err(|e| self.sorted(&e))
    }

    /// Stops the stream at once, dropping what is queued; [`prepare`](Self::prepare) readies
    /// it again.
    pub(crate) fn stop(&self) {
        let _ = self.pcm.drop();
    }

    /// Readies a stopped stream (after an xrun or [`stop`](Self::stop)).
    pub(crate) fn prepare(&self) -> Result<(), IoFailure> {
        self.pcm.prepare().map_err(|e| self.sorted(&e))
    }

    /// Frames queued ahead in the device (playback): what plays before a frame written now.
    pub(crate) fn delay(&self) -> Option<usize> {
        self.pcm
            .delay()
            .ok()
            .map(|d| usize::try_from(d).unwrap_or(0))
    }

    fn sorted(&self, e: &alsa::Error) -> IoFailure {
        sort_io_error(e.errno(), &e.to_string())
    }

    /// After an xrun or a suspend: resume if the device can, else prepare again (and start,
    /// for capture).
    fn recover(&self) -> Result<(), IoFailure> {
        if self.pcm.state() == State::Suspended && self.pcm.resume().is_ok() {
            return Ok(());
        }
        self.pcm.prepare().map_err(|e| self.sorted(&e))?;
        if self.direction == Direction::Capture {
            self.pcm.start().map_err(|e| self.sorted(&e))?;
        }
        Ok(())
    }

    /// Capture: moves every sample the device holds, as floats, into `ring`, up to the room
    /// it has. Returns the frames moved; an xrun is recovered from and reported after.
    pub(crate) fn read_into(&mut self, ring: &mut Producer<f32>) -> Result<usize, IoFailure> {
        if self.pcm.state() == State::Prepared {
            self.pcm.start().map_err(|e| self.sorted(&e))?;
        }
        let channels = self.opened.channels;
        let mut moved = 0;
        loop {
            let room = (ring.slots() / channels).min(CHUNK_FRAMES);
            if room == 0 {
                return Ok(moved);
            }
            let n = room * channels;
            let got = match self.opened.kind {
                SampleKind::I16 => self
                    .pcm
                    .io_i16()
                    .and_then(|io| io.readi(&mut self.i16_buf[..n])),
                SampleKind::F32 => self
                    .pcm
                    .io_f32()
                    .and_then(|io| io.readi(&mut self.f32_buf[..n])),
            };
            let frames = match got {
                Ok(frames) => frames,
                Err(e) if e.errno() == libc::EAGAIN => return Ok(moved),
                Err(e) => {
                    let failure = self.sorted(&e);
                    if failure == IoFailure::Xrun {
                        self.recover()?;
                    }
                    return Err(failure);
                }
            };
            let samples = frames * channels;
            let chunk = ring.write_chunk_uninit(samples);
            if let Ok(chunk) = chunk {
                match self.opened.kind {
                    SampleKind::I16 => chunk.fill_from_iter(
                        self.i16_buf[..samples]
                            .iter()
                            .map(|&s| f32::from(s) / 32768.0),
                    ),
                    SampleKind::F32 => {
                        chunk.fill_from_iter(self.f32_buf[..samples].iter().copied())
                    }
                };
            }
            moved += frames;
            if frames < room {
                return Ok(moved);
            }
        }
    }

    /// Playback: queues mono `samples` on every channel; returns how many were taken (the
    /// rest did not fit). An underrun is recovered from (the stream is left prepared, not
    /// started) and reported.
    pub(crate) fn write(&mut self, samples: &[i16]) -> Result<usize, IoFailure> {
        let channels = self.opened.channels;
        let mut taken = 0;
        for piece in samples.chunks(CHUNK_FRAMES) {
            let n = piece.len() * channels;
            let put = match self.opened.kind {
                SampleKind::I16 => {
                    for (frame, &s) in self.i16_buf[..n].chunks_exact_mut(channels).zip(piece) {
                        frame.fill(s);
                    }
                    self.pcm
                        .io_i16()
                        .and_then(|io| io.writei(&self.i16_buf[..n]))
                }
                SampleKind::F32 => {
                    for (frame, &s) in self.f32_buf[..n].chunks_exact_mut(channels).zip(piece) {
                        frame.fill(f32::from(s) / 32768.0);
                    }
                    self.pcm
                        .io_f32()
                        .and_then(|io| io.writei(&self.f32_buf[..n]))
                }
            };
            match put {
                Ok(frames) => {
                    taken += frames;
                    if frames < piece.len() {
                        return Ok(taken);
                    }
                }
                Err(e) if e.errno() == libc::EAGAIN => return Ok(taken),
                Err(e) => {
                    let failure = self.sorted(&e);
                    if failure == IoFailure::Xrun {
                        if self.pcm.state() == State::Suspended {
                            let _ = self.pcm.resume();
                        }
                        self.pcm.prepare().map_err(|e| self.sorted(&e))?;
                    }
                    return Err(failure);
                }
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_buffers_in_frames() {
        assert_eq!(frames_for_ms(48_000, 20), 960);
        assert_eq!(frames_for_ms(16_000, 20), 320);
        assert_eq!(frames_for_ms(44_100, 20), 882);
        assert_eq!(frames_for_ms(8_000, 0), 1);
        // A quarter second, or four periods when those are longer.
        assert_eq!(buffer_frames(48_000, 960, Direction::Playback), 12_000);
        assert_eq!(buffer_frames(48_000, 4800, Direction::Playback), 19_200);
        assert_eq!(buffer_frames(48_000, 960, Direction::Capture), 48_000);
        assert!((frames_ms(960, 48_000) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn errors_sorted_by_errno() {
        assert_eq!(sort_io_error(libc::EPIPE, "x"), IoFailure::Xrun);
        assert_eq!(sort_io_error(libc::ESTRPIPE, "x"), IoFailure::Xrun);
        assert_eq!(
            sort_io_error(libc::ENODEV, "gone"),
            IoFailure::Gone("gone".into())
        );
        assert_eq!(
            sort_io_error(libc::EBADFD, "bad"),
            IoFailure::Gone("bad".into())
        );
        assert_eq!(
            sort_io_error(libc::EIO, "io"),
            IoFailure::Other("io".into())
        );
        assert_eq!(
            sort_open_error(libc::ENOENT, alsa::Error::new("snd_pcm_open", libc::ENOENT)),
            OpenFailure::NotFound
        );
        assert_eq!(
            sort_open_error(libc::EBUSY, alsa::Error::new("snd_pcm_open", libc::EBUSY)),
            OpenFailure::Busy
        );
        assert_eq!(
            sort_open_error(libc::EACCES, alsa::Error::new("snd_pcm_open", libc::EACCES)),
            OpenFailure::Permission
        );
        let refused = alsa::Error::new("snd_pcm_open", libc::ECONNREFUSED);
        assert_eq!(
            sort_open_error(libc::ECONNREFUSED, refused),
            OpenFailure::Other(refused)
        );
    }

    #[test]
    fn the_description_says_when_the_device_gave_another_period() {
        let mut o = Opened {
            rate: 48_000,
            channels: 1,
            kind: SampleKind::I16,
            period: 960,
            buffer: 12_000,
            period_asked: 960,
        };
        assert_eq!(
            o.describe(),
            "48000 Hz, 1 channel(s), i16, period 960 frames (20.0 ms), buffer 12000 frames (250 ms)"
        );
        o.period = 1024;
        assert!(
            o.describe().ends_with(
                "; asked for a period of 960 frames (20.0 ms), the device's nearest is 1024"
            ),
            "{}",
            o.describe()
        );
    }
}
