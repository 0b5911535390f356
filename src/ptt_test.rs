//! `zello-gateway ptt-test RADIO`: keys one radio's transmitter for a bounded time with a
//! sine test tone, for checking the PTT wiring and setting the transmit deviation.
//!
//! The tone goes through the radio's transmit chain (`tx_audio`: gain and limiter) to its
//! audio output, as the gateway's voice does: the real sound card, or for the `file` backend
//! the end of its WAV file. The time is bounded by the radio's time-out timer
//! (`timing.tot_s`): a longer `--seconds` is refused, and PTT drops at the time-out timer
//! even if the sound card has not played out yet. PTT is released on every way out: the
//! end of the time, Ctrl-C or SIGTERM, an audio or PTT error, a panic (the line lives on a
//! [`PttThread`] of its own, which unkeys it when its owner goes away). No PTT call runs on
//! the runtime's thread, which plays the tone.

use crate::audio::dsp::TxChain;
use crate::audio::file::FileOutput;
use crate::audio::sound::CpalOutput;
use crate::audio::{AudioError, AudioOutput, CODEC_RATE};
use crate::config::{AudioConfig, Config, RadioConfig};
use crate::gateway::ptt_thread::PttThread;
use crate::parts::build_ptt;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The test tone's default frequency.
pub const DEFAULT_TONE_HZ: f32 = 1000.0;
/// The test tone's default level: -10 dBFS, the loud end of speech, so the deviation set
/// with it leaves voice peaks a little headroom.
pub const DEFAULT_LEVEL_DBFS: f32 = -10.0;
/// The default keying time.
pub const DEFAULT_SECONDS: f64 = 5.0;
/// The tone's rise and fall, so keying does not splatter a click.
const RAMP_MS: u32 = 10;
/// Longest wait for the sound card to play out what is queued before PTT drops.
const MAX_DRAIN: Duration = Duration::from_secs(2);
/// What to say when a device cannot be opened.
const BUSY_HINT: &str = "if the device is busy, the gateway may be running: stop it first \
    (sudo systemctl stop zello-gateway)";

/// `zello-gateway ptt-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct PttTestArgs {
    /// The radio to key (the `name` of its `[[radio]]` table).
    pub radio: String,
    /// How long to key the transmitter, in seconds; at most the radio's time-out timer
    /// (timing.tot_s).
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    pub seconds: f64,
    /// Test tone frequency in Hz; 0 keys without a tone.
    #[arg(long, default_value_t = DEFAULT_TONE_HZ)]
    pub tone: f32,
    /// Key without a tone (the same as --tone 0).
    #[arg(long)]
    pub no_tone: bool,
    /// Test tone level in dBFS (0 is full scale), before the radio's tx_audio gain.
    #[arg(long, default_value_t = DEFAULT_LEVEL_DBFS, allow_negative_numbers = true)]
    pub level_dbfs: f32,
}

/// Why the test could not run, or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PttTestError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("no radio named {name:?} in {path}; configured: {known}")]
    UnknownRadio {
        name: String,
        path: String,
        known: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("radio {radio}: {message}")]
    Device { radio: String, message: String },
    #[error("radio {radio}: stopped by a signal after {seconds:.1} s; PTT released")]
    Interrupted { radio: String, seconds: f64 },
}

/// The checked settings of one test.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    seconds: f64,
    /// Frequency and level of the tone (`None`: key only).
    tone: Option<(f32, f32)>,
    /// The radio's time-out timer: PTT is released this long after keying, whatever the
    /// sound card still holds.
    tot: Duration,
}

/// Checks the arguments against the radio's settings.
fn plan(args: &PttTestArgs, r: &RadioConfig, rate: u32) -> Result<Plan, PttTestError> {
    let tot = r.timers().tot.as_secs_f64();
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        return Err(PttTestError::Refused(format!(
            "--seconds {}: use a time above 0 (default {DEFAULT_SECONDS})",
            args.seconds
        )));
    }
    if args.seconds > tot {
        return Err(PttTestError::Refused(format!(
            "--seconds {} is longer than radio {:?}'s time-out timer (timing.tot_s = {tot}): \
             use at most {tot}",
            args.seconds, r.name
        )));
    }
    let tone = if args.no_tone || args.tone == 0.0 {
        None
    } else {
        let max = (rate as f32 * 0.45).floor();
        if !args.tone.is_finite() || !(20.0..=max).contains(&args.tone) {
            return Err(PttTestError::Refused(format!(
                "--tone {}: use 0 (no tone) or 20 to {max} Hz",
                args.tone
            )));
        }
        if !args.level_dbfs.is_finite() || !(-60.0..=0.0).contains(&args.level_dbfs) {
            return Err(PttTestError::Refused(format!(
                "--level-dbfs {}: use -60 to 0 (0 is full scale)",
                args.level_dbfs
            )));
        }
        Some((args.tone, args.level_dbfs))
    };
    Ok(Plan {
        seconds: args.seconds,
        tone,
        tot: r.timers().tot,
    })
}

/// A sine tone made frame by frame, rising and falling over [`RAMP_MS`].
struct ToneSource {
    step: f64,
    phase: f64,
    amplitude: f64,
    ramp: usize,
    total: usize,
    made: usize,
}

impl ToneSource {
    fn new(rate: u32, hz: f32, dbfs: f32, total: usize) -> Self {
        ToneSource {
            step: 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate),
            phase: 0.0,
            amplitude: f64::from(i16::MAX) * 10f64.powf(f64::from(dbfs) / 20.0),
            ramp: ((rate * RAMP_MS / 1000) as usize).min(total / 2).max(1),
            total,
            made: 0,
        }
    }

    /// Fills `frame` with the next samples (silence past the end).
    fn fill(&mut self, frame: &mut [i16]) {
        for s in frame.iter_mut() {
            if self.made >= self.total {
                *s = 0;
                continue;
            }
            let edge = self.made.min(self.total - 1 - self.made);
            let gain = if edge < self.ramp {
                0.5 - 0.5 * (std::f64::consts::PI * edge as f64 / self.ramp as f64).cos()
            } else {
                1.0
            };
            *s = (self.amplitude * gain * self.phase.sin()).round() as i16;
            self.phase = (self.phase + self.step) % (2.0 * std::f64::consts::PI);
            self.made += 1;
        }
    }
}

/// Opens the radio's audio output: the sound card, or the end of its WAV file.
fn open_output(
    config: &Config,
    r: &RadioConfig,
) -> Result<Option<Box<dyn AudioOutput>>, AudioError> {
    Ok(match &r.audio {
        AudioConfig::File { output: None, .. } => None,
        AudioConfig::File {
            output: Some(p), ..
        } => Some(Box::new(FileOutput::append(
            &config.resolve(p),
            CODEC_RATE,
        )?)),
        AudioConfig::Cpal(settings) => Some(Box::new(CpalOutput::open(settings)?)),
    })
}

/// Runs the test for `args.radio` of the configuration at `config_path`; `stop` ends it
/// early (Ctrl-C, SIGTERM).
pub async fn run(
    config_path: &std::path::Path,
    args: &PttTestArgs,
    stop: CancellationToken,
) -> Result<(), PttTestError> {
    let config = Config::load(config_path)?;
    let Some((index, r)) = config
        .radios
        .iter()
        .enumerate()
        .find(|(_, r)| r.name == args.radio)
    else {
        let known: Vec<String> = config
            .radios
            .iter()
            .map(|r| format!("{:?}", r.name))
            .collect();
        return Err(PttTestError::UnknownRadio {
            name: args.radio.clone(),
            path: config_path.display().to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    let device = |message: String| PttTestError::Device {
        radio: r.name.clone(),
        message,
    };
    // The output's rate is the file's or the card's engine rate; checked again below.
    let mut plan = plan(args, r, CODEC_RATE)?;
    let output = match plan.tone {
        Some(_) => open_output(&config, r).map_err(|e| match r.audio {
            AudioConfig::Cpal(_) => device(format!("{e}; {BUSY_HINT}")),
            AudioConfig::File { .. } => device(e.to_string()),
        })?,
        None => None,
    };
    if plan.tone.is_some() && output.is_none() {
        println!(
            "radio {}: no audio output is configured (audio.output): keying without a tone",
            r.name
        );
        plan.tone = None;
    }
    let rate = output.as_ref().map_or(CODEC_RATE, |o| o.sample_rate());
    let mut chain = TxChain::new(&r.tx_audio, rate).map_err(|e| device(e.to_string()))?;
    // Opening a line may talk to it (rigctld gets `T 0`): off the runtime's thread.
    let config_of_radio = r.clone();
    let ptt = tokio::task::spawn_blocking(move || build_ptt(index, &config_of_radio))
        .await
        .map_err(|e| device(format!("opening the PTT line failed: {e}")))?
        .map_err(|e| device(format!("{e}; {BUSY_HINT}")))?;
    let line = ptt.describe();
    let (mut ptt, first) = PttThread::spawn(ptt, &r.name, crate::gateway::radio_span(&r.name))
        .map_err(|e| device(format!("cannot start the PTT thread: {e}")))?;
    first
        .await
        .unwrap_or_else(|_| {
            Err(crate::radio::RadioError::ptt(
                line.clone(),
                crate::radio::Fault::Device(
                    "the PTT thread stopped before unkeying the line".into(),
                ),
            ))
        })
        .map_err(|e| device(format!("{e}; {BUSY_HINT}")))?;

    let what = match plan.tone {
        Some((hz, dbfs)) => format!("with a {hz} Hz test tone at {dbfs} dBFS"),
        None => "without a tone".into(),
    };
    println!(
        "WARNING: this keys {}'s transmitter for {} s on PTT {line}, {what}; make sure you are \
         allowed to transmit on its frequency (Ctrl-C stops it at once)",
        r.name, plan.seconds
    );
    let result = key_and_play(&r.name, &plan, &mut ptt, output, &mut chain, rate, &stop).await;
    // Unkeyed already; the thread unkeys once more as it lets the line go.
    ptt.release(Duration::from_secs(3)).await;
    result
}

/// Keys, plays (or waits) for the planned time, lets the output play out and unkeys; PTT is
/// released whatever happens (on a panic, when the caller's `ptt` is dropped).
async fn key_and_play(
    radio: &str,
    plan: &Plan,
    guard: &mut PttThread,
    mut output: Option<Box<dyn AudioOutput>>,
    chain: &mut TxChain,
    rate: u32,
    stop: &CancellationToken,
) -> Result<(), PttTestError> {
    let device = |message: String| PttTestError::Device {
        radio: radio.to_string(),
        message,
    };
    guard.key().await.map_err(|e| device(e.to_string()))?;
    let keyed_at = Instant::now();
    println!("PTT on");
    let played = async {
        let result = transmit(plan, output.as_mut(), chain, rate, stop).await;
        // Let the card play out what it holds, then release.
        if let Some(out) = output.as_deref_mut() {
            let _ = out.end_of_message();
            let drain = out.delay(0).min(MAX_DRAIN);
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                _ = stop.cancelled() => {}
            }
        }
        result
    };
    // The time-out timer holds whatever the card still has to play: a `--seconds` up to
    // `tot_s` plus the card's lead-in and queue would otherwise key past it.
    let result = tokio::select! {
        biased;
        result = played => result,
        _ = tokio::time::sleep_until(keyed_at + plan.tot) => {
            println!(
                "radio {radio}: time-out timer ({} s, timing.tot_s): PTT released",
                plan.tot.as_secs()
            );
            Ok(true)
        }
    };
    let unkeyed = guard.unkey().await;
    drop(output);
    match &unkeyed {
        Ok(()) => println!("PTT off"),
        Err(e) => eprintln!("radio {radio}: cannot unkey the transmitter: {e}"),
    }
    match result {
        Err(e) => Err(device(e.to_string())),
        Ok(false) => Err(PttTestError::Interrupted {
            radio: radio.to_string(),
            seconds: keyed_at.elapsed().as_secs_f64(),
        }),
        Ok(true) => unkeyed.map_err(|e| device(e.to_string())),
    }
}

/// Plays the tone (or waits) for the planned time: `Ok(true)` done, `Ok(false)` stopped.
async fn transmit(
    plan: &Plan,
    output: Option<&mut Box<dyn AudioOutput>>,
    chain: &mut TxChain,
    rate: u32,
    stop: &CancellationToken,
) -> Result<bool, AudioError> {
    let length = Duration::from_secs_f64(plan.seconds);
    let (Some((hz, dbfs)), Some(out)) = (plan.tone, output) else {
        tokio::select! {
            _ = tokio::time::sleep(length) => return Ok(true),
            _ = stop.cancelled() => return Ok(false),
        }
    };
    let total = (plan.seconds * f64::from(rate)).round() as usize;
    let mut source = ToneSource::new(rate, hz, dbfs, total);
    let frame_len = (rate / 50) as usize;
    let mut frame = vec![0i16; frame_len];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut written = 0;
    while written < total {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Ok(false),
        }
        let n = frame_len.min(total - written);
        source.fill(&mut frame[..n]);
        chain.process(&mut frame[..n]);
        out.write_frame(&frame[..n])?;
        written += n;
    }
    // The last frame written plays for 20 ms more.
    tokio::select! {
        _ = tick.tick() => Ok(true),
        _ = stop.cancelled() => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn radio(tot_s: u32) -> RadioConfig {
        let text = format!(
            "[zello]\nserver = \"ws://127.0.0.1:1\"\nusername = \"u\"\npassword = \"p\"\n\
             [[radio]]\nname = \"hf1\"\nchannel = \"c\"\naudio = {{ backend = \"file\" }}\n\
             ptt = {{ type = \"sim\" }}\ncarrier = {{ type = \"none\" }}\n\
             timing = {{ tot_s = {tot_s} }}\n"
        );
        let dir = std::env::temp_dir().join(format!("zg-ptt-test-{}-{tot_s}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        c.radios.into_iter().next().unwrap()
    }

    fn args(seconds: f64, tone: f32) -> PttTestArgs {
        PttTestArgs {
            radio: "hf1".into(),
            seconds,
            tone,
            no_tone: false,
            level_dbfs: DEFAULT_LEVEL_DBFS,
        }
    }

    #[test]
    fn the_time_is_bounded_by_the_time_out_timer() {
        let r = radio(30);
        assert_eq!(
            plan(&args(30.0, 1000.0), &r, 16000).unwrap(),
            test_plan(30.0, Some((1000.0, -10.0)), 30)
        );
        let e = plan(&args(31.0, 1000.0), &r, 16000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("timing.tot_s = 30"), "{e}");
        assert!(e.contains("use at most 30"), "{e}");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(plan(&args(bad, 1000.0), &r, 16000).is_err(), "{bad}");
        }
    }

    #[test]
    fn tones_are_checked_and_zero_means_none() {
        let r = radio(180);
        assert_eq!(plan(&args(5.0, 0.0), &r, 16000).unwrap().tone, None);
        let mut a = args(5.0, 1000.0);
        a.no_tone = true;
        assert_eq!(plan(&a, &r, 16000).unwrap().tone, None);
        for bad in [10.0, 7300.0, f32::NAN] {
            let e = plan(&args(5.0, bad), &r, 16000).unwrap_err().to_string();
            assert!(e.contains("use 0 (no tone) or 20 to 7200 Hz"), "{e}");
        }
        let mut a = args(5.0, 1000.0);
        a.level_dbfs = 3.0;
        assert!(
            plan(&a, &r, 16000)
                .unwrap_err()
                .to_string()
                .contains("--level-dbfs 3")
        );
    }

    /// An output that fails, or panics, after `frames` frames.
    struct Breaking {
        frames: usize,
        panics: bool,
    }

    impl AudioOutput for Breaking {
        fn sample_rate(&self) -> u32 {
            16000
        }
        fn write_frame(&mut self, _frame: &[i16]) -> Result<(), crate::audio::AudioError> {
            if self.frames == 0 {
                assert!(!self.panics, "the sound card driver fell over");
                return Err(crate::audio::AudioError::Device {
                    device: "card".into(),
                    message: "unplugged".into(),
                });
            }
            self.frames -= 1;
            Ok(())
        }
    }

    /// `sim` on a PTT thread, unkeyed.
    async fn line(sim: &crate::radio::sim::SimPtt) -> PttThread {
        let (ptt, first) =
            PttThread::spawn(Box::new(sim.clone()), "hf1", tracing::Span::none()).unwrap();
        first.await.unwrap().unwrap();
        ptt
    }

    /// The test's plan: `seconds` of `tone` (frequency and level) under a time-out timer of
    /// `tot_s`.
    fn test_plan(seconds: f64, tone: Option<(f32, f32)>, tot_s: u64) -> Plan {
        Plan {
            seconds,
            tone,
            tot: Duration::from_secs(tot_s),
        }
    }

    /// [`key_and_play`] for radio "hf1" at 16 kHz through a default TX chain.
    async fn play(
        plan: &Plan,
        guard: &mut PttThread,
        output: Option<Box<dyn AudioOutput>>,
        stop: &CancellationToken,
    ) -> Result<(), PttTestError> {
        let mut chain = TxChain::new(&Default::default(), 16000).unwrap();
        key_and_play("hf1", plan, guard, output, &mut chain, 16000, stop).await
    }

    /// [`play`] into `output`, never stopped.
    async fn play_into(
        plan: &Plan,
        guard: &mut PttThread,
        output: impl AudioOutput + 'static,
    ) -> Result<(), PttTestError> {
        play(
            plan,
            guard,
            Some(Box::new(output)),
            &CancellationToken::new(),
        )
        .await
    }

    /// A 2 s tone on `sim` into an output that fails, or panics, after 10 frames.
    fn keyed_run(
        sim: &crate::radio::sim::SimPtt,
        panics: bool,
    ) -> tokio::task::JoinHandle<Result<(), PttTestError>> {
        let sim = sim.clone();
        let plan = test_plan(2.0, Some((1000.0, -10.0)), 180);
        tokio::spawn(async move {
            let mut guard = line(&sim).await;
            play_into(&plan, &mut guard, Breaking { frames: 10, panics }).await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_audio_error_releases_ptt_and_is_reported() {
        let sim = crate::radio::sim::SimPtt::new();
        let e = keyed_run(&sim, false)
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unplugged"), "{e}");
        assert_eq!(sim.key_count(), 1);
        assert!(!sim.is_keyed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_releases_ptt() {
        let sim = crate::radio::sim::SimPtt::new();
        let joined = keyed_run(&sim, true).await;
        assert!(joined.unwrap_err().is_panic());
        assert_eq!(sim.key_count(), 1);
        // The PTT thread unkeys as the task unwinds through its handle.
        let released = std::time::Instant::now() + Duration::from_secs(5);
        while sim.is_keyed() && std::time::Instant::now() < released {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!sim.is_keyed(), "the guard unkeyed on the way out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ptt_that_cannot_key_is_an_error_and_plays_nothing() {
        let sim = crate::radio::sim::SimPtt::new();
        let mut guard = line(&sim).await;
        sim.set_failing(true);
        let plan = test_plan(2.0, None, 180);
        let e = play(&plan, &mut guard, None, &CancellationToken::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("radio hf1: PTT sim"), "{e}");
        assert_eq!(sim.key_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_releases_ptt_at_once() {
        let sim = crate::radio::sim::SimPtt::new();
        let mut guard = line(&sim).await;
        let plan = test_plan(60.0, None, 180);
        let stop = CancellationToken::new();
        let s = stop.clone();
        let watcher = sim.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(watcher.is_keyed());
            s.cancel();
        });
        let start = Instant::now();
        let e = play(&plan, &mut guard, None, &stop).await.unwrap_err();
        assert!(matches!(e, PttTestError::Interrupted { .. }), "{e}");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(!sim.is_keyed());
    }

    /// A sound card whose queue never plays out.
    struct NeverDrains;

    impl AudioOutput for NeverDrains {
        fn sample_rate(&self) -> u32 {
            16000
        }
        fn write_frame(&mut self, _frame: &[i16]) -> Result<(), crate::audio::AudioError> {
            Ok(())
        }
        fn delay(&self, _frame_len: usize) -> Duration {
            Duration::from_secs(3600)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ptt_is_released_at_the_time_out_timer_however_long_the_card_drains() {
        let sim = crate::radio::sim::SimPtt::new();
        let mut guard = line(&sim).await;
        // As long as the time-out timer allows: the tone, its last frame and the card's
        // queue would run past it.
        let plan = test_plan(2.0, Some((1000.0, -10.0)), 2);
        let watcher = sim.clone();
        let seen = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1990)).await;
            watcher.is_keyed()
        });
        let start = Instant::now();
        play_into(&plan, &mut guard, NeverDrains).await.unwrap();
        assert!(seen.await.unwrap(), "keyed while the tone plays");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "released at the TOT"
        );
        assert!(!sim.is_keyed());
        assert_eq!(sim.key_count(), 1);
    }

    #[test]
    fn the_tone_rises_holds_its_level_and_falls() {
        let total = 16000;
        let mut src = ToneSource::new(16000, 1000.0, -10.0, total);
        let mut all = vec![0i16; total + 100];
        for chunk in all.chunks_mut(320) {
            src.fill(chunk);
        }
        let peak = |s: &[i16]| s.iter().map(|x| x.unsigned_abs()).max().unwrap();
        let expected = (f64::from(i16::MAX) * 10f64.powf(-0.5)).round() as u16;
        assert!(peak(&all[1000..15000]).abs_diff(expected) <= 1);
        assert!(peak(&all[..16]) < expected / 4, "rises from silence");
        assert!(
            peak(&all[total - 16..total]) < expected / 4,
            "falls to silence"
        );
        assert_eq!(peak(&all[total..]), 0, "silence after the end");
    }
}
