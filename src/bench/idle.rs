//! An idle gateway in real time: logged on, one radio with its squelch closed, nothing on the
//! channel. What it costs while it waits, which is nearly all of its life on a site.
//!
//! The loop plays the radio's sound card (capture and playback periods) and ticks its engine
//! once per frame at real-time deadlines, as the daemon's engine thread does; the session,
//! bridge and tokio run as in the daemon. The emulator's CPU time is left out.

use super::rig::{ApiMode, Emulator, Side, SideSpec};
use super::{BenchError, Clock, cpu_time};
use crate::audio::opus::EncoderSettings;
use std::time::Duration;

/// What the idle run measured.
#[derive(Debug, Clone)]
pub(crate) struct IdleRun {
    pub(crate) wall: Duration,
    /// CPU time of the whole process, less the emulator's.
    pub(crate) cpu: Duration,
}

impl IdleRun {
    /// CPU time per wall-clock time, in percent of one core.
    pub(crate) fn percent_of_core(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs one idle gateway for `seconds` of real time; with `api`, serving its status API
/// as the daemon does, nobody connected (`run` counts the runs of one benchmark).
pub(crate) fn run(
    emulator: &Emulator,
    settings: &EncoderSettings,
    seconds: f64,
    api: bool,
    run: usize,
) -> Result<IdleRun, BenchError> {
    // A user and channel of its own for each run.
    let tag = if api {
        format!("{run}-api")
    } else {
        run.to_string()
    };
    let mut side = Side::start(SideSpec {
        threads: "gw-idle".into(),
        server: emulator.url.clone(),
        user: format!("bench-idle-{tag}"),
        radios: vec![("radio-idle".into(), format!("Bench-idle-{tag}"))],
        settings: settings.clone(),
        api: if api { ApiMode::On } else { ApiMode::Off },
    })?;
    side.wait_online()?;
    let frame = Duration::from_millis(u64::from(settings.frame_ms));
    let periods = (usize::from(settings.frame_ms) / 5).max(1);
    let frames = (seconds / frame.as_secs_f64()).ceil().max(1.0) as u64;

    let process0 = cpu_time(libc::RUSAGE_SELF)?;
    let emulator0 = emulator.cpu()?;
    let clock = Clock::new(frame);
    for k in 0..frames {
        side.frame(periods);
        side.poll();
        clock.wait(k + 1);
    }
    let wall = clock.elapsed();
    let emulator_cpu = emulator.cpu()?.saturating_sub(emulator0);
    let cpu = cpu_time(libc::RUSAGE_SELF)?
        .saturating_sub(process0)
        .saturating_sub(emulator_cpu);
    let sent = side.count(|e| matches!(e, crate::state::GatewayEvent::Sent { .. }));
    side.stop()?;
    if sent > 0 {
        return Err(BenchError::Failed {
            phase: "idle",
            message: "the idle radio sent a message: its squelch should stay closed".into(),
        });
    }
    Ok(IdleRun { wall, cpu })
}
