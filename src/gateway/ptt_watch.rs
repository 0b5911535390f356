//! Confirms during a transmission that the transmitter is still keyed, for PTT interfaces
//! that can read their state back ([`crate::radio::Ptt::readback`]: rigctld's `t`).
//!
//! A rigctld restarted during a transmission comes back with the rig unkeyed, and nothing
//! else would notice: the message would go on playing into a dead transmitter. While keyed,
//! the bridge reads the state every [`READ_EVERY`] (on the radio's PTT thread, so the audio
//! never waits on it) and hands the reading to [`PttWatch::on_read`]:
//!
//! - keyed: all is well;
//! - unkeyed: the transmitter dropped. It is keyed again while the transmission is within
//!   the state machine's time-out timer, which counts from the machine's key-up (past it,
//!   the machine ends the transmission anyway); how long it was unkeyed is reported, at
//!   most from the last reading that found it keyed;
//! - unreadable: nothing is known yet and the next reading decides; but when the state
//!   stays unreadable, or keeps reading unkeyed (even though keying it again is accepted),
//!   or the transmitter cannot be keyed again, for [`GIVE_UP_AFTER`] without a reading that
//!   finds it keyed, the transmission is given up as a PTT failure.
//!
//! Each reading carries a [`Ticket`] naming its transmission: one that comes back after
//! the next key-up is dropped.
//!
//! Pure logic with made-up instants in tests; [`confirm`] applies a reading to a PTT line.

use super::PttGuard;
use crate::radio::RadioError;
use std::time::Duration;
use tokio::time::Instant;

/// How often the keyed state is read back during a transmission.
pub const READ_EVERY: Duration = Duration::from_secs(1);
/// How long the state may stay unreadable, or the transmitter unkeyable, before the
/// transmission is stopped as a PTT failure.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

/// What a reading means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keyed, as it should be.
    Keyed,
    /// Keyed again after it was found unkeyed (and keyed by something else meanwhile):
    /// it was unkeyed for at most `unkeyed`.
    BackByItself { unkeyed: Duration },
    /// The state could not be read; `first` of a run of failed readings.
    Unreadable { first: bool },
    /// Found unkeyed: key it again. `first`: newly noticed; `unkeyed`: for at most this long
    /// so far.
    Rekey { first: bool, unkeyed: Duration },
    /// Found unkeyed past the time-out timer: it stays unkeyed.
    Expired { unkeyed: Duration },
    /// Unreadable or not keyable again for [`GIVE_UP_AFTER`]: stop the transmission.
    GiveUp,
}

/// Which transmission a reading belongs to: handed out by [`PttWatch::reading`] and given
/// back with the reading, so a reading that was under way when one transmission ended and
/// the next one keyed up is not applied to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// The watch over one radio's transmitter.
#[derive(Debug, Clone)]
pub struct PttWatch {
    every: Duration,
    give_up: Duration,
    /// Transmissions keyed so far; the last one is the one watched.
    transmissions: u64,
    /// A transmission is watched (keyed).
    watching: bool,
    next_read: Instant,
    /// A reading is under way.
    reading: bool,
    /// The last time the transmitter was known keyed.
    last_keyed: Instant,
    /// Found unkeyed; unkeyed since at most this instant.
    lost_since: Option<Instant>,
    /// Found unkeyed since the last reading that found it keyed (keying it again does not
    /// count: only a reading says it worked).
    lost_noticed: bool,
    /// Unreadable, found unkeyed, or keying it again failed, since (until a reading finds
    /// it keyed).
    trouble_since: Option<Instant>,
    /// Unkeyed time of this transmission found so far (gaps that ended).
    unkeyed: Duration,
}

impl PttWatch {
    /// A watch reading every `every`, giving up after `give_up`.
    pub fn new(every: Duration, give_up: Duration) -> Self {
        let now = Instant::now();
        PttWatch {
            every,
            give_up,
            transmissions: 0,
            watching: false,
            next_read: now,
            reading: false,
            last_keyed: now,
            lost_since: None,
            lost_noticed: false,
            trouble_since: None,
            unkeyed: Duration::ZERO,
        }
    }

    /// The transmitter was keyed at `now` (a new transmission).
    pub fn keyed(&mut self, now: Instant) {
        self.transmissions += 1;
        self.watching = true;
        self.next_read = now + self.every;
        self.last_keyed = now;
        self.lost_since = None;
        self.lost_noticed = false;
        self.trouble_since = None;
        self.unkeyed = Duration::ZERO;
    }

    /// The transmission ended: nothing to watch until the next key-up.
    pub fn unkeyed(&mut self) {
        self.watching = false;
        self.lost_since = None;
        self.lost_noticed = false;
        self.trouble_since = None;
    }

    /// When the next reading is due (`None`: not keyed, or a reading is under way).
    pub fn next_read(&self) -> Option<Instant> {
        (self.watching && !self.reading).then_some(self.next_read)
    }

    /// A reading starts, for the transmission this ticket names.
    pub fn reading(&mut self) -> Ticket {
        self.reading = true;
        Ticket(self.transmissions)
    }

    /// The unkeyed time of this transmission found so far, counting a gap still open at
    /// `now`.
    pub fn unkeyed_so_far(&self, now: Instant) -> Duration {
        self.unkeyed
            + self
                .lost_since
                .map_or(Duration::ZERO, |s| now.duration_since(s))
    }

    /// Whether the transmitter has been found unkeyed and not keyed again yet.
    pub fn is_lost(&self) -> bool {
        self.lost_since.is_some()
    }

    /// A reading taken at `now` for `ticket`: `Ok(keyed)` or `Err` (unreadable).
    /// `tot_ends`: when the state machine's time-out timer ends the transmission (`None`:
    /// the machine has nothing keyed); from then on it is never keyed again. `None`: no
    /// transmission is watched any more, or the reading belongs to an earlier one.
    pub fn on_read<E>(
        &mut self,
        now: Instant,
        tot_ends: Option<Instant>,
        ticket: Ticket,
        reading: Result<bool, E>,
    ) -> Option<Verdict> {
        self.reading = false;
        if !self.watching || ticket != Ticket(self.transmissions) {
            return None;
        }
        self.next_read = now + self.every;
        Some(match reading {
            Ok(true) => {
                self.last_keyed = now;
                self.trouble_since = None;
                self.lost_noticed = false;
                match self.lost_since.take() {
                    Some(since) => {
                        let gap = now.duration_since(since);
                        self.unkeyed += gap;
                        Verdict::BackByItself { unkeyed: gap }
                    }
                    None => Verdict::Keyed,
                }
            }
            Ok(false) => {
                let first = !std::mem::replace(&mut self.lost_noticed, true);
                let since = *self.lost_since.get_or_insert(self.last_keyed);
                let unkeyed = now.duration_since(since);
                self.trouble_since.get_or_insert(now);
                if tot_ends.is_none_or(|end| now >= end) {
                    Verdict::Expired { unkeyed }
                } else if self.troubled_too_long(now) {
                    Verdict::GiveUp
                } else {
                    Verdict::Rekey { first, unkeyed }
                }
            }
            Err(_) => {
                let first = self.trouble_since.is_none();
                self.trouble_since.get_or_insert(now);
                if self.troubled_too_long(now) {
                    Verdict::GiveUp
                } else {
                    Verdict::Unreadable { first }
                }
            }
        })
    }

    /// Keying it again at `now` worked: returns how long it was unkeyed (at most). The
    /// trouble lasts until a reading finds it keyed.
    pub fn rekeyed(&mut self, now: Instant) -> Duration {
        let gap = self
            .lost_since
            .take()
            .map_or(Duration::ZERO, |s| now.duration_since(s));
        self.unkeyed += gap;
        self.last_keyed = now;
        gap
    }

    /// Keying it again at `now` failed: returns whether to give up.
    pub fn rekey_failed(&mut self, now: Instant) -> bool {
        self.trouble_since.get_or_insert(now);
        self.troubled_too_long(now)
    }

    fn troubled_too_long(&self, now: Instant) -> bool {
        self.trouble_since
            .is_some_and(|t| now.duration_since(t) >= self.give_up)
    }
}

/// What [`confirm`] did, for the bridge's log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Keyed as it should be (or a late reading: nothing to do).
    Fine,
    /// Keyed again by something else after being found unkeyed.
    BackByItself { unkeyed: Duration },
    /// The state could not be read (`first` of a run; the next reading decides).
    Unreadable { first: bool, error: String },
    /// Found unkeyed (`first`: newly noticed) and keyed again: it was unkeyed for at most
    /// `unkeyed`.
    Restored { first: bool, unkeyed: Duration },
    /// Found unkeyed (`first`: newly noticed) and keying it again failed; the next reading
    /// tries again.
    StillLost {
        first: bool,
        unkeyed: Duration,
        error: String,
    },
    /// Found unkeyed past the time-out timer: left unkeyed.
    Expired { unkeyed: Duration },
    /// Unreadable or not keyable again for [`GIVE_UP_AFTER`]: stop the transmission as a
    /// PTT failure.
    GiveUp { error: String },
}

/// Applies a reading taken at `now` to `ptt`: keys it again when it was found unkeyed before
/// the state machine's time-out timer ends the transmission at `tot_ends`. ([`judge`], then
/// [`rekeyed`] with the line's answer when it is to be keyed again.)
pub fn confirm(
    watch: &mut PttWatch,
    ptt: &mut PttGuard,
    now: Instant,
    tot_ends: Option<Instant>,
    reading: (Ticket, Result<bool, RadioError>),
) -> Outcome {
    match judge(watch, now, tot_ends, reading) {
        Judged::Done(outcome) => outcome,
        Judged::Rekey { first, unkeyed } => rekeyed(watch, now, first, unkeyed, ptt.key()),
    }
}

/// What a reading calls for: nothing more, or keying the line again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Done(Outcome),
    /// Found unkeyed (`first`: newly noticed; for at most `unkeyed` so far): key it again,
    /// then tell [`rekeyed`] how that went.
    Rekey {
        first: bool,
        unkeyed: Duration,
    },
}

/// The first half of [`confirm`], which never touches the line.
pub fn judge(
    watch: &mut PttWatch,
    now: Instant,
    tot_ends: Option<Instant>,
    (ticket, reading): (Ticket, Result<bool, RadioError>),
) -> Judged {
    let error = reading
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    Judged::Done(match watch.on_read(now, tot_ends, ticket, reading) {
        None | Some(Verdict::Keyed) => Outcome::Fine,
        Some(Verdict::BackByItself { unkeyed }) => Outcome::BackByItself { unkeyed },
        Some(Verdict::Unreadable { first }) => Outcome::Unreadable { first, error },
        Some(Verdict::Expired { unkeyed }) => Outcome::Expired { unkeyed },
        Some(Verdict::GiveUp) => Outcome::GiveUp {
            error: if error.is_empty() {
                "the transmitter dropped and cannot be keyed again".into()
            } else {
                error
            },
        },
        Some(Verdict::Rekey { first, unkeyed }) => return Judged::Rekey { first, unkeyed },
    })
}

/// The second half of [`confirm`]: the line was keyed again at `now` after [`judge`] said
/// [`Judged::Rekey`], with this result.
pub fn rekeyed(
    watch: &mut PttWatch,
    now: Instant,
    first: bool,
    unkeyed: Duration,
    keyed: Result<(), RadioError>,
) -> Outcome {
    match keyed {
        Ok(()) => Outcome::Restored {
            first,
            unkeyed: watch.rekeyed(now),
        },
        Err(e) if watch.rekey_failed(now) => Outcome::GiveUp {
            error: e.to_string(),
        },
        Err(e) => Outcome::StillLost {
            first,
            unkeyed,
            error: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::sim::SimPtt;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// A reading that failed with `message`.
    fn failed(message: &str) -> RadioError {
        let e = std::io::Error::other(message.to_string());
        RadioError::ptt("rigctld", crate::radio::Fault::io(message, e))
    }

    fn watch() -> PttWatch {
        PttWatch::new(READ_EVERY, GIVE_UP_AFTER)
    }

    /// A reading of the transmission being watched, taken at `now`; the machine's time-out
    /// timer ends it at `tot_ends`.
    fn read(
        w: &mut PttWatch,
        ptt: &mut PttGuard,
        tot_ends: Instant,
        now: Instant,
        reading: Result<bool, RadioError>,
    ) -> Outcome {
        let ticket = w.reading();
        confirm(w, ptt, now, Some(tot_ends), (ticket, reading))
    }

    fn on_read(
        w: &mut PttWatch,
        tot_ends: Instant,
        now: Instant,
        reading: Result<bool, ()>,
    ) -> Option<Verdict> {
        let ticket = w.reading();
        w.on_read(now, Some(tot_ends), ticket, reading)
    }

    /// A keyed line (as the bridge keys it) and a handle on it.
    fn keyed_line() -> (PttGuard, SimPtt) {
        let sim = SimPtt::new();
        let mut guard = PttGuard::new(Box::new(sim.clone())).unwrap();
        guard.key().unwrap();
        (guard, sim)
    }

    /// A transmission keyed at `t0` and watched: `(t0, end, watch, line, handle)`, where
    /// the machine's time-out timer ends it at `end`, 10 s later.
    fn keyed() -> (Instant, Instant, PttWatch, PttGuard, SimPtt) {
        let t0 = Instant::now();
        let mut w = watch();
        let (ptt, sim) = keyed_line();
        w.keyed(t0);
        (t0, t0 + 10 * S, w, ptt, sim)
    }

    #[test]
    fn readings_are_due_every_second_while_keyed_only() {
        let t0 = Instant::now();
        let end = t0 + 10 * S;
        let mut w = watch();
        assert_eq!(w.next_read(), None, "not keyed: nothing to read");
        w.keyed(t0);
        assert_eq!(w.next_read(), Some(t0 + S));
        w.reading();
        assert_eq!(w.next_read(), None, "one reading at a time");
        assert_eq!(
            on_read(&mut w, end, t0 + S + 5 * MS, Ok(true)),
            Some(Verdict::Keyed)
        );
        assert_eq!(w.next_read(), Some(t0 + 2 * S + 5 * MS));
        w.unkeyed();
        assert_eq!(w.next_read(), None);
        // A reading that comes back after the transmission ended is ignored.
        assert_eq!(on_read(&mut w, end, t0 + 3 * S, Ok(false)), None);
    }

    #[test]
    fn a_dropped_transmitter_is_keyed_again_and_the_gap_reported() {
        let (t0, end, mut w, mut ptt, sim) = keyed();
        assert_eq!(read(&mut w, &mut ptt, end, t0 + S, Ok(true)), Outcome::Fine);
        // rigctld restarts at 1.5 s: the reading at 2 s cannot connect, the one at 3 s finds
        // the new rigctld unkeyed.
        sim.set_failing(true);
        assert_eq!(
            read(&mut w, &mut ptt, end, t0 + 2 * S, Err(failed("refused"))),
            Outcome::Unreadable {
                first: true,
                error: failed("refused").to_string()
            }
        );
        sim.set_failing(false);
        assert!(!sim.is_keyed());
        assert_eq!(
            read(&mut w, &mut ptt, end, t0 + 3 * S, Ok(false)),
            Outcome::Restored {
                first: true,
                unkeyed: 2 * S
            },
            "unkeyed at most since the last reading that found it keyed"
        );
        assert!(sim.is_keyed(), "keyed again");
        assert_eq!(sim.key_count(), 2);
        assert!(!w.is_lost());
        assert_eq!(w.unkeyed_so_far(t0 + 5 * S), 2 * S);
        assert_eq!(
            read(&mut w, &mut ptt, end, t0 + 4 * S, Ok(true)),
            Outcome::Fine
        );
        // A new transmission starts with a clean slate.
        w.keyed(t0 + 20 * S);
        assert_eq!(w.unkeyed_so_far(t0 + 21 * S), Duration::ZERO);
    }

    #[test]
    fn past_the_time_out_timer_it_is_not_keyed_again() {
        let t0 = Instant::now();
        let end = t0 + 5 * S;
        let mut w = PttWatch::new(READ_EVERY, GIVE_UP_AFTER);
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0);
        assert_eq!(
            read(&mut w, &mut ptt, end, t0 + 4 * S, Ok(true)),
            Outcome::Fine
        );
        sim.set_failing(true);
        sim.set_failing(false);
        // The time-out timer counts from the original key-up, not from any re-key.
        assert_eq!(
            read(&mut w, &mut ptt, end, t0 + 5 * S, Ok(false)),
            Outcome::Expired { unkeyed: S }
        );
        assert!(!sim.is_keyed(), "never keyed past the TOT");
        assert_eq!(sim.key_count(), 1);

        // Re-keying within the TOT does not restart it.
        let mut w = PttWatch::new(READ_EVERY, GIVE_UP_AFTER);
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0);
        sim.set_failing(true);
        sim.set_failing(false);
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 2 * S, Ok(false)),
            Outcome::Restored { .. }
        ));
        sim.set_failing(true);
        sim.set_failing(false);
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 5 * S + MS, Ok(false)),
            Outcome::Expired { .. }
        ));
        assert!(!sim.is_keyed());
    }

    #[test]
    fn a_state_that_stays_unreadable_gives_up_after_three_seconds() {
        let (t0, end, mut w, mut ptt, _sim) = keyed();
        let err = || Err(failed("rigctld unreachable"));
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + S, err()),
            Outcome::Unreadable { first: true, .. }
        ));
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 2 * S, err()),
            Outcome::Unreadable { first: false, .. }
        ));
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 3 * S, err()),
            Outcome::Unreadable { first: false, .. }
        ));
        assert_eq!(
            read(&mut w, &mut ptt, end, t0 + 4 * S, err()),
            Outcome::GiveUp {
                error: failed("rigctld unreachable").to_string()
            }
        );
        // A reading that works in between starts the count again.
        let mut w = watch();
        w.keyed(t0);
        let _ = read(&mut w, &mut ptt, end, t0 + S, err());
        let _ = read(&mut w, &mut ptt, end, t0 + 3 * S, Ok(true));
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 4 * S + 500 * MS, err()),
            Outcome::Unreadable { first: true, .. }
        ));
    }

    #[test]
    fn a_transmitter_that_cannot_be_keyed_again_gives_up() {
        let (t0, end, mut w, mut ptt, sim) = keyed();
        // The line reads unkeyed and refuses to key (an interface that answers `t` but not
        // `T 1`).
        sim.set_failing(true);
        let first = read(&mut w, &mut ptt, end, t0 + S, Ok(false));
        assert!(
            matches!(first, Outcome::StillLost { first: true, unkeyed, .. } if unkeyed == S),
            "{first:?}"
        );
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 2 * S, Ok(false)),
            Outcome::StillLost { first: false, .. }
        ));
        assert!(matches!(
            read(&mut w, &mut ptt, end, t0 + 4 * S, Ok(false)),
            Outcome::GiveUp { .. }
        ));
        assert_eq!(
            w.unkeyed_so_far(t0 + 4 * S),
            4 * S,
            "a gap still open counts"
        );
    }

    #[test]
    fn a_reading_after_the_machines_time_out_never_keys_again() {
        use crate::gateway::machine::{Action, Input, Machine, Timers};
        let t0 = Instant::now();
        let timers = Timers {
            tot: 5 * S,
            ..Timers::default()
        };
        let mut m = Machine::new(timers);
        m.handle(t0, Input::ChannelReady(true));
        assert_eq!(
            m.handle(t0, Input::IncomingStart { stream_id: 1 }),
            [Action::Key]
        );
        let end = m.tot_ends().expect("keyed");
        // The line is keyed, and the watch told, once the interface answered: 300 ms later.
        let mut w = PttWatch::new(READ_EVERY, GIVE_UP_AFTER);
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0 + 300 * MS);
        // rigctld restarted; a reading finds the rig unkeyed just past the machine's
        // time-out, before its timer ran.
        sim.set_failing(true);
        sim.set_failing(false);
        let now = t0 + 5 * S + 100 * MS;
        assert!(
            m.next_deadline().is_some_and(|d| d <= now),
            "the TOT is due"
        );
        let outcome = read(&mut w, &mut ptt, end, now, Ok(false));
        assert!(matches!(outcome, Outcome::Expired { .. }), "{outcome:?}");
        assert!(!sim.is_keyed(), "never keyed past the machine's TOT");
        assert_eq!(sim.key_count(), 1);
    }

    #[test]
    fn a_rig_that_accepts_the_key_but_keeps_reading_unkeyed_is_given_up() {
        let (t0, end, mut w, mut ptt, sim) = keyed();
        let mut worth_a_line = 0;
        let mut gave_up = None;
        for n in 1..=9u32 {
            // Every reading finds it unkeyed, although `T 1` is accepted each time.
            sim.set_failing(true);
            sim.set_failing(false);
            match read(&mut w, &mut ptt, end, t0 + n * S, Ok(false)) {
                Outcome::Restored { first, .. } | Outcome::StillLost { first, .. } => {
                    worth_a_line += usize::from(first);
                }
                Outcome::GiveUp { .. } => {
                    gave_up = Some(n * S);
                    break;
                }
                other => panic!("reading {n}: {other:?}"),
            }
        }
        assert_eq!(
            gave_up,
            Some(S + GIVE_UP_AFTER),
            "given up after {GIVE_UP_AFTER:?}"
        );
        assert_eq!(worth_a_line, 1, "one ptt_lost for the whole run");
    }

    #[test]
    fn a_reading_of_the_previous_transmission_is_dropped() {
        let (t0, end, mut w, mut ptt, sim) = keyed();
        // A reading starts at 1 s; the transmission ends, and the next one keys up, while
        // it is under way; it comes back "unkeyed" (taken between the two).
        let stale = w.reading();
        w.unkeyed();
        w.keyed(t0 + S + 150 * MS);
        let outcome = confirm(
            &mut w,
            &mut ptt,
            t0 + S + 200 * MS,
            Some(end),
            (stale, Ok(false)),
        );
        assert_eq!(outcome, Outcome::Fine);
        assert_eq!(sim.key_count(), 1, "no needless re-key");
        assert!(!w.is_lost());
        assert_eq!(w.unkeyed_so_far(t0 + 3 * S), Duration::ZERO);
        assert_eq!(w.next_read(), Some(t0 + 2 * S + 150 * MS), "readings go on");
    }

    #[test]
    fn keyed_again_by_something_else_counts_the_gap() {
        let t0 = Instant::now();
        let end = t0 + 10 * S;
        let mut w = watch();
        w.keyed(t0);
        assert!(matches!(
            on_read(&mut w, end, t0 + S, Ok(false)),
            Some(Verdict::Rekey { first: true, .. })
        ));
        assert_eq!(
            on_read(&mut w, end, t0 + 2 * S, Ok(true)),
            Some(Verdict::BackByItself { unkeyed: 2 * S })
        );
        assert_eq!(w.unkeyed_so_far(t0 + 3 * S), 2 * S);
    }
}
