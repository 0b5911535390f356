//! The paced floors: libopus alone with the gateway's settings, one frame per sleep.

use super::*;

/// Encodes `clip` (at the codec rate) packet by packet.
pub(super) fn encode(settings: &EncoderSettings, clip: &[i16]) -> Result<Vec<Bytes>, BenchError> {
    let mut encoder = OpusEncoder::new(settings)?;
    let mut packet = Vec::with_capacity(4000);
    let mut out = Vec::new();
    for chunk in clip.chunks_exact(encoder.samples_per_packet()) {
        encoder.encode_packet(chunk, &mut packet)?;
        out.push(Bytes::copy_from_slice(&packet));
    }
    Ok(out)
}

/// The encoder alone, one packet per sleep until the next deadline, in real time.
pub(super) fn paced_encoder(
    settings: &EncoderSettings,
    clip: &[i16],
) -> Result<PacedFloor, BenchError> {
    let mut encoder = OpusEncoder::new(settings)?;
    let mut packet = Vec::with_capacity(4000);
    let per_packet = encoder.samples_per_packet();
    let period = packet_duration(settings);
    let before = cpu_time(libc::RUSAGE_THREAD)?;
    let clock = Clock::new(period);
    let mut n = 0u32;
    for chunk in clip.chunks_exact(per_packet) {
        encoder.encode_packet(chunk, &mut packet)?;
        n += 1;
        clock.wait(u64::from(n));
    }
    Ok(PacedFloor {
        cpu: cpu_time(libc::RUSAGE_THREAD)?.saturating_sub(before),
        audio: period * n,
    })
}

/// The decoder alone at the card's rate, one packet per sleep, in real time.
pub(super) fn paced_decoder(
    settings: &EncoderSettings,
    packets: &[Bytes],
) -> Result<PacedFloor, BenchError> {
    let mut decoder = OpusDecoder::new(CARD_RATE)?;
    let mut pcm = vec![0i16; max_packet_samples(CARD_RATE)];
    let period = packet_duration(settings);
    let before = cpu_time(libc::RUSAGE_THREAD)?;
    let clock = Clock::new(period);
    let mut n = 0u32;
    for p in packets {
        decoder.decode(Some(p), &mut pcm)?;
        n += 1;
        clock.wait(u64::from(n));
    }
    Ok(PacedFloor {
        cpu: cpu_time(libc::RUSAGE_THREAD)?.saturating_sub(before),
        audio: period * n,
    })
}

pub(super) fn packet_duration(settings: &EncoderSettings) -> Duration {
    Duration::from_millis(u64::from(settings.frame_ms) * u64::from(settings.frames_per_packet))
}

/// Both paced floors at once, each on a thread of its own.
pub(super) fn paced_floors(
    settings: &EncoderSettings,
    clip16: &[i16],
    packets: &[Bytes],
) -> Result<(PacedFloor, PacedFloor), BenchError> {
    let spawn_error = |e: std::io::Error| BenchError::Setup {
        what: "a floor thread".into(),
        message: e.to_string(),
    };
    let joined = |r: std::thread::Result<Result<PacedFloor, BenchError>>| {
        r.unwrap_or_else(|_| Err(failed("a floor thread panicked".into())))
    };
    std::thread::scope(|s| {
        let enc = std::thread::Builder::new()
            .name("bench-floor-enc".into())
            .spawn_scoped(s, || paced_encoder(settings, clip16))
            .map_err(spawn_error)?;
        let dec = std::thread::Builder::new()
            .name("bench-floor-dec".into())
            .spawn_scoped(s, || paced_decoder(settings, packets))
            .map_err(spawn_error)?;
        let e = joined(enc.join());
        let d = joined(dec.join());
        Ok((e?, d?))
    })
}
