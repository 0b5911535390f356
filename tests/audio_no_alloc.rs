//! The audio chains and the playout buffer run on the codec thread once per frame, for months:
//! once built they must not allocate. A counting allocator (in this test binary only) checks
//! it, per thread, so the tests running beside each other do not disturb the counts.

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};
use zello_gateway::audio::dsp::{RxChain, RxSettings, TxChain, TxSettings};
use zello_gateway::audio::playout::{PlayoutBuffer, PlayoutSettings, Pop};
use zello_gateway::audio::speech::{speech_like, tone};

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
