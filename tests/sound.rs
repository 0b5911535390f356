//! The sound-card backend against a real, real-time device: PulseAudio null sinks behind ALSA's
//! pulse plugin, set up by `scripts/pulse-test-env.sh` (which `scripts/test.sh` runs first).
//!
//! - `radio_spk`: the gateway plays the radio's transmit audio here; the tests record it back
//!   from `radio_spk.monitor` with `parec`.
//! - `radio_mic`: the tests play the radio's receive audio into it with `paplay -d radio_mic`;
//!   the gateway captures it from `radio_mic.monitor`.
//!
//! The tests share one sound server, so they run one at a time (`serial`). Without the server
//! they fail and say how to start it.

mod common;
use common::setup_pulse;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serial_test::serial;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zello_gateway::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder};
use zello_gateway::audio::sound::{CpalInput, CpalOutput, DeviceHealth, SoundSettings, SoundStats};
use zello_gateway::audio::{AudioError, AudioInput, AudioOutput, CODEC_RATE};
use zello_gateway::gateway::engine::{self, Engine, EngineCommand, EngineEvent};
use zello_gateway::parts;
use zello_gateway::radio::sim::FlagCarrier;
use zello_gateway::zello::protocol::CodecHeader;

const SETUP: &str = "run scripts/pulse-test-env.sh first (it installs PulseAudio, starts a \
                     private server and writes the ALSA devices these tests use)";

fn socket() -> String {
    if let Ok(s) = std::env::var("ZELLO_PULSE_SOCKET") {
        return s;
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "0".into());
    format!("/tmp/zello-gateway-pulse-{uid}/native")
}

fn pulse_cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("PULSE_SERVER", format!("unix:{}", socket()));
    c
}

fn pactl(args: &[&str]) -> Result<String, String> {
    let out = pulse_cmd("pactl")
        .args(args)
        .output()
        .map_err(|e| format!("pactl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "pactl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Fails the test, saying how to set things up, unless the server and both sinks are there.
fn require_pulse() {
    let sinks = match pactl(&["list", "short", "sinks"]) {
        Ok(s) => s,
        Err(e) => panic!("the PulseAudio test server is not reachable ({e}); {SETUP}"),
    };
    for sink in ["radio_spk", "radio_mic"] {
        assert!(
            sinks.lines().any(|l| l.split('\t').nth(1) == Some(sink)),
            "the PulseAudio null sink {sink} is missing; {SETUP}"
        );
    }
}

fn settings(rate: u32) -> SoundSettings {
    SoundSettings {
        input: "radio_mic".into(),
        output: "radio_spk".into(),
        sample_rate: rate,
        period_ms: 20,
    }
}

/// The radio's sound card both ways at 48 kHz, once [`require_pulse`] has found the server
/// and its sinks.
fn pulse_both_ways() -> (CpalInput, CpalOutput) {
    require_pulse();
    let input = CpalInput::open(&settings(48_000)).unwrap();
    let output = CpalOutput::open(&settings(48_000)).unwrap();
    (input, output)
}

/// Absolute-deadline ticks, as the codec engine runs.
struct Pacer {
    next: Instant,
    period: Duration,
}

impl Pacer {
    fn new(period: Duration) -> Self {
        Self {
            next: Instant::now(),
            period,
        }
    }

    fn wait(&mut self) {
        self.next += self.period;
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        }
    }
}

/// `parec` recording a source as 16 kHz mono, 16-bit.
struct Recorder {
    child: Child,
    data: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl Recorder {
    fn start(source: &str) -> Recorder {
        // Small blocks, as a sound card moves audio: a null sink whose clients ask for no
        // latency renders in blocks of up to 2 s.
        let mut child = pulse_cmd("parec")
            .args([
                "--latency-msec=40",
                "-d",
                source,
                "--format=s16le",
                "--rate=16000",
                "--channels=1",
                "--latency-msec=20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run parec ({e}); {SETUP}"));
        let mut stdout = child.stdout.take().unwrap();
        let data = Arc::new(Mutex::new(Vec::new()));
        let sink = data.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        // Let parec connect before anything plays.
        let deadline = Instant::now() + Duration::from_secs(5);
        while data.lock().unwrap().len() < 3200 {
            assert!(Instant::now() < deadline, "parec records nothing");
            std::thread::sleep(Duration::from_millis(10));
        }
        Recorder {
            child,
            data,
            reader,
        }
    }

    /// Waits (up to 10 s) until `seconds` of tone have been recorded: an idle null sink
    /// renders in blocks of up to 2 s, and a loaded machine delays it further.
    fn wait_for_tone(&self, seconds: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let samples: Vec<i16> = self
                .data
                .lock()
                .unwrap()
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            if loud_part(&samples, CODEC_RATE).len() as f64
                > (seconds - 0.3) * f64::from(CODEC_RATE)
            {
                // The tone's last block, and a little silence after it.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> Vec<i16> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
        let bytes = self.data.lock().unwrap();
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }
}

fn tone(rate: u32, freq: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

fn rms(x: &[i16]) -> f64 {
    (x.iter()
        .map(|&v| (f64::from(v) / 32768.0).powi(2))
        .sum::<f64>()
        / x.len().max(1) as f64)
        .sqrt()
}

/// The loud middle of a recording: blocks of 20 ms above -30 dBFS, less 100 ms at each end.
fn loud_part(x: &[i16], rate: u32) -> &[i16] {
    let block = rate as usize / 50;
    let loud: Vec<usize> = x
        .chunks(block)
        .enumerate()
        .filter(|(_, b)| rms(b) > 0.03)
        .map(|(i, _)| i)
        .collect();
    let (Some(&first), Some(&last)) = (loud.first(), loud.last()) else {
        return &[];
    };
    let trim = rate as usize / 10;
    let start = first * block + trim;
    let end = ((last + 1) * block).min(x.len()).saturating_sub(trim);
    if end > start { &x[start..end] } else { &[] }
}

/// Frequency from the positive-going zero crossings.
fn frequency(x: &[i16], rate: u32) -> f64 {
    let ups: Vec<usize> = x
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0 && w[1] >= 0)
        .map(|(i, _)| i)
        .collect();
    if ups.len() < 2 {
        return 0.0;
    }
    let cycles = (ups.len() - 1) as f64;
    let span = (ups[ups.len() - 1] - ups[0]) as f64 / f64::from(rate);
    cycles / span
}

fn dbfs(level: f64) -> f64 {
    20.0 * level.max(1e-9).log10()
}

/// Checks that `x` (16 kHz) holds a tone of `freq` at `expected_rms`, within 1.5 dB; returns
/// the measured frequency, level and length.
fn check_tone(what: &str, x: &[i16], freq: f64, seconds: f64, expected_rms: f64) {
    let part = loud_part(x, CODEC_RATE);
    assert!(
        part.len() as f64 > (seconds - 0.3) * f64::from(CODEC_RATE),
        "{what}: only {} samples of tone in {} recorded",
        part.len(),
        x.len()
    );
    let f = frequency(part, CODEC_RATE);
    let level = rms(part);
    eprintln!(
        "{what}: {:.1} Hz, {:.2} dBFS, {:.2} s of tone",
        f,
        dbfs(level),
        part.len() as f64 / f64::from(CODEC_RATE)
    );
    assert!((f - freq).abs() < freq * 0.01, "{what}: tone at {f} Hz");
    assert!(
        (dbfs(level) - dbfs(expected_rms)).abs() < 1.5,
        "{what}: level {:.2} dBFS, expected {:.2}",
        dbfs(level),
        dbfs(expected_rms)
    );
}

fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn paplay(path: &Path) -> Child {
    pulse_cmd("paplay")
        .args(["--latency-msec=40", "-d", "radio_mic"])
        .arg(path)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run paplay ({e}); {SETUP}"))
}

fn temp_wav(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "zello-gateway-sound-{}-{name}.wav",
        std::process::id()
    ))
}

/// Plays 1.5 s of a 1 kHz tone through `CpalOutput` at `rate`, in 20 ms frames paced like the
/// engine, and records the sink.
fn play_tone(rate: u32) {
    let mut out = CpalOutput::open(&settings(rate)).expect("open radio_spk");
    assert_eq!(out.health(), DeviceHealth::Open);
    let engine_rate = out.sample_rate();
    assert_eq!(engine_rate, if rate == 44_100 { 48_000 } else { rate });
    let rec = Recorder::start("radio_spk.monitor");
    let base = wait_for_playback(&mut out);
    let samples = tone(engine_rate, 1000.0, 1.5, 0.5);
    let frame = engine_rate as usize / 50;
    let mut pacer = Pacer::new(Duration::from_millis(20));
    for f in samples.chunks(frame) {
        out.write_frame(f).unwrap();
        pacer.wait();
    }
    out.end_of_message().unwrap();
    rec.wait_for_tone(1.5);
    let recorded = rec.stop();
    let stats = out.stats();
    eprintln!("playback at {rate} Hz: {stats:?}");
    check_tone(
        &format!("radio_spk at {rate} Hz"),
        &recorded,
        1000.0,
        1.5,
        0.5 / 2f64.sqrt(),
    );
    assert_eq!(
        stats.underruns, base.underruns,
        "underruns while playing: {stats:?}"
    );
    assert_eq!(stats.dropped_samples, base.dropped_samples, "{stats:?}");
    assert_eq!(stats.losses, 0, "{stats:?}");
    assert!(stats.callbacks > 10, "{stats:?}");
}

#[test]
#[serial(pulse)]
fn a_tone_written_to_the_output_comes_out_of_the_sink() {
    require_pulse();
    play_tone(48_000);
    // A 44.1 kHz card: the engine still writes 48 kHz, resampled on the way.
    play_tone(44_100);
}

/// Wakes the sink up and returns the output's counters then, for the tests to count from.
/// A PulseAudio null sink that has been idle sleeps up to 2 s before it takes a new stream's
/// first audio (a sound card takes it at once; the output stops its stream between messages,
/// so the test's message would lose its start to the sink, not to the gateway), and the
/// device's buffer is full by then. Plays silence paced like the engine until the device
/// takes it whole, holding back while more than 120 ms is queued, for 200 ms in a row; then
/// ends that message. The stream runs on into the test's message.
fn wait_for_playback(output: &mut CpalOutput) -> SoundStats {
    let silence = vec![0i16; output.sample_rate() as usize / 50];
    let mut pacer = Pacer::new(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut taken = 0;
    while taken < 10 {
        let queued = output.delay(silence.len());
        if queued > Duration::from_millis(120) {
            taken = 0;
        } else {
            let dropped = output.stats().dropped_samples;
            output.write_frame(&silence).unwrap();
            taken = if output.stats().dropped_samples == dropped {
                taken + 1
            } else {
                0
            };
        }
        assert!(
            Instant::now() < deadline,
            "the playback stream does not run: {queued:?} queued, {:?}",
            output.stats()
        );
        pacer.wait();
    }
    output.end_of_message().unwrap();
    output.stats()
}

/// Reads `CpalInput` until it delivers, paced like the engine (20 ms frames).
fn wait_for_capture(input: &mut CpalInput, frame: &mut [i16]) {
    // A null sink that has been idle renders in blocks of up to 2 s, so its monitor's first
    // audio can take that long.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pacer = Pacer::new(Duration::from_millis(20));
    while !input.read_frame(frame).unwrap() {
        assert!(Instant::now() < deadline, "the capture delivers nothing");
        pacer.wait();
    }
}

/// Reads `CpalInput` in 20 ms frames, paced like the engine, while `paplay` plays a 700 Hz
/// tone into radio_mic.
fn capture_tone(rate: u32) {
    let mut input = CpalInput::open(&settings(rate)).expect("open radio_mic");
    assert_eq!(input.sample_rate(), CODEC_RATE);
    let wav = temp_wav(&format!("mic-{rate}"));
    write_wav(&wav, 48_000, &tone(48_000, 700.0, 1.5, 0.5));
    let mut frame = vec![0i16; 320];
    wait_for_capture(&mut input, &mut frame);
    let before = input.stats();
    let mut got = Vec::new();
    let (mut ticks, mut short_ticks) = (0, 0);
    let mut pacer = Pacer::new(Duration::from_millis(20));
    let mut player = paplay(&wav);
    let start = Instant::now();
    let mut finished: Option<Instant> = None;
    while finished.is_none_or(|f| f.elapsed() < Duration::from_millis(500)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "paplay does not finish"
        );
        if finished.is_none() && player.try_wait().unwrap().is_some() {
            finished = Some(Instant::now());
        }
        // One frame per tick, and whatever else is there, as the engine catches up after a
        // late tick.
        let mut read = 0;
        while input.read_frame(&mut frame).unwrap() {
            got.extend_from_slice(&frame);
            read += 1;
        }
        ticks += 1;
        if read == 0 {
            short_ticks += 1;
        }
        pacer.wait();
    }
    let status = player.wait().unwrap();
    let _ = std::fs::remove_file(&wav);
    assert!(status.success(), "paplay failed");
    let stats = input.stats();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "capture at {rate} Hz: {stats:?}; {:.2} s of audio in {seconds:.2} s, {ticks} ticks, \
         {short_ticks} without a whole frame",
        got.len() as f64 / f64::from(CODEC_RATE)
    );
    // Nothing lost: the whole tone is there (check_tone checks its length); no wall-clock
    // assertion, since a loaded machine delays the sink's delivery.
    assert_eq!(stats.overruns, before.overruns, "overruns: {stats:?}");
    check_tone(
        &format!("radio_mic at {rate} Hz"),
        &got,
        700.0,
        1.5,
        0.5 / 2f64.sqrt(),
    );
    assert_eq!(stats.overruns, 0, "overruns: {stats:?}");
    assert_eq!(stats.skipped_frames, 0, "{stats:?}");
    assert_eq!(stats.losses, 0, "{stats:?}");
}

#[test]
#[serial(pulse)]
fn a_wav_played_into_the_mic_sink_is_read_as_16k_frames() {
    require_pulse();
    capture_tone(48_000);
    capture_tone(44_100);
}

#[test]
#[serial(pulse)]
fn steady_state_full_duplex_has_no_overruns_or_underruns() {
    let (mut input, mut output) = pulse_both_ways();
    // 60 ms frames, the codec's default: one read and one write per tick for 4 s.
    let mut frame_in = vec![0i16; 960];
    // The capture first: the playback's warm-up runs on into the message.
    wait_for_capture(&mut input, &mut frame_in);
    let base = wait_for_playback(&mut output);
    let speech = tone(48_000, 440.0, 4.0, 0.3);
    let mut pacer = Pacer::new(Duration::from_millis(60));
    let mut frames_in = 0;
    for chunk in speech.chunks(2880) {
        while input.read_frame(&mut frame_in).unwrap() {
            frames_in += 1;
        }
        output.write_frame(chunk).unwrap();
        pacer.wait();
    }
    output.end_of_message().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (si, so) = (input.stats(), output.stats());
    eprintln!("steady state: input {si:?}, {frames_in} frames; output {so:?}");
    assert!(frames_in >= 60, "{frames_in} frames in 4 s");
    assert_eq!(
        (si.overruns, si.skipped_frames, si.losses),
        (0, 0, 0),
        "{si:?}"
    );
    assert_eq!((so.underruns, so.losses), (base.underruns, 0), "{so:?}");
    // The null sink consumes in blocks of its own: at most part of one frame may not fit
    // while it catches up after the warm-up (a sound card takes it at once).
    assert!(
        so.dropped_samples - base.dropped_samples < 2880,
        "{so:?}, {base:?} before the message"
    );
}

#[test]
#[serial(pulse)]
fn unknown_devices_and_rates_give_clear_errors() {
    require_pulse();
    let bad = SoundSettings {
        input: "no_such_radio".into(),
        output: "no_such_radio".into(),
        sample_rate: 48_000,
        period_ms: 20,
    };
    let e = CpalInput::open(&bad).unwrap_err();
    assert!(matches!(e, AudioError::DeviceOpen { .. }), "{e:?}");
    let text = e.to_string();
    eprintln!("{text}");
    assert!(
        text.starts_with("audio.input = \"no_such_radio\""),
        "{text}"
    );
    assert!(text.contains("no such sound device"), "{text}");
    assert!(
        text.contains("radio_spk") && text.contains("radio_mic"),
        "{text}"
    );
    let text = CpalOutput::open(&bad).unwrap_err().to_string();
    assert!(
        text.starts_with("audio.output = \"no_such_radio\""),
        "{text}"
    );
    // The pulse plugin takes 1 Hz to 384 kHz.
    let text = CpalOutput::open(&settings(400_000))
        .unwrap_err()
        .to_string();
    eprintln!("{text}");
    assert!(
        text.contains("400000 Hz (audio.sample_rate) is not supported"),
        "{text}"
    );
    assert!(text.contains("1-384000 Hz"), "{text}");
    let text = CpalInput::open(&settings(0)).unwrap_err().to_string();
    assert!(text.contains("audio.sample_rate = 0"), "{text}");
}

#[test]
#[serial(pulse)]
fn the_device_listing_names_the_test_devices() {
    require_pulse();
    let devices = zello_gateway::audio::sound::list_devices();
    let spk = devices
        .iter()
        .find(|d| d.name == "radio_spk")
        .expect("radio_spk listed");
    assert!(spk.output, "{spk:?}");
    assert!(spk.sample_rates.contains(&48_000), "{spk:?}");
    assert!(spk.channels.contains(&1), "{spk:?}");
    let text = zello_gateway::audio::sound::describe_devices();
    eprintln!("{text}");
    assert!(text.contains("radio_mic"), "{text}");
    assert!(!text.contains("\n  speexrate\n"), "{text}");
}

/// Starts the server again if a test leaves it stopped, so later tests find it.
struct RestartPulse;

impl Drop for RestartPulse {
    fn drop(&mut self) {
        if pactl(&["info"]).is_err() {
            setup_pulse();
        }
    }
}

#[test]
#[serial(pulse)]
fn a_lost_device_is_reported_once_and_comes_back_on_its_own() {
    require_pulse();
    let _restart = RestartPulse;
    let (mut input, mut output) = pulse_both_ways();
    let mut frame_in = vec![0i16; 320];
    let frame_out = vec![0i16; 960];
    let mut pacer = Pacer::new(Duration::from_millis(20));
    let (mut in_errors, mut out_errors) = (Vec::new(), Vec::new());
    let mut tick = |input: &mut CpalInput, output: &mut CpalOutput| -> bool {
        let mut read = false;
        loop {
            match input.read_frame(&mut frame_in) {
                Ok(true) => read = true,
                Ok(false) => break,
                Err(e) => {
                    in_errors.push(e);
                    break;
                }
            }
        }
        if let Err(e) = output.write_frame(&frame_out) {
            out_errors.push(e);
        }
        pacer.wait();
        read
    };
    // Running.
    for _ in 0..25 {
        tick(&mut input, &mut output);
    }
    assert_eq!(input.health(), DeviceHealth::Open);
    // The sound server goes away, as a USB card that is unplugged.
    pactl(&["exit"]).ok();
    let lost_at = Instant::now();
    while lost_at.elapsed() < Duration::from_secs(3) {
        tick(&mut input, &mut output);
    }
    assert!(
        matches!(input.health(), DeviceHealth::Lost { .. }),
        "{:?}",
        input.health()
    );
    assert!(
        matches!(output.health(), DeviceHealth::Lost { .. }),
        "{:?}",
        output.health()
    );
    // Back after a while; the backends reopen on their own (backoff 1, 2, 4... s).
    setup_pulse();
    let back_at = Instant::now();
    let mut reading_again = false;
    while back_at.elapsed() < Duration::from_secs(40) {
        let read = tick(&mut input, &mut output);
        if read && output.health() == DeviceHealth::Open {
            reading_again = true;
            break;
        }
    }
    let recovered = lost_at.elapsed();
    // A few more ticks: no further errors.
    for _ in 0..10 {
        tick(&mut input, &mut output);
    }
    eprintln!(
        "loss: input errors {:?}, output errors {:?}; back after {:.1} s; input {:?}; output {:?}",
        in_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        out_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        recovered.as_secs_f64(),
        input.stats(),
        output.stats()
    );
    assert!(reading_again, "the input did not come back");
    assert_eq!(input.health(), DeviceHealth::Open);
    assert_eq!(in_errors.len(), 1, "{in_errors:?}");
    assert_eq!(out_errors.len(), 1, "{out_errors:?}");
    assert!(matches!(in_errors[0], AudioError::Device { .. }));
    assert!(in_errors[0].to_string().contains("audio.input lost"));
    let (si, so) = (input.stats(), output.stats());
    assert_eq!((si.losses, si.reopens), (1, 1), "{si:?}");
    assert_eq!((so.losses, so.reopens), (1, 1), "{so:?}");
    // And the output plays again.
    output.end_of_message().unwrap();
    let rec = Recorder::start("radio_spk.monitor");
    let base = wait_for_playback(&mut output);
    let samples = tone(48_000, 1000.0, 1.0, 0.5);
    let mut pacer = Pacer::new(Duration::from_millis(20));
    for f in samples.chunks(960) {
        output.write_frame(f).unwrap();
        pacer.wait();
    }
    output.end_of_message().unwrap();
    rec.wait_for_tone(1.0);
    let after = output.stats();
    eprintln!("after the loss: output {after:?}");
    assert_eq!(after.underruns, base.underruns, "{after:?}");
    assert_eq!(after.dropped_samples, base.dropped_samples, "{after:?}");
    check_tone(
        "radio_spk after the loss",
        &rec.stop(),
        1000.0,
        1.0,
        0.5 / 2f64.sqrt(),
    );
}

#[test]
#[serial(pulse)]
fn the_codec_engine_runs_on_the_sound_card_both_ways() {
    let (mut input, mut output) = pulse_both_ways();
    let (mon_in, mon_out) = (input.monitor(), output.monitor());
    let rec = Recorder::start("radio_spk.monitor");
    let base = wait_for_playback(&mut output);
    // Reading arms the capture; the engine reads on from here without a pause.
    wait_for_capture(&mut input, &mut [0i16; 960]);
    let (cmd, crx) = mpsc::channel(1024);
    let (etx, mut ev) = mpsc::channel(4096);
    let engine = Engine::new(
        Box::new(input),
        Box::new(output),
        Box::new(FlagCarrier::fixed(true)),
        &EncoderSettings::default(),
        crx,
        etx,
    )
    .expect("the engine takes the sound card's rates");
    let stop = CancellationToken::new();
    let thread = engine::spawn(engine, "sound-test", stop.clone(), None).unwrap();

    // Receive: a 700 Hz tone played into radio_mic comes out as Opus packets.
    let wav = temp_wav("engine-mic");
    write_wav(&wav, 48_000, &tone(48_000, 700.0, 1.5, 0.5));
    let mut player = paplay(&wav);
    // Transmit: a 1 kHz message, encoded as the Zello apps do, played on radio_spk.
    let mut enc = OpusEncoder::new(&EncoderSettings::default()).unwrap();
    cmd.try_send(EngineCommand::PlayBegin {
        stream_id: 1,
        header: CodecHeader::default(),
    })
    .unwrap();
    let pcm = tone(16_000, 1000.0, 2.0, 0.5);
    for (i, chunk) in pcm.chunks_exact(enc.samples_per_packet()).enumerate() {
        let mut buf = Vec::new();
        enc.encode_packet(chunk, &mut buf).unwrap();
        cmd.try_send(EngineCommand::PlayPacket {
            stream_id: 1,
            packet_id: i as u32,
            data: Bytes::from(buf),
            arrival: Instant::now(),
        })
        .unwrap();
    }
    cmd.try_send(EngineCommand::PlayEnd { stream_id: 1 })
        .unwrap();
    let status = player.wait().unwrap();
    let _ = std::fs::remove_file(&wav);
    assert!(status.success());

    let mut dec = OpusDecoder::new(16_000).unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0i16; 5760];
    let mut drained = false;
    let mut other = Vec::new();
    // Until the message has played and the whole tone has come in (a null sink that has
    // idled can take up to 2 s to take the player's first audio).
    let deadline = Instant::now() + Duration::from_secs(10);
    let tone_in = |r: &[i16]| loud_part(r, CODEC_RATE).len() as f64 > 1.3 * f64::from(CODEC_RATE);
    while !(drained && tone_in(&received)) && Instant::now() < deadline {
        while let Ok(e) = ev.try_recv() {
            match e {
                EngineEvent::RxPacket { data: p, .. } => {
                    let n = dec.decode(Some(&p), &mut buf).unwrap();
                    received.extend_from_slice(&buf[..n]);
                }
                EngineEvent::PlaybackDrained { .. } => drained = true,
                EngineEvent::DeviceError(e) => panic!("device error: {e}"),
                e => other.push(e),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last of the message come out of the sink.
    rec.wait_for_tone(2.0);
    stop.cancel();
    thread.join().unwrap();
    let recorded = rec.stop();
    let (si, so) = (mon_in.stats(), mon_out.stats());
    eprintln!("engine: input {si:?}; output {so:?}; other events {other:?}");
    assert!(drained, "the message did not finish playing");
    check_tone("engine receive", &received, 700.0, 1.5, 0.5 / 2f64.sqrt());
    check_tone("engine transmit", &recorded, 1000.0, 2.0, 0.5 / 2f64.sqrt());
    assert_eq!(si.overruns, 0, "{si:?}");
    assert_eq!(
        (so.underruns, so.dropped_samples),
        (base.underruns, base.dropped_samples),
        "{so:?}"
    );
}

/// The whole gateway on the sound card against the emulator: a message from an app user comes
/// out of the "radio speaker" sink, and a WAV played into the "radio receiver" reaches the app.
/// A gateway with one radio on the test sound card (`radio_mic` / `radio_spk`, VOX) and a
/// dispatcher on its channel, both logged on to an emulator on loopback.
struct SoundGateway {
    sim: zello_gateway::zello::sim::SimHandle,
    gw: tokio::task::JoinHandle<Result<(), zello_gateway::gateway::GatewayError>>,
    shutdown: CancellationToken,
    app: zello_gateway::zello::session::SessionHandle,
    events: mpsc::Receiver<zello_gateway::zello::session::SessionEvent>,
    watch: tokio::sync::broadcast::Receiver<zello_gateway::gateway::GatewayEvent>,
    stop: CancellationToken,
    dir: PathBuf,
}

impl SoundGateway {
    /// Starts both; `audio_extra` and `radio_extra` go into the radio's `audio` table and
    /// after it. Returns once both are online.
    async fn start(name: &str, audio_extra: &str, radio_extra: &str) -> SoundGateway {
        use zello_gateway::config::Config;
        use zello_gateway::gateway;
        use zello_gateway::secret::Secret;
        use zello_gateway::zello::session::{self, SessionConfig};
        use zello_gateway::zello::sim::{SimConfig, SimServer};

        let sim = SimServer::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("zg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            r#"
[zello]
server = "{}"
username = "gateway1"
password = "pw"

[[radio]]
name = "vhf1"
channel = "Dispatch"
audio = {{ backend = "cpal", input = "radio_mic", output = "radio_spk", sample_rate = 48000{audio_extra} }}
ptt = {{ type = "sim" }}
carrier = {{ type = "vox", open_dbfs = -30, close_dbfs = -40 }}
{radio_extra}
"#,
            sim.url()
        );
        std::fs::write(dir.join("gateway.toml"), text).unwrap();
        let cfg = Config::load(&dir.join("gateway.toml")).unwrap();
        let radios = parts::build(&cfg).unwrap();
        let shutdown = CancellationToken::new();
        let (observer, watch) = zello_gateway::state::StateHub::channel(1024);
        let gw = tokio::spawn(gateway::run(
            cfg.session_config().unwrap(),
            radios,
            shutdown.clone(),
            observer,
        ));
        let stop = CancellationToken::new();
        let (app, events, _) = session::spawn(
            SessionConfig {
                server: sim.url(),
                username: "dispatcher".into(),
                password: Secret::new("pw"),
                channels: vec!["Dispatch".into()],
                ..SessionConfig::default()
            },
            stop.clone(),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while sim.online_users("Dispatch").len() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the gateway and the dispatcher online");
        SoundGateway {
            sim,
            gw,
            shutdown,
            app,
            events,
            watch,
            stop,
            dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.stop.cancel();
        self.gw.await.unwrap().unwrap();
        drop(self.sim);
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[test]
#[serial(pulse)]
fn the_gateway_bridges_the_sound_card_and_the_emulator_both_ways() {
    use zello_gateway::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder};
    use zello_gateway::gateway;
    use zello_gateway::zello::session::SessionEvent;

    setup_pulse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut g = SoundGateway::start("soundgw", "", "").await;
        let wait = |d: u64| tokio::time::sleep(Duration::from_millis(d));

        // 1. The dispatcher talks: a 1 kHz tone comes out of radio_spk.
        let recorder = Recorder::start("radio_spk.monitor");
        let mut enc = OpusEncoder::new(&EncoderSettings::default()).unwrap();
        let pcm = tone(CODEC_RATE, 1000.0, 1.5, 0.5);
        let msg = g
            .app
            .start_message("Dispatch", CodecHeader::default(), None)
            .await
            .unwrap();
        let mut buf = Vec::new();
        for chunk in pcm.chunks_exact(960) {
            enc.encode_packet(chunk, &mut buf).unwrap();
            msg.send(bytes::Bytes::copy_from_slice(&buf));
            wait(60).await;
        }
        msg.finish().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(gateway::GatewayEvent::PttOff { .. }) = g.watch.recv().await {
                    return;
                }
            }
        })
        .await
        .expect("played and unkeyed");
        let heard = tokio::task::spawn_blocking(move || {
            recorder.wait_for_tone(1.4);
            recorder.stop()
        })
        .await
        .unwrap();
        check_tone("radio speaker", &heard, 1000.0, 1.4, 0.5 / 2f64.sqrt());

        // 2. The radio receives a 700 Hz tone: VOX opens and the dispatcher hears it.
        wait(500).await; // past the anti ping-pong window
        let wav = temp_wav("gw-rx");
        write_wav(&wav, 48000, &tone(48000, 700.0, 2.0, 0.5));
        let mut player = paplay(&wav);
        let mut got: Vec<i16> = Vec::new();
        let mut dec = OpusDecoder::new(CODEC_RATE).unwrap();
        let mut out = vec![0i16; 5760];
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match g.events.recv().await.unwrap() {
                    SessionEvent::IncomingAudio { data, .. } => {
                        let n = dec.decode(Some(&data), &mut out).unwrap();
                        got.extend_from_slice(&out[..n]);
                    }
                    SessionEvent::IncomingEnd { .. } if !got.is_empty() => return,
                    _ => {}
                }
            }
        })
        .await
        .expect("the dispatcher hears the radio");
        let _ = player.wait();
        std::fs::remove_file(&wav).ok();
        check_tone("dispatcher", &got, 700.0, 1.7, 0.5 / 2f64.sqrt());

        g.stop().await;
    });
}

/// CPU time this process has used so far (user and system).
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The field failure this guards against: a capture thread that polls a PulseAudio (or
/// PipeWire) ALSA plugin spins at 100% of a core once the stream feeding the source stops,
/// since the plugin's poll says "ready" with nothing to read. The backend reads without
/// polling, once per tick; so does the output, which stops its stream once a message has
/// played out.
#[test]
#[serial(pulse)]
fn nothing_spins_when_the_source_stops_or_the_output_goes_idle() {
    let (mut input, mut output) = pulse_both_ways();
    let mut frame = vec![0i16; 320];
    let wav = temp_wav("spin");
    write_wav(&wav, 48_000, &tone(48_000, 700.0, 1.0, 0.5));
    let mut player = paplay(&wav);
    let message = tone(48_000, 1000.0, 1.0, 0.5);
    let mut chunks = message.chunks(960);
    let mut pacer = Pacer::new(Duration::from_millis(20));
    // A second of audio both ways, as the engine ticks: read a frame, write a frame.
    while player.try_wait().unwrap().is_none() {
        input.read_frame(&mut frame).unwrap();
        match chunks.next() {
            Some(f) => output.write_frame(f).unwrap(),
            None => {
                output.end_of_message().unwrap();
                output.idle();
            }
        }
        pacer.wait();
    }
    let _ = std::fs::remove_file(&wav);
    output.end_of_message().unwrap();
    // The player has gone and the message has ended: four seconds of ticks.
    let (cpu_before, started) = (process_cpu(), Instant::now());
    let mut writes_then = None;
    for tick in 0..200 {
        input.read_frame(&mut frame).unwrap();
        output.idle();
        if tick == 150 {
            // The message has played out and the stream has been kept warm for two seconds
            // after it: the output is left alone from here.
            writes_then = Some(output.stats().callbacks);
        }
        pacer.wait();
    }
    let cpu = process_cpu() - cpu_before;
    let wall = started.elapsed();
    eprintln!(
        "{:.1} ms of CPU in {:.0} ms of idle ticks; input {:?}; output {:?}",
        cpu.as_secs_f64() * 1000.0,
        wall.as_secs_f64() * 1000.0,
        input.stats(),
        output.stats()
    );
    // A thread spinning on the device would take about all of it; 200 ticks and libpulse's
    // own thread take a few milliseconds.
    assert!(
        cpu < wall / 10,
        "{:.0} ms of CPU in {:.0} ms: something spins",
        cpu.as_secs_f64() * 1000.0,
        wall.as_secs_f64() * 1000.0
    );
    assert_eq!(
        output.stats().callbacks,
        writes_then.unwrap(),
        "an idle output still writes"
    );
    assert_eq!(input.health(), DeviceHealth::Open);
    assert_eq!(output.health(), DeviceHealth::Open);
}

#[test]
#[serial(pulse)]
fn the_device_runs_at_the_period_asked_for() {
    require_pulse();
    for (rate, ms) in [(48_000u32, 20u32), (48_000, 10), (16_000, 20), (44_100, 5)] {
        let mut s = settings(rate);
        s.period_ms = ms;
        let input = CpalInput::open(&s).unwrap();
        let output = CpalOutput::open(&s).unwrap();
        let asked = (rate * ms / 1000) as usize;
        for (side, got) in [
            ("capture", input.period_frames()),
            ("playback", output.period_frames()),
        ] {
            eprintln!("{rate} Hz, {ms} ms: {side} period {got} frames (asked {asked})");
            // The device's nearest: within a few percent of what was asked, never the plugin's
            // default of thousands of frames.
            assert!(
                got.abs_diff(asked) * 10 <= asked,
                "{side} at {rate} Hz, {ms} ms: period {got} frames, asked {asked}"
            );
        }
    }
    let mut s = settings(48_000);
    s.period_ms = 0;
    let e = CpalInput::open(&s).unwrap_err().to_string();
    assert!(e.contains("audio.period_ms = 0 is out of range"), "{e}");
}

/// Notes when sound reaches `device`: a reader of its own with 5 ms periods (blocking reads,
/// as a plain ALSA client does) records the instant each burst starts, a burst being the
/// first period above a quarter of full scale after at least half a second below it.
struct OnsetWatch {
    onsets: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OnsetWatch {
    fn start(device: &str) -> OnsetWatch {
        use alsa::pcm::{Access, Format, HwParams, PCM};
        let pcm = PCM::new(device, alsa::Direction::Capture, false).expect("open the reference");
        {
            let hw = HwParams::any(&pcm).unwrap();
            hw.set_access(Access::RWInterleaved).unwrap();
            hw.set_format(Format::s16()).unwrap();
            hw.set_channels(1).unwrap();
            hw.set_rate(48_000, alsa::ValueOr::Nearest).unwrap();
            hw.set_period_size_near(240, alsa::ValueOr::Nearest)
                .unwrap();
            hw.set_buffer_size_near(1920).unwrap();
            pcm.hw_params(&hw).unwrap();
        }
        let onsets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (o, s) = (onsets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let io = pcm.io_i16().unwrap();
            let mut buf = [0i16; 240];
            let mut quiet_since = Some(Instant::now());
            pcm.start().ok();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match io.readi(&mut buf) {
                    Ok(_) => {}
                    Err(_) => {
                        pcm.prepare().ok();
                        pcm.start().ok();
                        continue;
                    }
                }
                let now = Instant::now();
                let loud = buf.iter().any(|&x| x.unsigned_abs() > 8192);
                match (loud, quiet_since) {
                    (true, Some(q)) => {
                        if now - q >= Duration::from_millis(500) {
                            o.lock().unwrap().push(now);
                        }
                        quiet_since = None;
                    }
                    (false, None) => quiet_since = Some(now),
                    _ => {}
                }
            }
        });
        OnsetWatch {
            onsets,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Instant> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.onsets.lock().unwrap().clone()
    }
}

/// The start of a message reaches the channel within `rx_min_ms` + one frame + 20 ms of the
/// sound reaching the card (with a device period of one frame): the card adds at most a
/// period, the codec thread's tick at most a frame.
#[test]
#[serial(pulse)]
fn a_message_starts_on_the_wire_within_rx_min_and_a_frame_of_the_sound() {
    use zello_gateway::zello::session::SessionEvent;

    setup_pulse();
    const RX_MIN_MS: u64 = 250;
    const FRAME_MS: u64 = 20;
    const BURSTS: usize = 5;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (onsets, arrivals) = rt.block_on(async {
        let mut g = SoundGateway::start(
            "soundstart",
            &format!(", period_ms = {FRAME_MS}"),
            &format!(
                "codec = {{ frame_ms = {FRAME_MS}, complexity = 5, bitrate = 16000, fec = true }}\n\
                 timing = {{ rx_min_ms = {RX_MIN_MS} }}"
            ),
        )
        .await;
        // Bursts of a 700 Hz tone, each long enough to pass rx_min, with the squelch closed
        // long enough between them for the message to end.
        let mut clip = Vec::new();
        clip.extend(std::iter::repeat_n(0i16, 48_000 / 2));
        for _ in 0..BURSTS {
            clip.extend(tone(48_000, 700.0, 0.8, 0.5));
            clip.extend(std::iter::repeat_n(0i16, 48_000 * 2));
        }
        let wav = temp_wav("start-latency");
        write_wav(&wav, 48_000, &clip);
        let watch = OnsetWatch::start("radio_mic");
        let mut player = paplay(&wav);
        let mut arrivals = Vec::new();
        let mut in_message = false;
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while arrivals.len() < BURSTS {
                match g.events.recv().await {
                    Some(SessionEvent::IncomingAudio { .. }) if !in_message => {
                        in_message = true;
                        arrivals.push(Instant::now());
                    }
                    Some(SessionEvent::IncomingEnd { .. }) => in_message = false,
                    Some(_) => {}
                    None => return,
                }
            }
        })
        .await;
        let _ = player.wait();
        std::fs::remove_file(&wav).ok();
        let onsets = tokio::task::spawn_blocking(move || watch.stop())
            .await
            .unwrap();
        g.stop().await;
        (onsets, arrivals)
    });
    // Each burst's first packet: the first arrival after its onset.
    let mut latencies: Vec<Duration> = onsets
        .iter()
        .filter_map(|&on| arrivals.iter().find(|&&a| a >= on).map(|&a| a - on))
        .collect();
    eprintln!(
        "start of a message on the wire after the sound: {:?} ({} onsets, {} messages)",
        latencies
            .iter()
            .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>(),
        onsets.len(),
        arrivals.len()
    );
    assert_eq!(onsets.len(), BURSTS, "the reference missed a burst");
    assert_eq!(latencies.len(), BURSTS, "a burst was not sent");
    latencies.sort();
    let median = latencies[BURSTS / 2];
    let budget = Duration::from_millis(RX_MIN_MS + FRAME_MS + 20);
    assert!(
        median <= budget,
        "median {:.0} ms from the sound to the wire, more than rx_min + a frame + 20 ms ({} ms)",
        median.as_secs_f64() * 1000.0,
        budget.as_millis()
    );
}
