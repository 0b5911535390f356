//! WAV files: reading any common PCM layout as mono 16-bit at the rate the caller needs,
//! and writing mono 16-bit files, all at once or streaming through a [`WavSink`].

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::AudioError;
use super::debug_fields;

/// The most samples one mono 16-bit WAV file can hold: the RIFF sizes are 32-bit, so the
/// data may not exceed 4 GiB less the header (about 37 hours at 16 kHz).
pub const MAX_WAV_SAMPLES: u64 = (u32::MAX as u64 - 4096) / 2;

fn file_error(path: &Path, message: impl Into<String>) -> AudioError {
    AudioError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn io_error(path: &Path, what: &'static str, source: hound::Error) -> AudioError {
    AudioError::FileIo {
        path: path.display().to_string(),
        what,
        source,
    }
}

/// The error for a hound error raised while opening or parsing a file: a failed read keeps
/// its I/O error, content that is not usable WAV says so.
fn read_error(path: &Path, error: hound::Error) -> AudioError {
    let message = match error {
        // hound reports a file that ends too early as `Other`.
        hound::Error::IoError(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other
            ) =>
        {
            format!("not a WAV file or truncated (ends inside the header: {e})")
        }
        hound::Error::IoError(e) => return io_error(path, "cannot read", hound::Error::IoError(e)),
        hound::Error::FormatError(reason) => format!("not a valid WAV file: {reason}"),
        hound::Error::Unsupported => "unsupported WAV format (use PCM integer 8/16/24/32-bit \
                                      or 32-bit float)"
            .to_string(),
        other => return io_error(path, "cannot read", other),
    };
    file_error(path, message)
}

/// Reads a WAV file as mono 16-bit samples at `target_rate`.
///
/// Accepts any channel count (channels are averaged), integer samples of 8, 16, 24 or 32 bits
/// (any width up to 32 bits in fact) and 32-bit float samples (clipped to full scale). If the
/// file's rate differs from `target_rate`, it is converted with [`resample_linear`].
///
/// Errors name the file and say what is wrong: missing or unreadable, not a WAV file,
/// unsupported format, truncated data, a zero rate.
pub fn read_wav_mono(path: &Path, target_rate: u32) -> Result<Vec<i16>, AudioError> {
    if target_rate == 0 {
        return Err(file_error(path, "cannot convert to a sample rate of 0 Hz"));
    }
    let mut reader = match hound::WavReader::open(path) {
        Ok(reader) => reader,
        Err(hound::Error::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(file_error(path, "no such file"));
        }
        Err(e) => return Err(read_error(path, e)),
    };
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(file_error(path, "the header declares 0 channels"));
    }
    if spec.sample_rate == 0 {
        return Err(file_error(
            path,
            "the header declares a sample rate of 0 Hz",
        ));
    }
    let channels = usize::from(spec.channels);
    let announced = reader.len() as usize;
    // The header's length is not trusted for the reservation: a damaged header can claim
    // gigabytes. The vector grows past this if the data is really there.
    let mut mono = Vec::with_capacity((announced / channels).min(1 << 22));

    // Each sample scaled to the 16-bit range, then averaged over the channels of a frame.
    let mut frame_sum = 0.0f64;
    let mut in_frame = 0usize;
    let mut push = |value: f64, mono: &mut Vec<i16>| {
        frame_sum += value;
        in_frame += 1;
        if in_frame == channels {
            let average = frame_sum / channels as f64;
            mono.push(
                average
                    .round()
                    .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16,
            );
            frame_sum = 0.0;
            in_frame = 0;
        }
    };
    let mut read = 0usize;
    let truncated = |read: usize, e: hound::Error| {
        file_error(
            path,
            format!(
                "truncated or unreadable data after {read} of the {announced} samples the \
                 header announces ({e})"
            ),
        )
    };

    match spec.sample_format {
        hound::SampleFormat::Int => {
            if spec.bits_per_sample == 0 || spec.bits_per_sample > 32 {
                return Err(file_error(
                    path,
                    format!(
                        "unsupported sample width of {} bits (use 8, 16, 24 or 32)",
                        spec.bits_per_sample
                    ),
                ));
            }
            let scale = 2f64.powi(16 - i32::from(spec.bits_per_sample));
            for sample in reader.samples::<i32>() {
                let sample = sample.map_err(|e| truncated(read, e))?;
                read += 1;
                push(f64::from(sample) * scale, &mut mono);
            }
        }
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(file_error(
                    path,
                    format!(
                        "unsupported float width of {} bits (use 32-bit float)",
                        spec.bits_per_sample
                    ),
                ));
            }
            for sample in reader.samples::<f32>() {
                let sample = sample.map_err(|e| truncated(read, e))?;
                read += 1;
                let value = if sample.is_finite() {
                    f64::from(sample) * 32768.0
                } else {
                    0.0
                };
                push(value, &mut mono);
            }
        }
    }

    if spec.sample_rate == target_rate {
        Ok(mono)
    } else {
        Ok(resample_linear(&mono, spec.sample_rate, target_rate))
    }
}

/// Converts `samples` from `from_rate` to `to_rate` by linear interpolation between
/// neighbouring samples. The output has `len * to_rate / from_rate` samples (rounded).
///
/// This is a stopgap: there is no anti-alias filter, so downsampling folds content above the
/// new Nyquist frequency back into the band. A proper (windowed-sinc or polyphase) resampler
/// comes with the audio-quality work; until then, feed files at the rate they are used at
/// when quality matters. Returns an empty vector if either rate is 0.
pub fn resample_linear(samples: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == 0 || to_rate == 0 {
        return Vec::new();
    }
    if from_rate == to_rate || samples.is_empty() {
        return samples.to_vec();
    }
    let from = u64::from(from_rate);
    let to = u64::from(to_rate);
    let out_len = ((samples.len() as u64 * to + from / 2) / from).max(1);
    let last = samples.len() - 1;
    (0..out_len)
        .map(|i| {
            let position = i * from;
            let index = ((position / to) as usize).min(last);
            let fraction = (position % to) as f64 / to as f64;
            let a = f64::from(samples[index]);
            let b = f64::from(samples[(index + 1).min(last)]);
            (a + (b - a) * fraction).round() as i16
        })
        .collect()
}

/// Writes `samples` to a new mono 16-bit WAV file at `rate` (replacing an existing file).
pub fn write_wav_mono(path: &Path, rate: u32, samples: &[i16]) -> Result<(), AudioError> {
    let mut sink = WavSink::create(path, rate)?;
    sink.write(samples)?;
    sink.finalize()
}

/// A mono 16-bit WAV file written as the audio arrives.
///
/// The header is brought up to date by [`WavSink::flush`] (the file is then valid up to that
/// point, even if the process dies later), by [`WavSink::finalize`] and, failing those, when
/// the sink is dropped (errors are then lost: call `finalize` to see them).
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    path: PathBuf,
    rate: u32,
    written: u64,
    max_samples: u64,
}

debug_fields!(WavSink {
    path,
    rate,
    written,
    open: is_open,
});

impl WavSink {
    /// Creates (or replaces) the file at `path` for mono 16-bit samples at `rate`.
    pub fn create(path: &Path, rate: u32) -> Result<Self, AudioError> {
        if rate == 0 {
            return Err(file_error(path, "cannot write a WAV file at 0 Hz"));
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::create(path, spec).map_err(|e| io_error(path, "cannot create", e))?;
        Ok(Self {
            writer: Some(writer),
            path: path.to_path_buf(),
            rate,
            written: 0,
            max_samples: MAX_WAV_SAMPLES,
        })
    }

    /// Opens the WAV file at `path` to write after what it holds, or creates it when there
    /// is none. An existing file must be mono 16-bit at `rate`.
    pub fn append(path: &Path, rate: u32) -> Result<Self, AudioError> {
        if !path.exists() {
            return Self::create(path, rate);
        }
        let writer = hound::WavWriter::append(path)
            .map_err(|e| io_error(path, "cannot append to it as a WAV file", e))?;
        let spec = writer.spec();
        if spec.channels != 1
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
            || spec.sample_rate != rate
        {
            return Err(file_error(
                path,
                format!(
                    "holds {} channel(s) of {}-bit audio at {} Hz, not mono 16-bit at {rate} Hz: \
                     move it away to start a new file",
                    spec.channels, spec.bits_per_sample, spec.sample_rate
                ),
            ));
        }
        let written = u64::from(writer.len());
        Ok(Self {
            writer: Some(writer),
            path: path.to_path_buf(),
            rate,
            written,
            max_samples: MAX_WAV_SAMPLES,
        })
    }

    /// Appends samples. Fails once the file would exceed the WAV size limit
    /// ([`MAX_WAV_SAMPLES`]); nothing of a refused call is written.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(file_error(&self.path, "already finalized"));
        };
        if self.written + samples.len() as u64 > self.max_samples {
            return Err(file_error(
                &self.path,
                format!(
                    "WAV file is full ({} samples, the format's 4 GiB limit); start a new file",
                    self.written
                ),
            ));
        }
        for &sample in samples {
            writer
                .write_sample(sample)
                .map_err(|e| io_error(&self.path, "write failed", e))?;
            self.written += 1;
        }
        Ok(())
    }

    /// Updates the header and flushes to disk, so the file is valid as it stands; writing
    /// can continue afterwards.
    pub fn flush(&mut self) -> Result<(), AudioError> {
        match self.writer.as_mut() {
            Some(writer) => writer
                .flush()
                .map_err(|e| io_error(&self.path, "flush failed", e)),
            None => Ok(()),
        }
    }

    /// Completes the file and reports any error doing so.
    pub fn finalize(mut self) -> Result<(), AudioError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(writer) => writer
                .finalize()
                .map_err(|e| io_error(&self.path, "cannot complete the file", e)),
            None => Ok(()),
        }
    }

    /// Number of samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.written
    }

    /// Sample rate of the file.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is still open (not yet finalized).
    fn is_open(&self) -> bool {
        self.writer.is_some()
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `finalize` is there for callers who care.
        let _ = self.finish();
    }
}

/// A file path in the system's temporary directory, unique per test, removed when dropped.
#[cfg(test)]
pub(crate) struct TempPath(PathBuf);

#[cfg(test)]
impl TempPath {
    pub(crate) fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!(
            "zello-gateway-test-{}-{n}-{name}",
            std::process::id()
        )))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::speech::tone;

    /// Writes `samples` in the format `spec` to a file `name`, and reads it back as mono at
    /// the file's own rate.
    fn read_back(name: &str, spec: hound::WavSpec, samples: &[f64]) -> Vec<i16> {
        let file = TempPath::new(name);
        let mut writer = hound::WavWriter::create(file.path(), spec).unwrap();
        for &s in samples {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(s as f32).unwrap(),
                (_, 8) => writer.write_sample(s as i8).unwrap(),
                (_, 16) => writer.write_sample(s as i16).unwrap(),
                _ => writer.write_sample(s as i32).unwrap(),
            }
        }
        writer.finalize().unwrap();
        read_wav_mono(file.path(), spec.sample_rate).unwrap()
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    fn zero_crossings(samples: &[i16]) -> usize {
        samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count()
    }

    #[test]
    fn round_trip_mono_16_bit() {
        let file = TempPath::new("round-trip.wav");
        let samples: Vec<i16> = (0..1000)
            .map(|i| ((i * 37) % 65536 - 32768) as i16)
            .collect();
        write_wav_mono(file.path(), 16000, &samples).unwrap();
        assert_eq!(read_wav_mono(file.path(), 16000).unwrap(), samples);
        let spec = hound::WavReader::open(file.path()).unwrap().spec();
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.sample_rate, 16000);
        assert_eq!(spec.bits_per_sample, 16);
    }

    #[test]
    fn append_writes_after_what_the_file_holds_or_creates_it() {
        let file = TempPath::new("append.wav");
        let mut sink = WavSink::append(file.path(), 16000).unwrap();
        sink.write(&[1, 2, 3]).unwrap();
        sink.finalize().unwrap();
        let mut sink = WavSink::append(file.path(), 16000).unwrap();
        assert_eq!(sink.samples_written(), 3);
        sink.write(&[4, 5]).unwrap();
        sink.finalize().unwrap();
        assert_eq!(read_wav_mono(file.path(), 16000).unwrap(), [1, 2, 3, 4, 5]);
        // Another rate, or not a WAV file: refused, and the file left as it was.
        let e = WavSink::append(file.path(), 48000).unwrap_err().to_string();
        assert!(e.contains("not mono 16-bit at 48000 Hz"), "{e}");
        assert_eq!(read_wav_mono(file.path(), 16000).unwrap(), [1, 2, 3, 4, 5]);
        let text = TempPath::new("append.txt");
        std::fs::write(text.path(), "hello").unwrap();
        let e = WavSink::append(text.path(), 16000).unwrap_err().to_string();
        assert!(e.contains("cannot append to it as a WAV file"), "{e}");
    }

    #[test]
    fn empty_file_round_trip() {
        let file = TempPath::new("empty.wav");
        write_wav_mono(file.path(), 8000, &[]).unwrap();
        assert!(read_wav_mono(file.path(), 8000).unwrap().is_empty());
        assert!(read_wav_mono(file.path(), 16000).unwrap().is_empty());
    }

    #[test]
    fn stereo_is_mixed_down() {
        // Left 1000, right -200 -> 400; left 3, right 4 -> 3.5 rounds to 4.
        let interleaved = [1000.0, -200.0, 3.0, 4.0, -32768.0, -32768.0];
        let stereo = spec(2, 16000, 16, hound::SampleFormat::Int);
        assert_eq!(
            read_back("stereo.wav", stereo, &interleaved),
            vec![400, 4, -32768]
        );
    }

    #[test]
    fn many_channels_are_averaged() {
        let frame = [600.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let samples: Vec<f64> = frame.iter().cycle().take(60).copied().collect();
        let six = spec(6, 8000, 16, hound::SampleFormat::Int);
        assert_eq!(read_back("six-channels.wav", six, &samples), vec![100; 10]);
    }

    #[test]
    fn integer_widths_are_scaled_to_16_bit() {
        // The same half-scale value in every width reads as 16384.
        for (bits, value) in [
            (8u16, 64.0),
            (16, 16384.0),
            (24, 4194304.0),
            (32, 1073741824.0),
        ] {
            let mono = spec(1, 16000, bits, hound::SampleFormat::Int);
            let read = read_back(&format!("int{bits}.wav"), mono, &[value, -value, 0.0]);
            assert_eq!(read, vec![16384, -16384, 0], "{bits} bits");
        }
    }

    #[test]
    fn float_files_are_read_clipped_and_mixed_down() {
        let float = |channels| spec(channels, 16000, 32, hound::SampleFormat::Float);
        assert_eq!(
            read_back("float.wav", float(1), &[0.5, -0.5, 0.0, 1.5, -2.0, 1.0]),
            vec![16384, -16384, 0, 32767, -32768, 32767],
            "mono, clipped"
        );
        assert_eq!(
            read_back("float-stereo.wav", float(2), &[0.5, 0.0, -0.25, -0.25]),
            vec![8192, -8192],
            "stereo is mixed down"
        );
    }

    #[test]
    fn rate_conversion_keeps_the_tone_frequency() {
        let file = TempPath::new("48k.wav");
        let original = tone(48000, 1000.0, 1.0, -6.0);
        write_wav_mono(file.path(), 48000, &original).unwrap();
        let converted = read_wav_mono(file.path(), 16000).unwrap();
        assert_eq!(converted.len(), 16000);
        // 1 kHz: 2000 zero crossings per second at any rate.
        let crossings = zero_crossings(&converted);
        assert!((1990..=2010).contains(&crossings), "{crossings}");
        // And the level is kept (within a dB).
        let peak = crate::audio::level::peak_dbfs(&converted);
        assert!((peak + 6.0).abs() < 1.0, "{peak}");
    }

    #[test]
    fn upsampling_interpolates() {
        assert_eq!(
            resample_linear(&[0, 100, 200], 8000, 16000),
            vec![0, 50, 100, 150, 200, 200]
        );
        let up = resample_linear(&tone(8000, 500.0, 1.0, -6.0), 8000, 48000);
        assert_eq!(up.len(), 48000);
        let crossings = zero_crossings(&up);
        assert!((995..=1005).contains(&crossings), "{crossings}");
    }

    #[test]
    fn resample_edge_cases() {
        assert!(resample_linear(&[1, 2, 3], 0, 8000).is_empty());
        assert!(resample_linear(&[1, 2, 3], 8000, 0).is_empty());
        assert!(resample_linear(&[], 8000, 16000).is_empty());
        assert_eq!(resample_linear(&[1, 2, 3], 8000, 8000), vec![1, 2, 3]);
        assert_eq!(resample_linear(&[7], 48000, 8000), vec![7]);
        assert_eq!(resample_linear(&[0, 30, 60], 48000, 16000), vec![0]);
        assert_eq!(resample_linear(&[0; 6], 48000, 16000).len(), 2);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let file = TempPath::new("does-not-exist.wav");
        let err = read_wav_mono(file.path(), 16000).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("does-not-exist.wav"), "{text}");
        assert!(text.contains("no such file"), "{text}");
    }

    #[test]
    fn non_wav_file_is_an_error() {
        let file = TempPath::new("not-audio.wav");
        std::fs::write(file.path(), b"This is a text file and not audio at all.\n").unwrap();
        let text = read_wav_mono(file.path(), 16000).unwrap_err().to_string();
        assert!(text.contains("not-audio.wav"), "{text}");
        assert!(text.contains("not a valid WAV file"), "{text}");

        let short = TempPath::new("short.wav");
        std::fs::write(short.path(), b"RIF").unwrap();
        let text = read_wav_mono(short.path(), 16000).unwrap_err().to_string();
        assert!(
            text.contains("short.wav") && text.contains("not a WAV file"),
            "{text}"
        );
    }

    #[test]
    fn truncated_data_is_an_error() {
        let file = TempPath::new("truncated.wav");
        write_wav_mono(file.path(), 16000, &[1000; 100]).unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        std::fs::write(file.path(), &bytes[..bytes.len() - 51]).unwrap();
        let text = read_wav_mono(file.path(), 16000).unwrap_err().to_string();
        assert!(text.contains("truncated"), "{text}");
    }

    #[test]
    fn header_claiming_gigabytes_is_an_error_not_a_crash() {
        let file = TempPath::new("huge-header.wav");
        write_wav_mono(file.path(), 16000, &[5; 10]).unwrap();
        let mut bytes = std::fs::read(file.path()).unwrap();
        // A plain 16-bit mono header is 44 bytes with the data length last.
        assert_eq!(&bytes[36..40], b"data");
        bytes[40..44].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        std::fs::write(file.path(), &bytes).unwrap();
        let text = read_wav_mono(file.path(), 16000).unwrap_err().to_string();
        assert!(text.contains("after 10 of"), "{text}");
    }

    #[test]
    fn zero_rates_are_errors() {
        let file = TempPath::new("zero-rate.wav");
        write_wav_mono(file.path(), 16000, &[1, 2]).unwrap();
        assert!(read_wav_mono(file.path(), 0).is_err());
        assert!(write_wav_mono(file.path(), 0, &[1]).is_err());
    }

    #[test]
    fn sink_streams_and_is_valid_after_flush() {
        let file = TempPath::new("sink.wav");
        let mut sink = WavSink::create(file.path(), 16000).unwrap();
        assert_eq!(sink.sample_rate(), 16000);
        assert_eq!(sink.path(), file.path());
        sink.write(&[1, 2, 3]).unwrap();
        sink.flush().unwrap();
        // Readable while still open.
        assert_eq!(read_wav_mono(file.path(), 16000).unwrap(), vec![1, 2, 3]);
        sink.write(&[4, 5]).unwrap();
        assert_eq!(sink.samples_written(), 5);
        sink.finalize().unwrap();
        assert_eq!(
            read_wav_mono(file.path(), 16000).unwrap(),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn sink_finalizes_on_drop() {
        let file = TempPath::new("sink-drop.wav");
        {
            let mut sink = WavSink::create(file.path(), 8000).unwrap();
            sink.write(&[10; 80]).unwrap();
        }
        assert_eq!(read_wav_mono(file.path(), 8000).unwrap(), vec![10; 80]);
    }

    #[test]
    fn sink_refuses_to_overflow_the_format() {
        let file = TempPath::new("sink-full.wav");
        let mut sink = WavSink::create(file.path(), 8000).unwrap();
        sink.max_samples = 10;
        sink.write(&[1; 8]).unwrap();
        let text = sink.write(&[1; 3]).unwrap_err().to_string();
        assert!(text.contains("full"), "{text}");
        sink.write(&[2; 2]).unwrap();
        sink.finalize().unwrap();
        let read = read_wav_mono(file.path(), 8000).unwrap();
        assert_eq!(read.len(), 10);
    }

    #[test]
    fn sink_in_missing_directory_is_an_error() {
        let dir = TempPath::new("no-such-dir");
        let path = dir.path().join("out.wav");
        let text = WavSink::create(&path, 16000).unwrap_err().to_string();
        assert!(
            text.contains("out.wav") && text.contains("cannot create"),
            "{text}"
        );
    }
}
