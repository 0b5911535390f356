//! Every timer rule of the state machine, driven with made-up instants.

use super::*;

const MS: Duration = Duration::from_millis(1);

struct Clock {
    t0: Instant,
    m: Machine,
}

impl Clock {
    fn new(t: Timers) -> Self {
        let mut m = Machine::new(t);
        let t0 = Instant::now();
        m.handle(t0, Input::ChannelReady(true));
        Clock { t0, m }
    }

    /// [`Clock::new`] with a carrier up since 0: the radio's audio goes to the channel from
    /// rx_min (250 ms), where it stands.
    fn sending(t: Timers) -> Self {
        let mut c = Clock::new(t);
        c.input(0, Input::CarrierUp);
        let a = c.run_until(250);
        assert!(has(&a, &Action::RxStart), "{a:?}");
        c
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + MS * ms as u32
    }

    fn input(&mut self, ms: u64, input: Input) -> Vec<Action> {
        let mut a = self.run_until(ms);
        a.extend(self.m.handle(self.at(ms), input));
        a
    }

    /// Fires every deadline up to `ms` (as the bridge does) and returns the actions.
    fn run_until(&mut self, ms: u64) -> Vec<Action> {
        let end = self.at(ms);
        let mut out = Vec::new();
        while let Some(d) = self.m.next_deadline() {
            if d > end {
                break;
            }
            out.extend(self.m.on_timer(d));
        }
        out
    }
}

fn has(a: &[Action], x: &Action) -> bool {
    a.contains(x)
}

fn timers() -> Timers {
    Timers::default()
}

#[test]
fn a_message_keys_waits_tx_delay_plays_holds_the_tail_and_unkeys() {
    let mut c = Clock::new(timers());
    let a = c.input(0, Input::IncomingStart { stream_id: 7 });
    assert_eq!(a, [Action::Key]);
    assert!(c.m.keyed());
    assert_eq!(c.run_until(199), []);
    assert_eq!(c.run_until(200), [Action::PlayBegin { stream_id: 7 }]);
    let a = c.input(3000, Input::PlaybackDrained { stream_id: 7 });
    assert_eq!(a, []);
    assert_eq!(c.run_until(3099), []);
    assert_eq!(c.run_until(3100), [Action::Unkey]);
    assert!(!c.m.keyed());
}

#[test]
fn the_time_out_timer_unkeys_and_drops_the_rest_of_the_message() {
    let mut c = Clock::new(timers());
    c.input(0, Input::IncomingStart { stream_id: 7 });
    c.run_until(200);
    let a = c.run_until(180_000);
    assert_eq!(
        a,
        [
            Action::Note(Note::TimeOut),
            Action::PlayAbort { stream_id: 7 },
            Action::DropIncoming {
                stream_id: 7,
                reason: DropReason::TimeOut
            },
            Action::Unkey
        ]
    );
    assert!(!c.m.keyed());
    // The message does not key again.
    assert_eq!(c.run_until(400_000), []);
    assert!(!c.m.is_queued(7));
    // A new message does.
    assert_eq!(
        c.input(400_000, Input::IncomingStart { stream_id: 8 }),
        [Action::Key]
    );
}

#[test]
fn the_time_out_timer_ends_where_the_machine_keyed() {
    let mut c = Clock::new(timers());
    assert_eq!(c.m.tot_ends(), None);
    c.input(1000, Input::IncomingStart { stream_id: 7 });
    assert_eq!(c.m.tot_ends(), Some(c.at(181_000)));
    c.run_until(181_000);
    assert_eq!(c.m.tot_ends(), None, "unkeyed by the time-out timer");
}

#[test]
fn the_time_out_timer_also_holds_while_keying_and_in_the_tail() {
    let mut c = Clock::new(Timers {
        tot: Duration::from_millis(150),
        ..timers()
    });
    c.input(0, Input::IncomingStart { stream_id: 1 });
    let a = c.run_until(150);
    assert!(has(&a, &Action::Unkey), "{a:?}");
    assert!(!has(&a, &Action::PlayBegin { stream_id: 1 }));
    assert!(!c.m.keyed());
}

#[test]
fn carrier_starts_a_message_after_rx_min_and_ends_after_the_hang() {
    let mut c = Clock::new(timers());
    let a = c.input(0, Input::CarrierUp);
    assert_eq!(a, [Action::RxBuffer]);
    assert_eq!(c.run_until(249), []);
    assert_eq!(c.run_until(250), [Action::RxStart]);
    assert_eq!(c.input(2000, Input::CarrierDown), []);
    assert!(c.m.sending(), "silence is sent during the hang");
    assert_eq!(c.run_until(2399), []);
    assert_eq!(c.run_until(2400), [Action::RxFinish]);
}

#[test]
fn a_kerchunk_shorter_than_rx_min_sends_nothing() {
    let mut c = Clock::new(timers());
    c.input(0, Input::CarrierUp);
    let a = c.input(200, Input::CarrierDown);
    assert_eq!(a, [Action::RxDiscard, Action::Note(Note::Kerchunk)]);
    assert_eq!(c.run_until(5000), []);
}

#[test]
fn a_carrier_back_within_the_hang_continues_the_same_message() {
    let mut c = Clock::sending(timers());
    c.input(1000, Input::CarrierDown);
    assert_eq!(c.input(1300, Input::CarrierUp), []);
    assert_eq!(c.run_until(1800), []);
    assert!(c.m.sending());
}

#[test]
fn anti_ping_pong_ignores_the_squelch_tail_after_our_ptt_drops() {
    let mut c = Clock::new(timers());
    c.input(0, Input::IncomingStart { stream_id: 1 });
    c.run_until(200);
    c.input(1000, Input::PlaybackDrained { stream_id: 1 });
    assert_eq!(c.run_until(1100), [Action::Unkey]);
    // The squelch tail opens for 200 ms: ignored.
    assert_eq!(c.input(1150, Input::CarrierUp), []);
    assert_eq!(c.input(1350, Input::CarrierDown), []);
    assert_eq!(c.run_until(3000), []);
    // A carrier that outlasts the window is a real signal.
    c.input(4000, Input::IncomingStart { stream_id: 2 });
    c.run_until(4200);
    c.input(5000, Input::PlaybackDrained { stream_id: 2 });
    c.run_until(5100);
    assert_eq!(c.input(5150, Input::CarrierUp), []);
    assert_eq!(c.run_until(5400), [Action::RxBuffer]);
}

#[test]
fn a_stuck_carrier_ends_the_message_and_is_ignored_until_it_drops() {
    let mut c = Clock::sending(timers());
    let a = c.run_until(300_250);
    assert_eq!(a, [Action::RxFinish, Action::Note(Note::CarrierStuck)]);
    assert_eq!(c.run_until(900_000), []);
    assert_eq!(
        c.input(900_000, Input::CarrierDown),
        [Action::Note(Note::CarrierCleared)]
    );
    assert_eq!(c.input(901_000, Input::CarrierUp), [Action::RxBuffer]);
}

#[test]
fn a_chattering_squelch_is_suppressed_then_allowed_again() {
    let mut c = Clock::new(timers());
    for i in 0..5u64 {
        let t = i * 1000;
        c.input(t, Input::CarrierUp);
        c.input(t + 300, Input::CarrierDown);
        c.run_until(t + 700);
    }
    assert_eq!(
        c.input(5000, Input::CarrierUp),
        [Action::Note(Note::Flapping)]
    );
    assert_eq!(c.input(5300, Input::CarrierDown), []);
    assert_eq!(c.input(6000, Input::CarrierUp), [], "noted once, not again");
    // 20 s after the first start (at 250 ms) the window has room again; the carrier still
    // up starts a message.
    assert_eq!(c.run_until(20_249), []);
    let a = c.run_until(20_250);
    assert!(has(&a, &Action::RxBuffer), "{a:?}");
}

#[test]
fn busy_queue_waits_for_the_frequency_to_clear() {
    let mut c = Clock::sending(timers());
    let a = c.input(500, Input::IncomingStart { stream_id: 3 });
    assert_eq!(a, [Action::Note(Note::Queued)]);
    assert!(!c.m.keyed());
    c.input(2000, Input::CarrierDown);
    assert!(!c.m.keyed(), "not during the hang");
    let a = c.run_until(2400);
    assert_eq!(a, [Action::RxFinish, Action::Key]);
}

#[test]
fn busy_drop_drops() {
    let mut c = Clock::new(Timers {
        busy_policy: BusyPolicy::Drop,
        ..timers()
    });
    c.input(0, Input::CarrierUp);
    let a = c.input(100, Input::IncomingStart { stream_id: 3 });
    assert_eq!(
        a,
        [Action::DropIncoming {
            stream_id: 3,
            reason: DropReason::Busy
        }]
    );
    c.input(1000, Input::CarrierDown);
    assert!(!c.run_until(10_000).contains(&Action::Key));
}

#[test]
fn busy_override_keys_over_the_carrier() {
    let mut c = Clock::sending(Timers {
        busy_policy: BusyPolicy::Override,
        ..timers()
    });
    let a = c.input(500, Input::IncomingStart { stream_id: 3 });
    assert_eq!(a, [Action::RxFinish, Action::Key]);
}

#[test]
fn a_queued_message_too_old_is_dropped() {
    let mut c = Clock::sending(timers());
    c.input(1000, Input::IncomingStart { stream_id: 3 });
    let a = c.run_until(31_000);
    assert!(
        has(
            &a,
            &Action::DropIncoming {
                stream_id: 3,
                reason: DropReason::TooOld
            }
        ),
        "{a:?}"
    );
    c.input(40_000, Input::CarrierDown);
    assert!(!c.run_until(50_000).contains(&Action::Key));
}

#[test]
fn never_keys_with_a_failed_audio_device() {
    let mut c = Clock::new(timers());
    c.input(0, Input::IncomingStart { stream_id: 1 });
    c.run_until(200);
    let a = c.input(500, Input::Device { ok: false });
    assert_eq!(
        a,
        [
            Action::PlayAbort { stream_id: 1 },
            Action::DropIncoming {
                stream_id: 1,
                reason: DropReason::DeviceFailed
            },
            Action::Unkey
        ]
    );
    assert_eq!(c.input(1000, Input::IncomingStart { stream_id: 2 }), []);
    assert_eq!(c.input(2000, Input::Device { ok: true }), [Action::Key]);
}

#[test]
fn a_failed_ptt_drops_the_message() {
    let mut c = Clock::new(timers());
    c.input(0, Input::IncomingStart { stream_id: 1 });
    let a = c.input(1, Input::PttFailed);
    assert_eq!(
        a,
        [
            Action::DropIncoming {
                stream_id: 1,
                reason: DropReason::PttFailed
            },
            Action::Unkey
        ]
    );
}

#[test]
fn carrier_while_the_channel_is_not_ready_is_not_sent() {
    let mut c = Clock::new(timers());
    c.m.handle(c.at(0), Input::ChannelReady(false));
    c.input(0, Input::CarrierUp);
    let a = c.run_until(250);
    assert_eq!(a, [Action::RxDiscard, Action::Note(Note::NotReady)]);
}

#[test]
fn a_lost_outgoing_message_blocks_the_rest_of_that_carrier() {
    let mut c = Clock::sending(timers());
    assert_eq!(c.input(1000, Input::OutgoingLost), []);
    assert!(!c.m.sending() && !c.m.capturing());
    assert_eq!(c.run_until(5000), []);
    c.input(6000, Input::CarrierDown);
    assert!(has(&c.input(7000, Input::CarrierUp), &Action::RxBuffer));
}

#[test]
fn a_link_lost_under_carrier_resumes_as_a_new_message_when_the_channel_is_back() {
    let mut c = Clock::sending(timers());
    // The connection drops: the audio from now on is kept for the rest of the transmission.
    assert_eq!(c.input(1000, Input::LinkLost), [Action::RxBuffer]);
    assert!(c.m.pending() && c.m.capturing() && !c.m.sending());
    c.input(1010, Input::ChannelReady(false));
    assert_eq!(c.run_until(3000), []);
    // Back while the carrier is still up: the rest goes out as a new message.
    assert_eq!(c.input(3000, Input::ChannelReady(true)), [Action::RxStart]);
    assert!(c.m.sending());
    c.input(5000, Input::CarrierDown);
    assert_eq!(c.run_until(5400), [Action::RxFinish]);
}

#[test]
fn a_link_lost_after_the_carrier_dropped_or_for_too_long_resumes_nothing() {
    // The carrier drops before the link is back: the kept audio is dropped, said once.
    let mut c = Clock::sending(timers());
    c.input(1000, Input::LinkLost);
    c.input(1010, Input::ChannelReady(false));
    let a = c.input(2000, Input::CarrierDown);
    assert!(has(&a, &Action::RxDiscard), "{a:?}");
    assert!(has(&a, &Action::Note(Note::NotResumed)), "{a:?}");
    assert!(!c.m.capturing());
    assert_eq!(c.input(3000, Input::ChannelReady(true)), []);
    // Lost during the hang (carrier already down): the message simply ends.
    let mut c = Clock::sending(timers());
    c.input(1000, Input::CarrierDown);
    assert_eq!(c.input(1100, Input::LinkLost), []);
    assert!(!c.m.capturing());
    // A carrier still up at rx_max while the link is away is a stuck carrier.
    let mut c = Clock::sending(timers());
    c.input(1000, Input::LinkLost);
    c.input(1010, Input::ChannelReady(false));
    let a = c.run_until(250 + 300_000);
    assert!(has(&a, &Action::Note(Note::CarrierStuck)), "{a:?}");
    assert!(!c.m.capturing());
    assert_eq!(c.input(300_500, Input::ChannelReady(true)), []);
}

#[test]
fn courtesy_tone_after_the_message() {
    let mut c = Clock::new(Timers {
        courtesy_tone: true,
        ..timers()
    });
    c.input(0, Input::IncomingStart { stream_id: 1 });
    c.run_until(200);
    assert_eq!(
        c.input(1000, Input::PlaybackDrained { stream_id: 1 }),
        [Action::PlayCourtesyTone]
    );
    assert_eq!(c.run_until(5000), [], "keyed until the tone has played");
    assert!(c.m.keyed());
    c.input(5100, Input::PcmDrained);
    assert_eq!(c.run_until(5200), [Action::Unkey]);
}

#[test]
fn identification_after_the_first_transmission_then_every_interval() {
    let mut c = Clock::new(Timers {
        id_interval: Some(Duration::from_secs(600)),
        ..timers()
    });
    let msg = |c: &mut Clock, at: u64, id: u32| {
        c.input(at, Input::IncomingStart { stream_id: id });
        c.run_until(at + 200);
        c.input(at + 1000, Input::PlaybackDrained { stream_id: id })
    };
    msg(&mut c, 0, 1);
    // Tail ends and unkeys; the identification is due, after the pause between transmissions.
    assert_eq!(c.run_until(1100), [Action::Unkey]);
    assert_eq!(c.run_until(1400), [Action::Key]);
    assert_eq!(c.run_until(1600), [Action::PlayIdentification]);
    c.input(4000, Input::PcmDrained);
    assert_eq!(c.run_until(4100), [Action::Unkey]);
    // Another message within the interval: no identification after it.
    msg(&mut c, 100_000, 2);
    assert_eq!(c.run_until(101_100), [Action::Unkey]);
    assert_eq!(c.run_until(200_000), []);
    // The interval since the last identification passes: identify (we transmitted since).
    assert_eq!(c.run_until(601_600), [Action::Key]);
    assert_eq!(c.run_until(601_800), [Action::PlayIdentification]);
    c.input(604_000, Input::PcmDrained);
    c.run_until(604_100);
    // Nothing transmitted since: no more identification.
    assert_eq!(c.run_until(3_000_000), []);
}

/// Random inputs at random times: the transmitter is never keyed over a carrier (queue
/// policy), never longer than the time-out timer, and every key has its unkey.
#[test]
fn safety_holds_for_random_sequences() {
    for seed in 0..300u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut t = timers();
        t.tot = Duration::from_secs(20);
        let mut c = Clock::new(t);
        let mut sim = Model {
            seed,
            keyed_at: None,
            real_carrier: false,
            reported: false,
        };
        let mut now = 0u64;
        let mut next_id = 1u32;
        for _ in 0..200 {
            now += rng.u64(1..3000);
            let end = c.at(now);
            // Fire the deadlines one by one, checking after each.
            while let Some(d) = c.m.next_deadline() {
                if d > end {
                    break;
                }
                let ms = d.duration_since(c.t0).as_millis() as u64;
                let a = c.m.on_timer(d);
                sim.apply(&mut c, &a, ms);
            }
            let input = match rng.u8(0..8) {
                0 | 1 => {
                    sim.real_carrier = !sim.real_carrier;
                    None
                }
                2 => {
                    next_id += 1;
                    Some(Input::IncomingStart { stream_id: next_id })
                }
                3 => Some(Input::PlaybackDrained {
                    stream_id: c.m.playing().unwrap_or(0),
                }),
                4 => Some(Input::Device { ok: rng.bool() }),
                5 => Some(Input::ChannelReady(rng.bool())),
                6 if rng.bool() => Some(Input::LinkLost),
                6 => Some(Input::OutgoingLost),
                _ => Some(Input::PcmDrained),
            };
            if let Some(input) = input {
                let a = c.m.handle(end, input);
                sim.apply(&mut c, &a, now);
            } else {
                sim.apply(&mut c, &[], now);
            }
            if let Some(k) = sim.keyed_at {
                assert!(now - k <= 20_000, "seed {seed}: keyed {} ms", now - k);
            }
            assert_eq!(sim.keyed_at.is_some(), c.m.keyed(), "seed {seed}");
        }
    }
}

/// The radio and engine around the machine: the engine reports the carrier as down while
/// the transmitter is keyed, and as it really is otherwise.
struct Model {
    seed: u64,
    keyed_at: Option<u64>,
    real_carrier: bool,
    reported: bool,
}

impl Model {
    fn apply(&mut self, c: &mut Clock, actions: &[Action], now: u64) {
        let mut pending: Vec<Action> = actions.to_vec();
        loop {
            for a in pending.drain(..) {
                match &a {
                    Action::Key => {
                        assert!(self.keyed_at.is_none(), "seed {}: keyed twice", self.seed);
                        assert!(
                            !self.real_carrier,
                            "seed {}: keyed over a carrier at {now}",
                            self.seed
                        );
                        self.keyed_at = Some(now);
                    }
                    Action::Unkey => self.keyed_at = None,
                    _ => {}
                }
                if std::env::var("MACHINE_TRACE").is_ok() {
                    eprintln!("{now}: {a:?} real_carrier={}", self.real_carrier);
                }
            }
            let reported = self.real_carrier && self.keyed_at.is_none();
            if reported == self.reported {
                break;
            }
            self.reported = reported;
            let input = if reported {
                Input::CarrierUp
            } else {
                Input::CarrierDown
            };
            pending = c.m.handle(c.at(now), input);
        }
    }
}

#[test]
fn an_inhibit_cuts_the_message_on_the_air_and_drops_the_queued_ones() {
    let mut c = Clock::new(timers());
    c.input(0, Input::IncomingStart { stream_id: 7 });
    c.input(10, Input::IncomingStart { stream_id: 8 });
    assert_eq!(c.run_until(200), [Action::PlayBegin { stream_id: 7 }]);
    let a = c.input(1000, Input::Inhibit(true));
    assert_eq!(
        a,
        [
            Action::PlayAbort { stream_id: 7 },
            Action::DropIncoming {
                stream_id: 7,
                reason: DropReason::Inhibited
            },
            Action::Unkey,
            Action::DropIncoming {
                stream_id: 8,
                reason: DropReason::Inhibited
            },
        ]
    );
    assert!(!c.m.keyed() && c.m.inhibited());
    assert!(!c.m.is_queued(8));
    // Inhibiting again changes nothing.
    assert_eq!(c.input(1100, Input::Inhibit(true)), []);
    // Messages arriving meanwhile are dropped at once, never queued.
    assert_eq!(
        c.input(2000, Input::IncomingStart { stream_id: 9 }),
        [Action::DropIncoming {
            stream_id: 9,
            reason: DropReason::Inhibited
        }]
    );
    assert_eq!(c.run_until(60_000), []);
    // Allowed again: nothing keys by itself, the next message does.
    assert_eq!(c.input(60_000, Input::Inhibit(false)), []);
    assert_eq!(
        c.input(61_000, Input::IncomingStart { stream_id: 10 }),
        [Action::Key]
    );
}

#[test]
fn an_inhibit_during_the_key_up_unkeys_before_anything_plays() {
    let mut c = Clock::new(timers());
    assert_eq!(
        c.input(0, Input::IncomingStart { stream_id: 7 }),
        [Action::Key]
    );
    assert_eq!(
        c.input(100, Input::Inhibit(true)),
        [
            Action::DropIncoming {
                stream_id: 7,
                reason: DropReason::Inhibited
            },
            Action::Unkey
        ]
    );
    assert_eq!(c.run_until(10_000), [], "no PlayBegin after the cut");
}

#[test]
fn an_inhibit_during_the_tail_or_tone_unkeys_at_once() {
    let mut c = Clock::new(Timers {
        courtesy_tone: true,
        ..timers()
    });
    c.input(0, Input::IncomingStart { stream_id: 7 });
    c.run_until(200);
    assert_eq!(
        c.input(3000, Input::PlaybackDrained { stream_id: 7 }),
        [Action::PlayCourtesyTone]
    );
    assert_eq!(c.input(3010, Input::Inhibit(true)), [Action::Unkey]);
    assert!(!c.m.keyed());
}

#[test]
fn the_radio_still_receives_while_inhibited() {
    let mut c = Clock::new(timers());
    c.input(0, Input::Inhibit(true));
    assert_eq!(c.input(1000, Input::CarrierUp), [Action::RxBuffer]);
    assert_eq!(c.run_until(1250), [Action::RxStart]);
    assert!(c.m.sending());
    assert_eq!(c.input(5000, Input::CarrierDown), []);
    assert_eq!(c.run_until(5400), [Action::RxFinish]);
    // With the override policy, an inhibited radio does not cut what it receives either.
    let mut c = Clock::sending(Timers {
        busy_policy: BusyPolicy::Override,
        ..timers()
    });
    c.input(300, Input::Inhibit(true));
    let a = c.input(400, Input::IncomingStart { stream_id: 3 });
    assert_eq!(
        a,
        [Action::DropIncoming {
            stream_id: 3,
            reason: DropReason::Inhibited
        }]
    );
    assert!(c.m.sending());
}

#[test]
fn end_transmission_cuts_the_message_playing_and_the_queue_goes_on() {
    let mut c = Clock::new(timers());
    c.input(0, Input::IncomingStart { stream_id: 7 });
    c.input(10, Input::IncomingStart { stream_id: 8 });
    c.run_until(200);
    assert_eq!(
        c.input(1000, Input::EndTransmission),
        [
            Action::PlayAbort { stream_id: 7 },
            Action::DropIncoming {
                stream_id: 7,
                reason: DropReason::Unkeyed
            },
            Action::Unkey
        ]
    );
    assert!(!c.m.keyed());
    // The next one keys after the pause the receiver needs.
    let a = c.run_until(1300);
    assert_eq!(a, [Action::Key]);
    // Nothing on the air: ending the transmission does nothing.
    let mut c = Clock::new(timers());
    assert_eq!(c.input(0, Input::EndTransmission), []);
}

/// A small deterministic generator, so the sequences below are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Any input, with stream ids from a small set so that ends and drains meet their starts.
fn any_input(r: &mut Lcg, m: &Machine, inhibits: bool) -> Input {
    let id = r.next(6) as u32;
    match r.next(if inhibits { 14 } else { 12 }) {
        0 => Input::CarrierUp,
        1 => Input::CarrierDown,
        2 => Input::ChannelReady(r.next(4) > 0),
        3 => Input::OutgoingLost,
        4 => Input::LinkLost,
        5 | 6 => Input::IncomingStart { stream_id: id },
        7 => Input::IncomingEnd { stream_id: id },
        8 => Input::PlaybackDrained {
            stream_id: m.playing().unwrap_or(id),
        },
        9 => Input::PcmDrained,
        10 => match r.next(3) {
            0 => Input::Device { ok: false },
            1 => Input::Device { ok: true },
            _ => Input::PttFailed,
        },
        11 => Input::EndTransmission,
        12 => Input::Inhibit(true),
        _ => Input::Inhibit(false),
    }
}

fn busy_timers(seed: u64) -> Timers {
    Timers {
        busy_policy: [BusyPolicy::Queue, BusyPolicy::Drop, BusyPolicy::Override][seed as usize % 3],
        id_interval: seed.is_multiple_of(2).then_some(Duration::from_secs(60)),
        courtesy_tone: seed % 4 < 2,
        rx_min: if seed.is_multiple_of(5) {
            Duration::ZERO
        } else {
            250 * MS
        },
        tot: Duration::from_secs(20),
        ..timers()
    }
}

#[test]
fn no_key_comes_out_while_inhibited_whatever_the_inputs() {
    for seed in 0..300 {
        let mut r = Lcg(seed);
        let mut c = Clock::new(busy_timers(seed));
        assert_eq!(c.input(0, Input::Inhibit(true)), []);
        let mut ms = 0;
        for step in 0..400 {
            ms += r.next(3000);
            let input = any_input(&mut r, &c.m, false);
            let a = c.input(ms, input.clone());
            assert!(
                !has(&a, &Action::Key)
                    && !a.iter().any(|x| matches!(
                        x,
                        Action::PlayBegin { .. }
                            | Action::PlayIdentification
                            | Action::PlayCourtesyTone
                    )),
                "seed {seed} step {step}: {input:?} gave {a:?}"
            );
            assert!(!c.m.keyed(), "seed {seed} step {step}");
        }
    }
}

#[test]
fn keys_only_while_allowed_and_an_inhibit_always_leaves_the_transmitter_unkeyed() {
    let mut keyed_somewhere = false;
    let mut received_somewhere = false;
    for seed in 0..300 {
        let mut r = Lcg(seed ^ 0x5eed);
        let mut c = Clock::new(busy_timers(seed));
        let mut ms = 0;
        for step in 0..400 {
            ms += r.next(3000);
            let input = any_input(&mut r, &c.m, true);
            let inhibit = matches!(input, Input::Inhibit(true));
            // Timers first, so the input's own actions are seen apart.
            let timed = c.run_until(ms);
            let was = c.m.inhibited();
            assert!(
                !(was && has(&timed, &Action::Key)),
                "seed {seed} step {step}: {timed:?}"
            );
            let a = c.m.handle(c.at(ms), input.clone());
            keyed_somewhere |= has(&a, &Action::Key) || has(&timed, &Action::Key);
            received_somewhere |= has(&a, &Action::RxStart) || has(&timed, &Action::RxStart);
            if c.m.inhibited() {
                assert!(
                    !has(&a, &Action::Key),
                    "seed {seed} step {step}: {input:?} gave {a:?}"
                );
                assert!(
                    !c.m.keyed(),
                    "seed {seed} step {step}: keyed while inhibited"
                );
            }
            if inhibit {
                assert!(!c.m.keyed() && c.m.playing().is_none());
            }
        }
    }
    assert!(
        keyed_somewhere && received_somewhere,
        "the sequences exercise both sides"
    );
}
