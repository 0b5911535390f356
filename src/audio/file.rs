//! The file backend: a WAV file (or samples in memory) as the radio's receiver, and a WAV
//! file (or memory) as its transmitter. For tests, demonstrations and headless use.
//!
//! Neither side paces itself: the codec engine's clock asks for and hands over frames at
//! real-time pace, so the same backend runs in real time in the daemon and as fast as the
//! test clock goes in tests.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::wav::{WavSink, read_wav_mono};
use super::{AudioError, AudioInput, AudioOutput};

/// Plays samples (from a WAV file or memory) as the radio's received audio: optional leading
/// silence, then the samples frame by frame, then silence for ever.
#[derive(Debug, Clone)]
pub struct FileInput {
    samples: Vec<i16>,
    rate: u32,
    position: usize,
    silence_left: usize,
}

impl FileInput {
    /// Loads a WAV file (any layout, see [`read_wav_mono`]) converted to `rate`.
    pub fn open(path: &Path, rate: u32) -> Result<Self, AudioError> {
        Ok(Self::from_samples(read_wav_mono(path, rate)?, rate))
    }

    /// Plays `samples`, which are at `rate`.
    pub fn from_samples(samples: Vec<i16>, rate: u32) -> Self {
        Self {
            samples,
            rate,
            position: 0,
            silence_left: 0,
        }
    }

    /// Starts with `ms` milliseconds of silence before the samples (replacing any leading
    /// silence set before), as a radio that is quiet for a while before a call comes in.
    pub fn with_leading_silence(mut self, ms: u32) -> Self {
        self.silence_left = (u64::from(self.rate) * u64::from(ms) / 1000) as usize;
        self
    }

    /// True once the leading silence and every sample have been delivered (the input now
    /// delivers silence).
    pub fn finished(&self) -> bool {
        self.silence_left == 0 && self.position >= self.samples.len()
    }

    /// Samples still to come before the input goes silent for good (leading silence
    /// included).
    pub fn remaining(&self) -> usize {
        self.silence_left + self.samples.len().saturating_sub(self.position)
    }
}

impl AudioInput for FileInput {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Always delivers a whole frame: file audio is always "available".
    fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        let mut filled = 0;
        if self.silence_left > 0 {
            let n = self.silence_left.min(frame.len());
            frame[..n].fill(0);
            self.silence_left -= n;
            filled = n;
        }
        let rest = &mut frame[filled..];
        let available = &self.samples[self.position.min(self.samples.len())..];
        let n = available.len().min(rest.len());
        rest[..n].copy_from_slice(&available[..n]);
        rest[n..].fill(0);
        self.position += n;
        Ok(true)
    }
}

/// Records the radio's transmit audio into one WAV file at the output's rate, all messages
/// back to back.
///
/// The header is brought up to date at every end of message, so the file is a valid WAV
/// file (up to the last message) even while the gateway runs or if it dies. The file is
/// completed when the output is dropped or [`FileOutput::finalize`]d.
#[derive(Debug)]
pub struct FileOutput {
    sink: WavSink,
    messages: u64,
}

impl FileOutput {
    /// Creates (or replaces) the WAV file at `path`, mono 16-bit at `rate`.
    pub fn create(path: &Path, rate: u32) -> Result<Self, AudioError> {
        Ok(Self {
            sink: WavSink::create(path, rate)?,
            messages: 0,
        })
    }

    /// Writes after what the WAV file at `path` holds (it must be mono 16-bit at `rate`),
    /// or creates it.
    pub fn append(path: &Path, rate: u32) -> Result<Self, AudioError> {
        Ok(Self {
            sink: WavSink::append(path, rate)?,
            messages: 0,
        })
    }

    /// Samples in the file so far (those it held before, when appending).
    pub fn samples_written(&self) -> u64 {
        self.sink.samples_written()
    }

    /// Number of messages ended so far.
    pub fn messages_ended(&self) -> u64 {
        self.messages
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        self.sink.path()
    }

    /// Completes the file and reports any error doing so.
    pub fn finalize(self) -> Result<(), AudioError> {
        self.sink.finalize()
    }
}

impl AudioOutput for FileOutput {
    fn sample_rate(&self) -> u32 {
        self.sink.sample_rate()
    }

    fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        self.sink.write(frame)
    }

    /// Updates the WAV header so the file is valid as it stands.
    fn end_of_message(&mut self) -> Result<(), AudioError> {
        self.messages += 1;
        self.sink.flush()
    }
}

/// Every sample written to a [`MemoryOutput`], shared with whoever holds the handle.
pub type SamplesHandle = Arc<Mutex<Vec<i16>>>;

/// The finished messages of a [`MemoryOutput`], one vector of samples per message.
pub type MessagesHandle = Arc<Mutex<Vec<Vec<i16>>>>;

/// Keeps the transmit audio in memory, for tests: every sample in one vector and, at each
/// end of message, the samples of that message as one entry of a list of messages. Take the
/// handles ([`MemoryOutput::samples`], [`MemoryOutput::messages`]) before handing the output
/// to the code under test.
#[derive(Debug)]
pub struct MemoryOutput {
    rate: u32,
    samples: SamplesHandle,
    messages: MessagesHandle,
    message_start: usize,
}

/// Locks a test handle, ignoring poisoning (a panicking test thread leaves plain data).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryOutput {
    /// An empty recording at `rate`.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            samples: Arc::default(),
            messages: Arc::default(),
            message_start: 0,
        }
    }

    /// Handle on every sample written so far (all messages back to back, including the
    /// message in progress).
    pub fn samples(&self) -> SamplesHandle {
        Arc::clone(&self.samples)
    }

    /// Handle on the finished messages (a message with no samples is not recorded).
    pub fn messages(&self) -> MessagesHandle {
        Arc::clone(&self.messages)
    }
}

impl AudioOutput for MemoryOutput {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        lock(&self.samples).extend_from_slice(frame);
        Ok(())
    }

    fn end_of_message(&mut self) -> Result<(), AudioError> {
        let samples = lock(&self.samples);
        let start = self.message_start.min(samples.len());
        if start < samples.len() {
            lock(&self.messages).push(samples[start..].to_vec());
        }
        self.message_start = samples.len();
        Ok(())
    }
}

/// An output that discards audio, for radios configured without one.
#[derive(Debug, Default)]
pub struct NullOutput;

impl AudioOutput for NullOutput {
    fn sample_rate(&self) -> u32 {
        crate::audio::CODEC_RATE
    }

    fn write_frame(&mut self, _frame: &[i16]) -> Result<(), AudioError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav::{TempPath, write_wav_mono};

    fn read_all(input: &mut dyn AudioInput, frame_len: usize, frames: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut frame = vec![1234i16; frame_len];
        for _ in 0..frames {
            assert!(input.read_frame(&mut frame).unwrap());
            out.extend_from_slice(&frame);
        }
        out
    }

    #[test]
    fn input_delivers_frames_then_silence() {
        let samples: Vec<i16> = (1..=25).collect();
        let mut input = FileInput::from_samples(samples.clone(), 8000);
        assert_eq!(input.sample_rate(), 8000);
        assert!(!input.finished());
        assert_eq!(input.remaining(), 25);
        let out = read_all(&mut input, 10, 2);
        assert_eq!(out, samples[..20].to_vec());
        assert!(!input.finished());
        // The partial last frame is padded with silence.
        let out = read_all(&mut input, 10, 1);
        assert_eq!(&out[..5], &samples[20..]);
        assert_eq!(&out[5..], &[0; 5]);
        assert!(input.finished());
        assert_eq!(input.remaining(), 0);
        // Silence for ever.
        assert_eq!(read_all(&mut input, 10, 100), vec![0; 1000]);
        assert!(input.finished());
    }

    #[test]
    fn input_leading_silence() {
        let mut input = FileInput::from_samples(vec![5; 30], 1000).with_leading_silence(15);
        assert_eq!(input.remaining(), 45);
        let out = read_all(&mut input, 10, 5);
        assert_eq!(&out[..15], &[0; 15]);
        assert_eq!(&out[15..45], &[5; 30]);
        assert_eq!(&out[45..], &[0; 5]);
        assert!(input.finished());
    }

    #[test]
    fn leading_silence_is_replaced_not_added() {
        let input = FileInput::from_samples(vec![1], 16000)
            .with_leading_silence(100)
            .with_leading_silence(20);
        assert_eq!(input.remaining(), 321);
    }

    #[test]
    fn empty_input_is_silence() {
        let mut input = FileInput::from_samples(Vec::new(), 16000);
        assert!(input.finished());
        assert_eq!(read_all(&mut input, 320, 3), vec![0; 960]);
        let mut zero_length = [0i16; 0];
        assert!(input.read_frame(&mut zero_length).unwrap());
    }

    #[test]
    fn input_opens_wav_files_at_its_rate() {
        let file = TempPath::new("input.wav");
        write_wav_mono(file.path(), 8000, &[100; 80]).unwrap();
        let mut input = FileInput::open(file.path(), 16000).unwrap();
        assert_eq!(input.sample_rate(), 16000);
        assert_eq!(input.remaining(), 160);
        let out = read_all(&mut input, 160, 1);
        assert_eq!(out, vec![100; 160]);
        assert!(input.finished());
    }

    #[test]
    fn input_missing_file_is_an_error() {
        let file = TempPath::new("missing-input.wav");
        let err = FileInput::open(file.path(), 16000).unwrap_err();
        assert!(matches!(err, AudioError::File { .. }));
    }

    #[test]
    fn file_output_records_all_messages() {
        let file = TempPath::new("output.wav");
        let mut output = FileOutput::create(file.path(), 16000).unwrap();
        assert_eq!(output.sample_rate(), 16000);
        assert_eq!(output.path(), file.path());
        output.write_frame(&[1; 320]).unwrap();
        output.write_frame(&[2; 320]).unwrap();
        output.end_of_message().unwrap();
        assert_eq!(output.samples_written(), 640);
        assert_eq!(output.messages_ended(), 1);
        // Valid after the end of a message, while still open.
        let read = read_wav_mono(file.path(), 16000).unwrap();
        assert_eq!(read.len(), 640);
        output.write_frame(&[3; 160]).unwrap();
        output.end_of_message().unwrap();
        output.finalize().unwrap();
        let read = read_wav_mono(file.path(), 16000).unwrap();
        assert_eq!(read.len(), 800);
        assert_eq!(&read[..320], &[1; 320]);
        assert_eq!(&read[640..], &[3; 160]);
    }

    #[test]
    fn file_output_completes_on_drop() {
        let file = TempPath::new("output-drop.wav");
        {
            let mut output: Box<dyn AudioOutput> =
                Box::new(FileOutput::create(file.path(), 8000).unwrap());
            output.write_frame(&[7; 160]).unwrap();
        }
        assert_eq!(read_wav_mono(file.path(), 8000).unwrap(), vec![7; 160]);
    }

    #[test]
    fn file_output_in_missing_directory_is_an_error() {
        let dir = TempPath::new("missing-dir");
        assert!(FileOutput::create(&dir.path().join("x.wav"), 16000).is_err());
    }

    #[test]
    fn memory_output_keeps_samples_and_messages() {
        let output = MemoryOutput::new(16000);
        let samples = output.samples();
        let messages = output.messages();
        let mut output: Box<dyn AudioOutput> = Box::new(output);
        assert_eq!(output.sample_rate(), 16000);

        output.write_frame(&[1, 2]).unwrap();
        output.write_frame(&[3]).unwrap();
        assert_eq!(*samples.lock().unwrap(), vec![1, 2, 3]);
        assert!(messages.lock().unwrap().is_empty());
        output.end_of_message().unwrap();
        // An end of message with nothing written records nothing.
        output.end_of_message().unwrap();
        output.write_frame(&[4, 5]).unwrap();
        output.end_of_message().unwrap();
        output.write_frame(&[6]).unwrap();

        assert_eq!(*samples.lock().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(*messages.lock().unwrap(), vec![vec![1, 2, 3], vec![4, 5]]);
    }

    #[test]
    fn memory_output_survives_a_cleared_handle() {
        let mut output = MemoryOutput::new(8000);
        let samples = output.samples();
        output.write_frame(&[1, 2, 3]).unwrap();
        samples.lock().unwrap().clear();
        output.end_of_message().unwrap();
        output.write_frame(&[9]).unwrap();
        output.end_of_message().unwrap();
        assert_eq!(*output.messages().lock().unwrap(), vec![vec![9]]);
    }
}
