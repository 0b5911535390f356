//! Confirms during a transmission that the transmitter is still keyed, for PTT interfaces
//! that can read their state back ([`crate::radio::Ptt::readback`]: rigctld's `t`).
//!
//! A rigctld restarted during a transmission comes back with the rig unkeyed, and nothing
//! else would notice: the message would go on playing into a dead transmitter. While keyed,
//! the bridge reads the state every [`READ_EVERY`] (on a blocking thread, so the audio never
//! waits on it) and hands the reading to [`PttWatch::on_read`]:
//!
//! - keyed: all is well;
//! - unkeyed: the transmitter dropped. It is keyed again while the transmission is within
//!   its time-out timer, which keeps counting from the original key-up (past it, the state
//!   machine ends the transmission anyway); how long it was unkeyed is reported, at most
//!   from the last reading that found it keyed;
//! - unreadable: nothing is known yet and the next reading decides; but when the state
//!   stays unreadable, or the transmitter cannot be keyed again, for [`GIVE_UP_AFTER`], the
//!   transmission is given up as a PTT failure.
//!
//! Pure logic with made-up instants in tests; [`confirm`] applies a reading to a PTT line.

use super::PttGuard;
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

/// The watch over one radio's transmitter.
#[derive(Debug, Clone)]
pub struct PttWatch {
    every: Duration,
    give_up: Duration,
    tot: Duration,
    /// The key-up of the transmission being watched (`None`: not keyed).
    keyed_at: Option<Instant>,
    next_read: Instant,
    /// A reading is under way.
    reading: bool,
    /// The last time the transmitter was known keyed.
    last_keyed: Instant,
    /// Found unkeyed; unkeyed since at most this instant.
    lost_since: Option<Instant>,
    /// Unreadable, or keying it again failed, since.
    trouble_since: Option<Instant>,
    /// Unkeyed time of this transmission found so far (gaps that ended).
    unkeyed: Duration,
}

impl PttWatch {
    /// A watch reading every `every`, giving up after `give_up`, for transmissions limited
    /// to `tot`.
    pub fn new(every: Duration, give_up: Duration, tot: Duration) -> Self {
        let now = Instant::now();
        PttWatch {
            every,
            give_up,
            tot,
            keyed_at: None,
            next_read: now,
            reading: false,
            last_keyed: now,
            lost_since: None,
            trouble_since: None,
            unkeyed: Duration::ZERO,
        }
    }

    /// The transmitter was keyed at `now` (a new transmission).
    pub fn keyed(&mut self, now: Instant) {
        self.keyed_at = Some(now);
        self.next_read = now + self.every;
        self.last_keyed = now;
        self.lost_since = None;
        self.trouble_since = None;
        self.unkeyed = Duration::ZERO;
    }

    /// The transmission ended: nothing to watch until the next key-up.
    pub fn unkeyed(&mut self) {
        self.keyed_at = None;
        self.lost_since = None;
        self.trouble_since = None;
    }

    /// When the next reading is due (`None`: not keyed, or a reading is under way).
    pub fn next_read(&self) -> Option<Instant> {
        match self.keyed_at {
            Some(_) if !self.reading => Some(self.next_read),
            _ => None,
        }
    }

    /// A reading starts.
    pub fn reading(&mut self) {
        self.reading = true;
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

    /// A reading taken at `now`: `Ok(keyed)` or `Err` (unreadable). `None`: no
    /// transmission is watched any more (a late reading).
    pub fn on_read<E>(&mut self, now: Instant, reading: Result<bool, E>) -> Option<Verdict> {
        self.reading = false;
        self.next_read = now + self.every;
        let keyed_at = self.keyed_at?;
        Some(match reading {
            Ok(true) => {
                self.last_keyed = now;
                self.trouble_since = None;
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
                let first = self.lost_since.is_none();
                let since = *self.lost_since.get_or_insert(self.last_keyed);
                let unkeyed = now.duration_since(since);
                if now >= keyed_at + self.tot {
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

    /// Keying it again at `now` worked: returns how long it was unkeyed (at most).
    pub fn rekeyed(&mut self, now: Instant) -> Duration {
        let gap = self
            .lost_since
            .take()
            .map_or(Duration::ZERO, |s| now.duration_since(s));
        self.unkeyed += gap;
        self.last_keyed = now;
        self.trouble_since = None;
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

/// Applies a reading taken at `now` to `ptt`: keys it again when it was found unkeyed within
/// the time-out timer.
pub fn confirm(
    watch: &mut PttWatch,
    ptt: &mut PttGuard,
    now: Instant,
    reading: Result<bool, String>,
) -> Outcome {
    let error = reading.as_ref().err().cloned().unwrap_or_default();
    match watch.on_read(now, reading) {
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
        Some(Verdict::Rekey { first, unkeyed }) => match ptt.key() {
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
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::sim::SimPtt;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn watch() -> PttWatch {
        PttWatch::new(READ_EVERY, GIVE_UP_AFTER, Duration::from_secs(10))
    }

    /// A keyed line (as the bridge keys it) and a handle on it.
    fn keyed_line() -> (PttGuard, SimPtt) {
        let sim = SimPtt::new();
        let mut guard = PttGuard::new(Box::new(sim.clone())).unwrap();
        guard.key().unwrap();
        (guard, sim)
    }

    #[test]
    fn readings_are_due_every_second_while_keyed_only() {
        let t0 = Instant::now();
        let mut w = watch();
        assert_eq!(w.next_read(), None, "not keyed: nothing to read");
        w.keyed(t0);
        assert_eq!(w.next_read(), Some(t0 + S));
        w.reading();
        assert_eq!(w.next_read(), None, "one reading at a time");
        assert_eq!(
            w.on_read::<()>(t0 + S + 5 * MS, Ok(true)),
            Some(Verdict::Keyed)
        );
        assert_eq!(w.next_read(), Some(t0 + 2 * S + 5 * MS));
        w.unkeyed();
        assert_eq!(w.next_read(), None);
        // A reading that comes back after the transmission ended is ignored.
        assert_eq!(w.on_read::<()>(t0 + 3 * S, Ok(false)), None);
    }

    #[test]
    fn a_dropped_transmitter_is_keyed_again_and_the_gap_reported() {
        let t0 = Instant::now();
        let mut w = watch();
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0);
        assert_eq!(confirm(&mut w, &mut ptt, t0 + S, Ok(true)), Outcome::Fine);
        // rigctld restarts at 1.5 s: the reading at 2 s cannot connect, the one at 3 s finds
        // the new rigctld unkeyed.
        sim.set_failing(true);
        assert_eq!(
            confirm(&mut w, &mut ptt, t0 + 2 * S, Err("refused".into())),
            Outcome::Unreadable {
                first: true,
                error: "refused".into()
            }
        );
        sim.set_failing(false);
        assert!(!sim.is_keyed());
        assert_eq!(
            confirm(&mut w, &mut ptt, t0 + 3 * S, Ok(false)),
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
            confirm(&mut w, &mut ptt, t0 + 4 * S, Ok(true)),
            Outcome::Fine
        );
        // A new transmission starts with a clean slate.
        w.keyed(t0 + 20 * S);
        assert_eq!(w.unkeyed_so_far(t0 + 21 * S), Duration::ZERO);
    }

    #[test]
    fn past_the_time_out_timer_it_is_not_keyed_again() {
        let t0 = Instant::now();
        let mut w = PttWatch::new(READ_EVERY, GIVE_UP_AFTER, 5 * S);
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0);
        assert_eq!(
            confirm(&mut w, &mut ptt, t0 + 4 * S, Ok(true)),
            Outcome::Fine
        );
        sim.set_failing(true);
        sim.set_failing(false);
        // The time-out timer counts from the original key-up, not from any re-key.
        assert_eq!(
            confirm(&mut w, &mut ptt, t0 + 5 * S, Ok(false)),
            Outcome::Expired { unkeyed: S }
        );
        assert!(!sim.is_keyed(), "never keyed past the TOT");
        assert_eq!(sim.key_count(), 1);

        // Re-keying within the TOT does not restart it.
        let mut w = PttWatch::new(READ_EVERY, GIVE_UP_AFTER, 5 * S);
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0);
        sim.set_failing(true);
        sim.set_failing(false);
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 2 * S, Ok(false)),
            Outcome::Restored { .. }
        ));
        sim.set_failing(true);
        sim.set_failing(false);
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 5 * S + MS, Ok(false)),
            Outcome::Expired { .. }
        ));
        assert!(!sim.is_keyed());
    }

    #[test]
    fn a_state_that_stays_unreadable_gives_up_after_three_seconds() {
        let t0 = Instant::now();
        let mut w = watch();
        let (mut ptt, _sim) = keyed_line();
        w.keyed(t0);
        let err = || Err("rigctld unreachable".to_string());
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + S, err()),
            Outcome::Unreadable { first: true, .. }
        ));
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 2 * S, err()),
            Outcome::Unreadable { first: false, .. }
        ));
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 3 * S, err()),
            Outcome::Unreadable { first: false, .. }
        ));
        assert_eq!(
            confirm(&mut w, &mut ptt, t0 + 4 * S, err()),
            Outcome::GiveUp {
                error: "rigctld unreachable".into()
            }
        );
        // A reading that works in between starts the count again.
        let mut w = watch();
        w.keyed(t0);
        let _ = confirm(&mut w, &mut ptt, t0 + S, err());
        let _ = confirm(&mut w, &mut ptt, t0 + 3 * S, Ok(true));
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 4 * S + 500 * MS, err()),
            Outcome::Unreadable { first: true, .. }
        ));
    }

    #[test]
    fn a_transmitter_that_cannot_be_keyed_again_gives_up() {
        let t0 = Instant::now();
        let mut w = watch();
        let (mut ptt, sim) = keyed_line();
        w.keyed(t0);
        // The line reads unkeyed and refuses to key (an interface that answers `t` but not
        // `T 1`).
        sim.set_failing(true);
        let first = confirm(&mut w, &mut ptt, t0 + S, Ok(false));
        assert!(
            matches!(first, Outcome::StillLost { first: true, unkeyed, .. } if unkeyed == S),
            "{first:?}"
        );
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 2 * S, Ok(false)),
            Outcome::StillLost { first: false, .. }
        ));
        assert!(matches!(
            confirm(&mut w, &mut ptt, t0 + 4 * S, Ok(false)),
            Outcome::GiveUp { .. }
        ));
        assert_eq!(
            w.unkeyed_so_far(t0 + 4 * S),
            4 * S,
            "a gap still open counts"
        );
    }

    #[test]
    fn keyed_again_by_something_else_counts_the_gap() {
        let t0 = Instant::now();
        let mut w = watch();
        w.keyed(t0);
        assert!(matches!(
            w.on_read::<()>(t0 + S, Ok(false)),
            Some(Verdict::Rekey { first: true, .. })
        ));
        assert_eq!(
            w.on_read::<()>(t0 + 2 * S, Ok(true)),
            Some(Verdict::BackByItself { unkeyed: 2 * S })
        );
        assert_eq!(w.unkeyed_so_far(t0 + 3 * S), 2 * S);
    }
}
