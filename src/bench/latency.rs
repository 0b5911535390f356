//! The latency figures: clicks sent through radio A's gateway to radio B's in real time,
//! with both gateways behind [`Tap`]s that note when each packet passes.
//!
//! One thread plays both sound cards and the engines' ticks, in steps of one callback
//! (5 ms) at absolute deadlines: each step runs the capture callbacks, then, once per frame,
//! both engines' ticks (B's just before A's), then the playback callbacks. Clicks enter A's
//! capture ring at every 5 ms phase of A's frame in turn, half a second apart, once A's
//! message has its stream id.
//!
//! Phases: a click waits in A's capture ring for the rest of its frame (0 to one frame),
//! which the sweep over phases covers; the worst click is the figure. Each packet reaches B
//! just after one of B's ticks, the phase that makes it wait longest for the playout, so
//! the Zello -> radio figure is the worst case too.

use super::rig::{CALLBACK, CARD_RATE, Emulator, Onsets, Side, SideSpec, lock};
use super::tap::{Passed, Tap, Watch};
use super::{BenchError, Clock};
use crate::audio::opus::{EncoderSettings, OpusDecoder, max_packet_samples};
use crate::state::GatewayEvent;
use std::time::{Duration, Instant};

/// What each click took, in milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies {
    /// Click into A's capture ring -> its packet out of A's socket.
    pub(crate) radio_to_zello: Vec<f64>,
    /// Packet into B's socket -> its first sample out of B's playback ring.
    pub(crate) zello_to_radio: Vec<f64>,
    /// Packet out of A's socket -> into B's socket (the emulator and loopback).
    pub(crate) server: Vec<f64>,
    /// Click into A's capture ring -> click out of B's playback ring.
    pub(crate) end_to_end: Vec<f64>,
    /// Packets B concealed (late) during the run.
    pub(crate) concealed: u64,
}

/// Time between clicks, so each is alone in its packets and the codec has settled.
const CLICK_SPACING: Duration = Duration::from_millis(500);

fn failed(message: String) -> BenchError {
    BenchError::Failed {
        phase: "latency",
        message,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `clicks` clicks through a fresh pair of gateways and times them.
pub(crate) fn measure(
    emulator: &Emulator,
    settings: &EncoderSettings,
    clicks: usize,
) -> Result<Latencies, BenchError> {
    let io = |e: std::io::Error| BenchError::Setup {
        what: "the WebSocket tap".into(),
        message: e.to_string(),
    };
    let tap_a = Tap::start(emulator.addr, Watch::FromGateway).map_err(io)?;
    let tap_b = Tap::start(emulator.addr, Watch::ToGateway).map_err(io)?;
    let spec = |threads: &str, server: String, user: &str, radio: &str| SideSpec {
        threads: threads.into(),
        server,
        user: user.into(),
        radios: vec![(radio.into(), "Latency".into())],
        settings: settings.clone(),
        api: super::rig::ApiMode::Off,
    };
    let mut a = Side::start(spec("gw-a", tap_a.url(), "bench-latency-a", "radio-a"))?;
    let mut b = Side::start(spec("gw-b", tap_b.url(), "bench-latency-b", "radio-b"))?;
    a.wait_online()?;
    b.wait_online()?;

    let frame_ms = u32::from(settings.frame_ms) * u32::from(settings.frames_per_packet);
    let steps_per_tick = (u32::from(settings.frame_ms) / 5).max(1) as u64;
    let spacing_ticks = (CLICK_SPACING.as_millis() as u64).div_ceil(u64::from(settings.frame_ms));
    let spacing = spacing_ticks * steps_per_tick;
    let mut sent: Vec<Instant> = Vec::new();
    // When each click left B's playback ring, and its index in that callback's buffer.
    let mut played: Vec<(Instant, usize)> = Vec::new();
    let mut heard = Onsets::new(CARD_RATE);
    let mut first_click: Option<u64> = None;
    let mut lowered_at: Option<u64> = None;
    let limit = Duration::from_secs(30) + CLICK_SPACING * clicks as u32 * 2;

    a.radios[0].raise_carrier();
    let clock = Clock::new(CALLBACK);
    for step in 0u64.. {
        clock.wait(step);
        // Clicks start two frames after the stream id is known, at a frame boundary.
        if first_click.is_none() && a.count(|e| matches!(e, GatewayEvent::StreamStarted { .. })) > 0
        {
            first_click = Some((step + 2 * steps_per_tick).next_multiple_of(steps_per_tick));
        }
        let due = first_click.is_some_and(|f| {
            let m = sent.len() as u64;
            (m as usize) < clicks && step == f + m * spacing + m % steps_per_tick
        });
        if due {
            a.radios[0].click_next();
            sent.push(Instant::now());
        }
        a.radios[0].capture_period();
        b.radios[0].capture_period();
        if step % steps_per_tick == 0 {
            // B first: A's packet then always reaches B just after one of B's ticks, the
            // latest phase (with A first, whether it beats B's tick would be a race).
            b.tick();
            a.tick();
        }
        a.radios[0].play_period();
        let out = b.radios[0].play_period();
        let mut click_at = None;
        heard.feed(out, |j| click_at = Some(j));
        if let Some(j) = click_at {
            played.push((Instant::now(), j));
        }
        a.poll();
        b.poll();

        // After the last click has had time to come out, end A's message and let B drain.
        let last_due = first_click.map(|f| f + clicks as u64 * spacing);
        if lowered_at.is_none() && last_due.is_some_and(|l| step >= l) {
            a.radios[0].lower_carrier();
            lowered_at = Some(step);
        }
        if lowered_at.is_some()
            && b.count(|e| matches!(e, GatewayEvent::Played { .. })) > 0
            && a.count(|e| matches!(e, GatewayEvent::Sent { .. })) > 0
        {
            break;
        }
        if clock.elapsed() > limit {
            return Err(failed(format!(
                "the message did not get through within {} s (clicks sent {}, heard {})",
                limit.as_secs(),
                sent.len(),
                played.len()
            )));
        }
    }
    let concealed = b
        .events
        .iter()
        .find_map(|e| match e {
            GatewayEvent::Played { concealed, .. } => Some(*concealed),
            _ => None,
        })
        .unwrap_or(0);
    let onsets = lock(&a.radios[0].watch).onsets.clone();
    let stop_a = a.stop();
    let stop_b = b.stop();
    stop_a?;
    stop_b?;
    let from_a = tap_a.passed();
    let to_b = tap_b.passed();
    drop((tap_a, tap_b));
    let mut lat = figures(settings, frame_ms, &sent, &onsets, &from_a, &to_b, &played)?;
    lat.concealed = concealed;
    Ok(lat)
}

/// Puts the instants together, click by click.
fn figures(
    settings: &EncoderSettings,
    packet_ms: u32,
    sent: &[Instant],
    onsets: &[u64],
    from_a: &[Passed],
    to_b: &[Passed],
    played: &[(Instant, usize)],
) -> Result<Latencies, BenchError> {
    let n = sent.len();
    // What B's engine decoded, the way it decoded it: one decoder from the message's start,
    // at the playback ring's rate.
    let heard = decoded_onsets(to_b, packet_ms)?;
    if onsets.len() != n || heard.len() != n || played.len() != n {
        return Err(failed(format!(
            "clicks sent {n}, seen in A's frames {}, in B's packets {}, out of B's ring {}",
            onsets.len(),
            heard.len(),
            played.len()
        )));
    }
    let frames_per_packet = u64::from(settings.frames_per_packet.max(1));
    let mut lat = Latencies::default();
    for i in 0..n {
        let p = usize::try_from(onsets[i] / frames_per_packet).unwrap_or(usize::MAX);
        let (k, offset) = heard[i];
        let (out_at, index) = played[i];
        let (Some(out_a), Some(in_b), Some(click_in_b)) = (from_a.get(p), to_b.get(p), to_b.get(k))
        else {
            return Err(failed(format!(
                "click {i}: packet {p} or {k} was not seen on the wire ({} and {} seen)",
                from_a.len(),
                to_b.len()
            )));
        };
        lat.radio_to_zello
            .push(ms(out_a.at.saturating_duration_since(sent[i])));
        lat.server
            .push(ms(in_b.at.saturating_duration_since(out_a.at)));
        // The callback that took the click out started `index` samples before it; the
        // packet's first sample left `offset - index` samples of callbacks earlier (B's
        // ring is refilled a whole packet at a time, on a callback boundary).
        let before =
            Duration::from_secs_f64(offset.saturating_sub(index) as f64 / f64::from(CARD_RATE));
        let packet_out = out_at.checked_sub(before).unwrap_or(out_at);
        lat.zello_to_radio
            .push(ms(packet_out.saturating_duration_since(click_in_b.at)));
        lat.end_to_end
            .push(ms(out_at.saturating_duration_since(sent[i])));
    }
    Ok(lat)
}

/// Decodes B's packets as its engine did and finds each click: (packet index, samples from
/// the packet's first sample to the click's, at the card's rate).
fn decoded_onsets(packets: &[Passed], packet_ms: u32) -> Result<Vec<(usize, usize)>, BenchError> {
    let stream = packets.first().map(|p| p.stream_id);
    let mut decoder = OpusDecoder::new(CARD_RATE)?;
    let mut pcm = vec![0i16; max_packet_samples(CARD_RATE)];
    let per_packet = (CARD_RATE * packet_ms / 1000) as usize;
    let mut onsets = Onsets::new(CARD_RATE);
    let mut found = Vec::new();
    for (k, p) in packets.iter().enumerate() {
        if Some(p.stream_id) != stream {
            continue;
        }
        let n = decoder.decode(Some(&p.data), &mut pcm)?;
        if n != per_packet {
            return Err(failed(format!(
                "packet {k} decoded to {n} samples, not {per_packet}"
            )));
        }
        onsets.feed(&pcm[..n], |j| {
            found.push((k, j));
        });
    }
    Ok(found)
}
