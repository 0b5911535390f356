//! The audio chains, the playout buffer, the resamplers and the sound card's rings run on the
//! codec thread once per frame, for months: once built they must not allocate. A counting allocator (in this test binary only) checks
//! it, per thread, so the tests running beside each other do not disturb the counts.

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};
use zello_gateway::audio::dsp::{RxChain, RxSettings, TxChain, TxSettings};
use zello_gateway::audio::playout::{PlayoutBuffer, PlayoutSettings, Pop};
use zello_gateway::audio::resample::Resampler;
use zello_gateway::audio::sound::rings::{RingCapture, RingPlayback};
use zello_gateway::audio::speech::{speech_like, tone};
use zello_gateway::audio::{AudioInput, AudioOutput};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    assert!(allocations() > before);
    drop(v);
}

#[test]
fn audio_chains_do_not_allocate_per_frame() {
    for rate in [8000u32, 16000, 48000] {
        let frame = rate as usize * 60 / 1000;
        let mut input = speech_like(rate, 3.0, 1);
        input.extend(tone(rate, 100.0, 1.0, 0.0));
        input.extend(vec![0; rate as usize]);
        let everything = RxSettings {
            deemphasis: true,
            gain_db: 12.0,
            agc: true,
            ..RxSettings::default()
        };
        let mut rx = RxChain::new(&everything, rate).unwrap();
        let mut tx = TxChain::new(
            &TxSettings {
                gain_db: 20.0,
                limiter: true,
            },
            rate,
        )
        .unwrap();
        let mut buffer = vec![0i16; frame];
        let before = allocations();
        for chunk in input.chunks_exact(frame) {
            buffer.copy_from_slice(chunk);
            rx.process(&mut buffer);
            buffer.copy_from_slice(chunk);
            tx.process(&mut buffer);
        }
        rx.reset();
        tx.reset();
        rx.process(&mut buffer[..7]);
        rx.process(&mut []);
        assert_eq!(allocations(), before, "{rate} Hz");
    }
}

#[test]
fn the_playout_buffer_does_not_allocate_per_packet() {
    let base = Instant::now();
    let at = |ms: u64| base + Duration::from_millis(ms);
    let settings = PlayoutSettings {
        max_packets: 64,
        ..PlayoutSettings::default()
    };
    let mut buf = PlayoutBuffer::new(settings, 60);
    // The packets exist before the count starts (the session task makes them).
    let n = 3000u32;
    let make = || -> Vec<Bytes> {
        (0..n)
            .map(|id| Bytes::from(id.to_le_bytes().to_vec()))
            .collect()
    };
    let mut packets = make();
    let mut copies = make();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut delivery: Vec<(u64, u32)> = Vec::new();
    for id in 0..n {
        // 5 % lost, the rest up to 150 ms late.
        if rng.f32() >= 0.05 {
            delivery.push((u64::from(id) * 60 + rng.u64(0..150), id));
        }
    }
    // A flood in the middle.
    for d in delivery.iter_mut().filter(|d| (1000..1300).contains(&d.1)) {
        d.0 = 1000 * 60;
    }
    delivery.sort_by_key(|d| d.0);

    let before = allocations();
    let mut next = 0;
    let mut played = 0;
    for slot in 0..u64::from(n) + 100 {
        let now = slot * 60;
        while next < delivery.len() && delivery[next].0 <= now {
            let (time, id) = delivery[next];
            buf.push(id, std::mem::take(&mut packets[id as usize]), at(time));
            // Duplicates too.
            if id % 50 == 0 {
                buf.push(id, std::mem::take(&mut copies[id as usize]), at(time));
            }
            next += 1;
        }
        if next == delivery.len() {
            buf.end();
        }
        match buf.pop(at(now)) {
            Pop::Packet(_) => played += 1,
            Pop::Drained => break,
            Pop::Filling | Pop::Missing => {}
        }
        let _ = buf.stats();
    }
    buf.restart();
    buf.reset();
    assert_eq!(allocations(), before);
    assert!(played > 2000, "{played}");
}

#[test]
fn resampling_and_the_sound_card_rings_do_not_allocate_per_frame() {
    let to_f32 = |x: &[i16]| -> Vec<f32> { x.iter().map(|&s| f32::from(s) / 32768.0).collect() };
    for (from, to) in [
        (48_000, 16_000),
        (44_100, 16_000),
        (48_000, 44_100),
        (16_000, 48_000),
    ] {
        let input = to_f32(&speech_like(from, 2.0, 2));
        let mut r = Resampler::new(from, to).unwrap();
        let mut sum = 0.0f32;
        let before = allocations();
        for chunk in input.chunks(240) {
            r.process(chunk, |s| sum += s);
        }
        // More than the resampler takes per round, in one call.
        r.process(&input[..5000], |s| sum += s);
        r.reset();
        r.process(&input[..7], |s| sum += s);
        r.process_from(&input[..3000], &mut 500, |s| sum += s);
        assert_eq!(allocations(), before, "{from} -> {to} Hz");
        assert!(sum.is_finite());
    }

    // The capture side: a stereo 48 kHz card's callbacks in, 60 ms frames at 16 kHz out.
    let stereo: Vec<f32> = to_f32(&speech_like(48_000, 3.0, 3))
        .iter()
        .flat_map(|&s| [s, s])
        .collect();
    let mut capture = RingCapture::new(48_000, 2).unwrap();
    let mut frame = vec![0i16; 960];
    let before = allocations();
    let mut frames = 0;
    for period in stereo.chunks(2 * 240) {
        capture.callback(period);
        // Frames read and frames skipped (a closed squelch) in turns.
        loop {
            let taken = if frames % 3 == 1 {
                capture.skip_frame(&mut frame)
            } else {
                capture.read_frame(&mut frame)
            };
            if !taken.unwrap() {
                break;
            }
            frames += 1;
        }
    }
    assert_eq!(allocations(), before, "capture");
    assert!(frames >= 45, "{frames}");

    // The playback side, to a card at an Opus rate and to one that needs resampling.
    let speech = speech_like(48_000, 3.0, 4);
    for card in [48_000, 44_100] {
        let mut playback = RingPlayback::new(card).unwrap();
        let mut out = vec![0i16; card as usize / 200];
        let before = allocations();
        for _message in 0..2 {
            for chunk in speech.chunks(2880) {
                playback.write_frame(chunk).unwrap();
                let _ = playback.delay(2880);
                for _ in 0..12 {
                    playback.callback(&mut out);
                }
            }
            playback.end_of_message().unwrap();
        }
        assert_eq!(allocations(), before, "playback to {card} Hz");
    }
}
