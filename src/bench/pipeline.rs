//! The whole duplex pipeline faster than real time: radio A's receiver hears the speech clip,
//! gateway A sends it to the emulator, gateway B plays it into radio B's transmitter.
//!
//! One thread plays both sound cards and ticks both engines, one engine frame at a time at
//! absolute deadlines `speedup` times closer together than real time. Per frame and radio:
//! the capture callbacks of one frame (A: speech, B: silence), every engine's tick, the
//! playback callbacks of one frame. A window on the packets in flight (encoded by A, not yet
//! received by B's session) holds the loop back rather than let a queue overflow on a
//! machine too busy for the pace.
//!
//! Each gateway runs on a runtime of its own, as a daemon would ([`super::rig::Net`]), so
//! the wake-ups of A's network threads are those of radio -> Zello and B's those of
//! Zello -> radio.

use super::dashboard::Received;
use super::rig::{ApiMode, Emulator, Side, SideSpec, Source};
use super::wakeups::{self, Switches, ThreadGroup};
use super::{BenchError, Clock, cpu_time};
use crate::audio::opus::EncoderSettings;
use crate::state::{GatewayEvent, MessageOutcome};
use crate::zello::session::SessionStats;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Packets allowed in flight between A's engine and B's session; well below every queue on
/// the way (the session writer's 64 packets is the smallest).
const IN_FLIGHT: u64 = 32;

/// What the pipeline run measured.
#[derive(Debug, Clone)]
pub(crate) struct PipelineRun {
    /// Audio carried: packets sent times their duration.
    pub(crate) audio: Duration,
    pub(crate) wall: Duration,
    /// CPU time of the whole process, less the emulator's.
    pub(crate) cpu: Duration,
    /// The part of it spent on the thread that ticks the engines and plays the sound
    /// cards: what the codec threads and the cards' callbacks cost.
    pub(crate) engines_cpu: Duration,
    pub(crate) emulator_cpu: Duration,
    /// The dashboards' threads (not in `cpu`), when the gateways served their API.
    pub(crate) dashboard_cpu: Duration,
    /// What the two dashboards received together; `None`: the gateways ran without the API.
    pub(crate) dashboard: Option<Received>,
    pub(crate) packets: u64,
    pub(crate) concealed: u64,
    /// Times the loop waited for packets in flight.
    pub(crate) held_back: u64,
    pub(crate) wakeups: PipelineWakeups,
}

/// Context switches during the run, by thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct PipelineWakeups {
    /// Gateway A's network threads, by name: radio -> Zello.
    pub(crate) radio_to_zello: Vec<ThreadGroup>,
    /// Gateway B's: Zello -> radio.
    pub(crate) zello_to_radio: Vec<ThreadGroup>,
    /// The thread that plays the sound cards and ticks both gateways' engines.
    pub(crate) engines: Switches,
    /// The emulator's thread.
    pub(crate) emulator: Switches,
}

fn failed(message: String) -> BenchError {
    BenchError::Failed {
        phase: "pipeline",
        message,
    }
}

/// The dashboards' CPU time so far, together.
fn dashboards_cpu(sides: [&Side; 2]) -> Result<Duration, BenchError> {
    let mut sum = Duration::ZERO;
    for d in sides.iter().filter_map(|s| s.dashboard.as_ref()) {
        sum += d.cpu()?;
    }
    Ok(sum)
}

/// Runs the clip (`clip48`, at the card's rate) through the pipeline (`run` counts the runs
/// of one benchmark). With `api`, both gateways serve their status API as the daemon does,
/// each watched by a dashboard subscribed to every room; the dashboards' CPU time is left
/// out of the pipeline's, as the emulator's is.
pub(crate) fn run(
    emulator: &Emulator,
    settings: &EncoderSettings,
    clip48: &Arc<[i16]>,
    speedup: f64,
    run: usize,
    api: bool,
) -> Result<PipelineRun, BenchError> {
    // Users and channel of their own for each run.
    let tag = if api {
        format!("{run}-api")
    } else {
        run.to_string()
    };
    let spec = |threads: &str, user: &str, radio: &str| SideSpec {
        threads: threads.into(),
        server: emulator.url.clone(),
        user: format!("{user}-{tag}"),
        radios: vec![(radio.into(), format!("Bench-{tag}"))],
        settings: settings.clone(),
        api: if api {
            ApiMode::Dashboard
        } else {
            ApiMode::Off
        },
    };
    // Threads of their own name with the API, so runs side by side (tests) count apart.
    let (ta, tb) = if api {
        ("api-a", "api-b")
    } else {
        ("gw-a", "gw-b")
    };
    let mut a = Side::start(spec(ta, "bench-a", "radio-a"))?;
    let mut b = Side::start(spec(tb, "bench-b", "radio-b"))?;
    a.wait_online()?;
    b.wait_online()?;

    let frame = Duration::from_millis(u64::from(settings.frame_ms));
    let periods = (usize::from(settings.frame_ms) / 5).max(1);
    let clip_seconds = clip48.len() as f64 / f64::from(super::rig::CARD_RATE);
    let limit = Duration::from_secs(60) + Duration::from_secs_f64(clip_seconds);
    let encoded = a.engines[0].stats();
    let b_session = b.session.clone();
    let received = || SessionStats::get(&b_session.stats().packets_received);
    let mut held_back = 0;

    a.radios[0].source = Source::clip(clip48, clip_seconds);
    let threads0 = wakeups::snapshot();
    let engines0 = wakeups::this_thread();
    let process0 = cpu_time(libc::RUSAGE_SELF)?;
    let thread0 = cpu_time(libc::RUSAGE_THREAD)?;
    let emulator0 = emulator.cpu()?;
    let dashboards0 = dashboards_cpu([&a, &b])?;
    let clock = Clock::new(frame.div_f64(speedup));
    a.radios[0].raise_carrier();
    for k in 0u64.. {
        a.frame(periods);
        b.frame(periods);
        if a.radios[0].carrier_up() && !a.radios[0].source.has_audio() {
            // The clip's last frame has been read: the carrier drops with the next one.
            a.radios[0].lower_carrier();
        }
        a.poll();
        b.poll();
        let played = b.count(|e| matches!(e, GatewayEvent::Played { .. })) > 0;
        let sent = a.count(|e| matches!(e, GatewayEvent::Sent { .. })) > 0;
        if played && sent {
            break;
        }
        let in_flight = || {
            encoded
                .packets_encoded
                .load(Ordering::Relaxed)
                .saturating_sub(received())
        };
        while in_flight() > IN_FLIGHT && clock.elapsed() < limit {
            held_back += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        if clock.elapsed() > limit {
            return Err(failed(format!(
                "the clip did not get through within {} s",
                limit.as_secs()
            )));
        }
        clock.wait(k + 1);
    }
    let wall = clock.elapsed();
    let engines_cpu = cpu_time(libc::RUSAGE_THREAD)?.saturating_sub(thread0);
    let emulator_cpu = emulator.cpu()?.saturating_sub(emulator0);
    let dashboard_cpu = dashboards_cpu([&a, &b])?.saturating_sub(dashboards0);
    let cpu = cpu_time(libc::RUSAGE_SELF)?
        .saturating_sub(process0)
        .saturating_sub(emulator_cpu)
        .saturating_sub(dashboard_cpu);
    let engines_switches = wakeups::this_thread() - engines0;
    let threads1 = wakeups::snapshot();
    let wakeups = PipelineWakeups {
        radio_to_zello: wakeups::between(&threads0, &threads1, &a.threads),
        zello_to_radio: wakeups::between(&threads0, &threads1, &b.threads),
        engines: engines_switches,
        emulator: wakeups::total(&wakeups::between(
            &threads0,
            &threads1,
            super::rig::EMULATOR_THREAD,
        )),
    };

    // Every packet A sent was received and played by B, and nothing was dropped on the way.
    let a_stats = a.session.stats();
    let b_stats = b.session.stats();
    let sent = SessionStats::get(&a_stats.packets_sent);
    let dropped =
        SessionStats::get(&a_stats.packets_dropped) + SessionStats::get(&b_stats.packets_dropped);
    let received = SessionStats::get(&b_stats.packets_received);
    let (played, concealed) = b
        .events
        .iter()
        .find_map(|e| match e {
            GatewayEvent::Played {
                packets, concealed, ..
            } => Some((*packets, *concealed)),
            _ => None,
        })
        .unwrap_or_default();
    let outcome = a.events.iter().find_map(|e| match e {
        GatewayEvent::Sent { outcome, .. } => Some(*outcome),
        _ => None,
    });
    let engine_drops: u64 = a
        .engines
        .iter()
        .chain(&b.engines)
        .map(|e| e.stats().events_dropped.load(Ordering::Relaxed))
        .sum();
    let ring_losses: u64 = a
        .radios
        .iter()
        .chain(&b.radios)
        .map(|r| r.ring_losses())
        .sum();
    // What the dashboards got: read once the gateways have stopped and their APIs closed
    // the sockets, so every event sent is in.
    let dashboards: Vec<_> = [&mut a, &mut b]
        .into_iter()
        .filter_map(|s| s.dashboard.take())
        .collect();
    let stop_a = a.stop();
    let stop_b = b.stop();
    stop_a?;
    stop_b?;
    let dashboard = (!dashboards.is_empty()).then(|| {
        dashboards
            .iter()
            .map(|d| d.received_by_close(Duration::from_secs(5)))
            .fold(Received::default(), |s, r| s.plus(&r))
    });
    drop(dashboards);
    if outcome != Some(MessageOutcome::Completed)
        || dropped > 0
        || engine_drops > 0
        || ring_losses > 0
        || sent == 0
        || received != sent
        || played != sent
    {
        return Err(failed(format!(
            "not every packet got through: A sent {sent} ({outcome:?}), B received {received} \
             and played {played}; dropped by the sessions {dropped}, by the engines \
             {engine_drops}, by the rings {ring_losses}. The machine may be too busy for \
             --speedup {speedup}: try a lower one"
        )));
    }
    let packet_ms = u64::from(settings.frame_ms) * u64::from(settings.frames_per_packet);
    Ok(PipelineRun {
        audio: Duration::from_millis(sent * packet_ms),
        wall,
        cpu,
        engines_cpu,
        emulator_cpu,
        dashboard_cpu,
        dashboard,
        packets: sent,
        concealed,
        held_back,
        wakeups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::speech::speech_like;
    use crate::bench::BenchOptions;

    /// With the API on, each gateway's dashboard gets the message as it happens: both
    /// gateways' `MESSAGE_START` (radio and channel rooms), their other events and live
    /// levels, without falling behind; every packet still gets through (`run` fails
    /// otherwise). Counted, not timed.
    #[test]
    fn the_dashboards_receive_the_message_events_and_levels_during_a_run_with_the_api() {
        let settings = BenchOptions {
            frame_ms: 20,
            complexity: 5,
            bitrate: Some(16_000),
            ..BenchOptions::default()
        }
        .encoder_settings();
        let clip: Arc<[i16]> = speech_like(super::super::rig::CARD_RATE, 2.0, 7).into();
        let emulator = Emulator::start().unwrap();
        let plain = run(&emulator, &settings, &clip, 2.0, 0, false).expect("plain run");
        assert_eq!(plain.dashboard, None);
        assert_eq!(plain.dashboard_cpu, Duration::ZERO);
        let with_api = run(&emulator, &settings, &clip, 2.0, 0, true).expect("run with the API");
        assert_eq!(with_api.packets, plain.packets);
        let got = with_api.dashboard.expect("the dashboards ran");
        // A: carrier up and down, message start and stop; B: message start and stop, PTT on
        // and off; logons and channels online besides.
        assert_eq!(got.message_starts, 4, "{got:?}");
        assert!(got.events >= 12, "{got:?}");
        assert!(got.levels > 0, "{got:?}");
        assert_eq!((got.resyncs, got.errors), (0, 0), "{got:?}");
        assert!(with_api.dashboard_cpu > Duration::ZERO);
    }

    /// The network side's hand-offs, counted rather than timed: each packet wakes gateway
    /// A's network thread once (the codec thread hands it over; bridge, session and writer
    /// then run on that thread to the socket) and gateway B's once (it arrives on the
    /// socket; session, router and bridge hand it to the codec thread's queue without
    /// waking it). A runtime with worker threads, or a hop through another thread, makes
    /// it two or more.
    ///
    /// Only sleeps are counted (voluntary context switches): how often a thread is
    /// preempted depends on what else the machine runs, which a test cannot control. A
    /// busy machine makes fewer sleeps, not more (packets that wait are taken together).
    /// The fixed costs of a run (logon, channel status, stream start and stop) are spread
    /// over 150 packets.
    #[test]
    fn each_packet_wakes_each_gateways_network_thread_at_most_once() {
        let settings = BenchOptions {
            frame_ms: 20,
            complexity: 5,
            bitrate: Some(16_000),
            ..BenchOptions::default()
        }
        .encoder_settings();
        let clip: Arc<[i16]> = speech_like(super::super::rig::CARD_RATE, 3.0, 7).into();
        let emulator = Emulator::start().unwrap();
        let run = run(&emulator, &settings, &clip, 2.0, 0, false).expect("the clip gets through");
        assert_eq!(run.packets, 150);
        let per_packet =
            |groups: &[ThreadGroup]| wakeups::total(groups).voluntary as f64 / run.packets as f64;
        let (a, b) = (
            per_packet(&run.wakeups.radio_to_zello),
            per_packet(&run.wakeups.zello_to_radio),
        );
        assert!(
            a <= 1.4,
            "radio -> Zello: {a:.2} per packet: {:?}",
            run.wakeups
        );
        assert!(
            b <= 1.4,
            "Zello -> radio: {b:.2} per packet: {:?}",
            run.wakeups
        );
        // It did count: every packet went through both.
        assert!(a > 0.2 && b > 0.2, "{:?}", run.wakeups);
    }
}
