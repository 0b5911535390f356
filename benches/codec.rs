//! Micro-benchmarks of the audio path, so a regression in one piece shows on its own:
//! - the floor: libopus encoding and decoding one 60 ms frame of 16 kHz speech;
//! - the capture side: one 60 ms frame through the sound card's capture ring, resampled from
//!   48 kHz to 16 kHz;
//! - the codec engine's tick while receiving (carrier detect, levels, encode);
//! - the codec engine's tick while transmitting (playout, decode to 48 kHz, playback ring).
//!
//! `cargo bench --bench codec`; `zello-gateway bench` measures the whole pipeline.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tokio::sync::mpsc;
use zello_gateway::audio::NullOutput;
use zello_gateway::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder, max_packet_samples};
use zello_gateway::audio::sound::rings::{RingCapture, RingPlayback};
use zello_gateway::audio::speech::speech_like;
use zello_gateway::audio::{AudioError, AudioInput, AudioOutput, CODEC_RATE};
use zello_gateway::gateway::engine::{Engine, EngineCommand};
use zello_gateway::radio::sim::FlagCarrier;
use zello_gateway::zello::protocol::CodecHeader;

/// Samples in a 60 ms frame at 16 kHz and at 48 kHz.
const FRAME_16K: usize = 960;
const FRAME_48K: usize = 2880;

/// Two seconds of speech at `rate`, as the benchmark's clip.
fn speech(rate: u32) -> Vec<i16> {
    speech_like(rate, 2.0, 7)
}

/// An input that plays a speech clip over and over.
struct Looping {
    samples: Vec<i16>,
    pos: usize,
}

impl AudioInput for Looping {
    fn sample_rate(&self) -> u32 {
        CODEC_RATE
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        for s in frame.iter_mut() {
            *s = self.samples[self.pos];
            self.pos = (self.pos + 1) % self.samples.len();
        }
        Ok(true)
    }
}

/// The floor: bare libopus, one 60 ms frame encoded and decoded.
fn floor(c: &mut Criterion) {
    let settings = EncoderSettings::default();
    let mut encoder = OpusEncoder::new(&settings).expect("encoder");
    let mut decoder = OpusDecoder::new(CODEC_RATE).expect("decoder");
    let clip = speech(CODEC_RATE);
    let frames: Vec<&[i16]> = clip.chunks_exact(FRAME_16K).collect();
    let mut packet = Vec::with_capacity(4000);
    let mut pcm = vec![0i16; max_packet_samples(CODEC_RATE)];
    let mut i = 0;
    c.bench_function("floor: opus encode + decode, 60 ms at 16 kHz", |b| {
        b.iter(|| {
            let frame = frames[i % frames.len()];
            i += 1;
            encoder
                .encode_packet(black_box(frame), &mut packet)
                .expect("encodes");
            decoder
                .decode(Some(black_box(&packet)), &mut pcm)
                .expect("decodes")
        })
    });
}

/// The capture side: a frame of sound-card callbacks in, one codec frame out.
fn capture(c: &mut Criterion) {
    let mut ring = RingCapture::new(48_000, 1).expect("capture ring");
    let clip: Vec<f32> = speech(48_000)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let mut frame = vec![0i16; FRAME_16K];
    let mut pos = 0;
    c.bench_function("capture ring: 60 ms, 48 kHz -> 16 kHz", |b| {
        b.iter(|| {
            if pos + FRAME_48K > clip.len() {
                pos = 0;
            }
            for period in clip[pos..pos + FRAME_48K].chunks(240) {
                ring.callback(black_box(period));
            }
            pos += FRAME_48K;
            ring.read_frame(&mut frame).expect("reads")
        })
    });
}

/// The engine while the radio receives: one tick reads a frame, detects the carrier and
/// encodes a packet.
fn engine_encode(c: &mut Criterion) {
    let (_commands, command_rx) = mpsc::channel(16);
    let (event_tx, mut events) = mpsc::channel(16);
    let mut engine = Engine::new(
        Box::new(Looping {
            samples: speech(CODEC_RATE),
            pos: 0,
        }),
        Box::new(NullOutput),
        Box::new(FlagCarrier::fixed(true)),
        &EncoderSettings::default(),
        command_rx,
        event_tx,
    )
    .expect("engine");
    c.bench_function("engine tick: receive and encode 60 ms", |b| {
        b.iter(|| {
            engine.tick();
            while events.try_recv().is_ok() {}
        })
    });
}

/// The engine while the radio transmits: one tick takes a packet from the playout queue,
/// decodes it at 48 kHz and writes it to the playback ring, which the card drains.
fn engine_decode(c: &mut Criterion) {
    let mut encoder = OpusEncoder::new(&EncoderSettings::default()).expect("encoder");
    let packets: Vec<Bytes> = speech(CODEC_RATE)
        .chunks_exact(FRAME_16K)
        .map(|frame| {
            let mut p = Vec::new();
            encoder.encode_packet(frame, &mut p).expect("encodes");
            Bytes::from(p)
        })
        .collect();
    let (commands, command_rx) = mpsc::channel(16);
    let (event_tx, mut events) = mpsc::channel(16);
    let playback = RingPlayback::new(48_000).expect("playback ring");
    // The engine owns its output, so the sound card's playback callback runs right after
    // each write, draining the ring as the card would within the frame.
    struct Drained(RingPlayback, Vec<i16>);
    impl AudioOutput for Drained {
        fn sample_rate(&self) -> u32 {
            self.0.sample_rate()
        }
        fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
            self.0.write_frame(frame)?;
            self.0.callback(&mut self.1);
            Ok(())
        }
    }
    let mut engine = Engine::new(
        Box::new(Looping {
            samples: vec![0; FRAME_16K],
            pos: 0,
        }),
        Box::new(Drained(playback, vec![0; FRAME_48K])),
        Box::new(FlagCarrier::fixed(false)),
        &EncoderSettings::default(),
        command_rx,
        event_tx,
    )
    .expect("engine");
    commands
        .try_send(EngineCommand::PlayBegin {
            stream_id: 1,
            header: CodecHeader::default(),
        })
        .expect("queued");
    let mut i = 0;
    let mut send = |commands: &mpsc::Sender<EngineCommand>| {
        let data = packets[i % packets.len()].clone();
        let packet_id = i as u32;
        i += 1;
        commands
            .try_send(EngineCommand::PlayPacket {
                stream_id: 1,
                packet_id,
                data,
                arrival: std::time::Instant::now(),
            })
            .expect("queued");
    };
    // The playout depth (120 ms at the start), then one packet per tick.
    for _ in 0..2 {
        send(&commands);
    }
    c.bench_function("engine tick: play and decode 60 ms to 48 kHz", |b| {
        b.iter(|| {
            send(&commands);
            engine.tick();
            while events.try_recv().is_ok() {}
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = floor, capture, engine_encode, engine_decode
}
criterion_main!(benches);
