//! Audio quality end to end: speech-like audio through the radio side's chain and encoder,
//! the emulator over loopback, and a listener's decoder keeps its shape; a 100 Hz CTCSS-like
//! tone mixed in is removed on the way.

mod common;

use bytes::Bytes;
use common::emulator::with_gateway_and;
use std::time::Duration;
use zello_gateway::audio::CODEC_RATE;
use zello_gateway::audio::dsp::{RxChain, RxSettings};
use zello_gateway::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder};
use zello_gateway::audio::speech::{speech_like, tone};
use zello_gateway::zello::session::SessionEvent;

/// Power of `freq` in `x` (Goertzel), normalised.
fn power_at(x: &[f32], freq: f32) -> f32 {
    let w = std::f32::consts::TAU * freq / CODEC_RATE as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f32).powi(2)
}

/// The best normalised correlation of `b` against `a` over lags 0..max_lag.
fn best_correlation(a: &[i16], b: &[i16], max_lag: usize) -> (f64, usize) {
    let mut best = (0.0, 0);
    for lag in 0..max_lag {
        let n = a.len().min(b.len().saturating_sub(lag));
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            let (x, y) = (a[i] as f64, b[i + lag] as f64);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        let c = ab / (aa.sqrt() * bb.sqrt()).max(1e-9);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

#[tokio::test(start_paused = true)]
async fn speech_survives_the_chain_the_codec_and_the_emulator() {
    let (_sim, gw, mut app) = with_gateway_and("alice").await;

    // What the radio receives: speech plus a 100 Hz tone at -10 dBFS (CTCSS-like).
    let speech = speech_like(CODEC_RATE, 4.0, 21);
    let hum = tone(CODEC_RATE, 100.0, 4.0, -10.0);
    let mut rx: Vec<i16> = speech
        .iter()
        .zip(&hum)
        .map(|(&a, &b)| (a as i32 + b as i32).clamp(-32768, 32767) as i16)
        .collect();
    let mut chain = RxChain::new(&RxSettings::default(), CODEC_RATE).unwrap();
    let mut enc = OpusEncoder::new(&EncoderSettings::default()).unwrap();
    let msg = gw.start_message().await;
    let mut buf = Vec::new();
    for frame in rx.chunks_exact_mut(960) {
        chain.process(frame);
        enc.encode_packet(frame, &mut buf).unwrap();
        msg.send(Bytes::copy_from_slice(&buf));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    msg.finish().await;

    let mut dec = OpusDecoder::new(CODEC_RATE).unwrap();
    let mut out = vec![0i16; 5760];
    let mut heard: Vec<i16> = Vec::new();
    loop {
        match app.expect(Duration::from_secs(5), |_| true).await {
            SessionEvent::IncomingAudio { data, .. } => {
                let n = dec.decode(Some(&data), &mut out).unwrap();
                heard.extend_from_slice(&out[..n]);
            }
            SessionEvent::IncomingEnd { .. } => break,
            _ => {}
        }
    }
    assert_eq!(heard.len(), rx.len() / 960 * 960, "every packet arrived");

    // The shape of the speech is kept (the chain's high-pass and the codec's delay aside):
    // compare against the speech alone, high-passed the same way.
    let mut reference = speech.clone();
    let mut ref_chain = RxChain::new(&RxSettings::default(), CODEC_RATE).unwrap();
    for frame in reference.chunks_exact_mut(960) {
        ref_chain.process(frame);
    }
    let (corr, lag) = best_correlation(&reference[1600..], &heard[1600..], 800);
    eprintln!("correlation {corr:.3} at a lag of {lag} samples");
    assert!(corr > 0.9, "correlation {corr:.3}");

    // The 100 Hz tone is at least 30 dB down relative to the input.
    let before: Vec<f32> = speech
        .iter()
        .zip(&hum)
        .skip(1600)
        .map(|(&a, &b)| (a as f32 + b as f32) / 32768.0)
        .collect();
    let after: Vec<f32> = heard[1600..].iter().map(|&s| s as f32 / 32768.0).collect();
    let drop_db = 10.0 * (power_at(&before, 100.0) / power_at(&after, 100.0).max(1e-20)).log10();
    eprintln!("100 Hz down by {drop_db:.1} dB");
    assert!(drop_db >= 30.0, "100 Hz only {drop_db:.1} dB down");
    gw.shutdown().await;
}
