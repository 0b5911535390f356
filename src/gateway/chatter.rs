//! How many carrier changes get a log line of their own: pure logic, no clock of its own.
//!
//! An operator opening the squelch wants one line per carrier change in the log; a
//! chattering squelch (a weak signal, a mistuned threshold) must not flood it. Up to
//! `max` changes within `window` are logged one by one; beyond that, one summary line says
//! how many changes there were, and the changes that follow are not logged until `window`
//! has passed (then, if the chatter goes on, one more summary).

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// What to log for one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Say {
    /// One line for this change.
    Change,
    /// One summary line: `changes` in the last `window`; the next ones are not logged.
    Flapping { changes: usize, window: Duration },
    /// Nothing (a summary was written recently).
    Quiet,
}

/// Counts changes within a sliding window.
#[derive(Debug)]
pub(crate) struct ChangeLog {
    max: usize,
    window: Duration,
    times: VecDeque<Instant>,
    quiet_until: Option<Instant>,
}

impl ChangeLog {
    /// Up to `max` lines for changes within `window`.
    pub(crate) fn new(max: usize, window: Duration) -> Self {
        ChangeLog {
            max,
            window,
            times: VecDeque::new(),
            quiet_until: None,
        }
    }

    /// A change happened at `now`.
    pub(crate) fn record(&mut self, now: Instant) -> Say {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.times.pop_front();
        }
        // Never more entries than one summary needs to count.
        if self.times.len() <= self.max * 100 {
            self.times.push_back(now);
        }
        if self.quiet_until.is_some_and(|q| now < q) {
            return Say::Quiet;
        }
        self.quiet_until = None;
        if self.times.len() > self.max {
            self.quiet_until = Some(now + self.window);
            return Say::Flapping {
                changes: self.times.len(),
                window: self.window,
            };
        }
        Say::Change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn changes_are_logged_one_by_one_until_they_chatter() {
        let t0 = Instant::now();
        let mut log = ChangeLog::new(4, Duration::from_secs(10));
        // An operator opening and closing the squelch a few times: every change.
        for i in 0..4 {
            assert_eq!(log.record(t0 + MS * (i * 2000)), Say::Change, "{i}");
        }
        // Much later: the window has moved on.
        assert_eq!(log.record(t0 + MS * 60_000), Say::Change);
    }

    #[test]
    fn a_chattering_squelch_gets_one_summary_per_window() {
        let t0 = Instant::now();
        let mut log = ChangeLog::new(4, Duration::from_secs(10));
        let mut said = Vec::new();
        // A change every 100 ms for 30 s.
        for i in 0..300 {
            said.push(log.record(t0 + MS * (i * 100)));
        }
        let changes = said.iter().filter(|s| **s == Say::Change).count();
        let summaries: Vec<&Say> = said
            .iter()
            .filter(|s| matches!(s, Say::Flapping { .. }))
            .collect();
        assert_eq!(changes, 4);
        assert_eq!(summaries.len(), 3, "{summaries:?}");
        assert_eq!(
            summaries[0],
            &Say::Flapping {
                changes: 5,
                window: Duration::from_secs(10)
            }
        );
        // Later summaries count the whole window of chatter.
        assert_eq!(
            summaries[1],
            &Say::Flapping {
                changes: 100,
                window: Duration::from_secs(10)
            }
        );
        // Once it is quiet for a window, single changes are logged again.
        assert_eq!(log.record(t0 + MS * 60_000), Say::Change);
    }
}
