//! Peak memory with N active duplex radios, each N in a child process of its own (a
//! process's peak only grows, so one process cannot measure two).
//!
//! The child (`zello-gateway bench --rss-child N --server URL`) is a gateway and nothing
//! else: N radios on the sound card's rings, each on a channel of its own, ticked in real
//! time. Each radio's receiver hears `seconds` of speech, which goes to the channel; the
//! parent, holding the emulator and a peer gateway with one radio per channel, answers each
//! message with one as long, which the child's radio plays into its transmitter. When every
//! radio has sent and played a message the child stops its gateway and reports its peak
//! resident set (VmHWM).

use super::rig::{ApiMode, CARD_RATE, Emulator, Side, SideSpec, Source};
use super::{BenchError, Clock, SEED, peak_rss_kb};
use crate::audio::opus::EncoderSettings;
use crate::audio::speech::speech_like;
use crate::state::{GatewayEvent, MessageOutcome};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// What the child is asked to do (`zello-gateway bench --rss-child N`).
#[derive(Debug, Clone)]
pub struct RssChildOptions {
    /// Radios of the gateway.
    pub radios: usize,
    /// The emulator's URL.
    pub server: String,
    /// Seconds of speech each radio sends, and then plays.
    pub seconds: f32,
    /// The encoder settings of every radio.
    pub settings: EncoderSettings,
    /// Serve the status API as the daemon does (127.0.0.1, a free port, nobody connected).
    pub api: bool,
}

/// What the child reports on its standard output, as one line of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssChildReport {
    /// Radios of the gateway.
    pub radios: usize,
    /// The process's peak resident set, in KiB.
    pub peak_rss_kb: u64,
    /// Messages the radios sent completely.
    pub sent: usize,
    /// Messages the radios played.
    pub played: usize,
    /// Whether the status API ran.
    #[serde(default)]
    pub api: bool,
}

fn channel(i: usize) -> String {
    format!("Bench-{i}")
}

fn speech_loop() -> Arc<[i16]> {
    // One second, repeated: the clip itself would count in the peak.
    speech_like(CARD_RATE, 1.0, SEED).into()
}

/// How long a run of `seconds` each way may take.
fn limit(seconds: f32) -> Duration {
    Duration::from_secs(60) + Duration::from_secs_f32(seconds.max(0.0) * 3.0)
}

/// Runs the child's gateway and measures its peak.
pub fn rss_child(opts: &RssChildOptions) -> Result<RssChildReport, BenchError> {
    let failed = |message: String| BenchError::Child {
        radios: opts.radios,
        message,
    };
    let mut side = Side::start(SideSpec {
        threads: "gw".into(),
        server: opts.server.clone(),
        user: format!(
            "bench-gateway-{}{}",
            opts.radios,
            if opts.api { "-api" } else { "" }
        ),
        radios: (0..opts.radios)
            .map(|i| (format!("radio-{i}"), channel(i)))
            .collect(),
        settings: opts.settings.clone(),
        api: if opts.api { ApiMode::On } else { ApiMode::Off },
    })?;
    side.wait_online()?;
    let clip = speech_loop();
    for r in &mut side.radios {
        r.source = Source::clip(&clip, f64::from(opts.seconds));
        r.raise_carrier();
    }
    let frame = Duration::from_millis(u64::from(opts.settings.frame_ms));
    let periods = (usize::from(opts.settings.frame_ms) / 5).max(1);
    let clock = Clock::new(frame);
    let (mut sent, mut played) = (0, 0);
    for k in 0u64.. {
        side.frame(periods);
        for r in &mut side.radios {
            if r.carrier_up() && !r.source.has_audio() {
                r.lower_carrier();
            }
        }
        side.poll();
        sent = side.count(|e| {
            matches!(
                e,
                GatewayEvent::Sent {
                    outcome: MessageOutcome::Completed,
                    ..
                }
            )
        });
        played = side.count(|e| matches!(e, GatewayEvent::Played { .. }));
        if sent >= opts.radios && played >= opts.radios {
            break;
        }
        if clock.elapsed() > limit(opts.seconds) {
            return Err(failed(format!(
                "{sent} messages sent and {played} played within {} s",
                limit(opts.seconds).as_secs()
            )));
        }
        clock.wait(k + 1);
    }
    side.stop()?;
    Ok(RssChildReport {
        radios: opts.radios,
        peak_rss_kb: peak_rss_kb().ok_or_else(|| failed("cannot read VmHWM".into()))?,
        sent,
        played,
        api: opts.api,
    })
}

/// Runs a child with `radios` radios (and its status API, with `api`) against `emulator`,
/// answers its messages, and returns its report.
pub(crate) fn measure(
    emulator: &Emulator,
    exe: &Path,
    radios: usize,
    seconds: f32,
    settings: &EncoderSettings,
    api: bool,
) -> Result<RssChildReport, BenchError> {
    let failed = |message: String| BenchError::Child { radios, message };
    let mut peer = Side::start(SideSpec {
        threads: "gw-peer".into(),
        server: emulator.url.clone(),
        user: format!("bench-peer-{radios}{}", if api { "-api" } else { "" }),
        radios: (0..radios)
            .map(|i| (format!("peer-{i}"), channel(i)))
            .collect(),
        settings: settings.clone(),
        api: ApiMode::Off,
    })?;
    peer.wait_online()?;
    let mut command = Command::new(exe);
    command
        .arg("bench")
        .args(["--rss-child", &radios.to_string()])
        .args(["--server", &emulator.url])
        .args(["--rss-seconds", &seconds.to_string()])
        .args(["--complexity", &settings.complexity.to_string()])
        .args(["--frame-ms", &settings.frame_ms.to_string()]);
    if let Some(b) = settings.bitrate {
        command.args(["--bitrate", &b.to_string()]);
    }
    if settings.fec {
        command.arg("--fec");
    }
    if api {
        command.arg("--rss-api");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", exe.display())))?;

    let clip = speech_loop();
    let frame = Duration::from_millis(u64::from(settings.frame_ms));
    let periods = (usize::from(settings.frame_ms) / 5).max(1);
    let clock = Clock::new(frame);
    let mut answered = vec![false; radios];
    let limit = limit(seconds) + Duration::from_secs(15);
    for k in 0u64.. {
        peer.frame(periods);
        peer.poll();
        for (i, r) in peer.radios.iter_mut().enumerate() {
            if r.carrier_up() && !r.source.has_audio() {
                r.lower_carrier();
            }
            let heard = peer
                .events
                .iter()
                .any(|e| matches!(e, GatewayEvent::Played { radio, .. } if *radio == r.name));
            if heard && !answered[i] {
                answered[i] = true;
                r.source = Source::clip(&clip, f64::from(seconds));
                r.raise_carrier();
            }
        }
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Err(failed(e.to_string())),
        }
        if clock.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("no report within {} s", limit.as_secs())));
        }
        clock.wait(k + 1);
    }
    peer.stop()?;
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("it exited with {}", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let report: RssChildReport = serde_json::from_str(line)
        .map_err(|e| failed(format!("unreadable report {line:?}: {e}")))?;
    if report.api != api {
        return Err(failed(format!(
            "the child ran {} the status API",
            if report.api { "with" } else { "without" }
        )));
    }
    if report.sent != radios || report.played != radios {
        return Err(failed(format!(
            "{} of {radios} messages sent, {} played",
            report.sent, report.played
        )));
    }
    Ok(report)
}
