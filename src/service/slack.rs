//! Timers with slack: a wait that ends at the first moment after its `early` instant when the
//! runtime's thread is awake anyway, and at its `late` instant at the latest.
//!
//! Some periodic work is not urgent to the millisecond: the status API's `LEVEL` messages,
//! five a second per watched radio. A timer of its own wakes the runtime's thread for each,
//! and a wake-up costs tens of microseconds on a small machine, more than the work. While
//! audio flows, the thread wakes for a packet every few frames anyway, so a [`SlackTimer`]
//! rides on those wake-ups: the runtime calls [`on_park`] just before its thread sleeps
//! (installed by [`super::runtime_builder`]), and every wait of that thread whose `early`
//! instant has passed is woken there and runs before the thread sleeps. With nothing else to
//! do, the thread sleeps until the first `late` instant and the wait ends then.
//!
//! Waits are kept per thread (the runtime's thread runs the task that waits), so one
//! runtime's wake-ups never wake another's tasks. On a runtime without the hook (tests'
//! runtimes, and multi-thread runtimes, where a task woken as a worker parks wakes another
//! worker) a wait simply ends at `late`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use tokio::time::{Instant, Sleep, sleep_until};

thread_local! {
    static WAITS: RefCell<Waits> = const { RefCell::new(Waits::new()) };
}

/// The waits registered on this thread.
struct Waits {
    next_id: u64,
    entries: Vec<Entry>,
    /// The earliest `early` instant among `entries`: [`on_park`] reads the clock only when
    /// there is one.
    earliest: Option<Instant>,
}

struct Entry {
    id: u64,
    early: Instant,
    waker: Waker,
}

impl Waits {
    const fn new() -> Self {
        Waits {
            next_id: 0,
            entries: Vec::new(),
            earliest: None,
        }
    }

    fn refresh_earliest(&mut self) {
        self.earliest = self.entries.iter().map(|e| e.early).min();
    }

    /// Adds or updates the wait `id` (a new one when `None`); returns its id.
    fn register(&mut self, id: Option<u64>, early: Instant, waker: &Waker) -> u64 {
        if let Some(id) = id
            && let Some(e) = self.entries.iter_mut().find(|e| e.id == id)
        {
            e.early = early;
            if !e.waker.will_wake(waker) {
                e.waker = waker.clone();
            }
            self.refresh_earliest();
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            early,
            waker: waker.clone(),
        });
        self.refresh_earliest();
        id
    }

    fn remove(&mut self, id: u64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        if self.entries.len() != before {
            self.refresh_earliest();
        }
    }

    /// Takes out the wakers of the waits due at `now`.
    fn take_due(&mut self, now: Instant) -> Vec<Waker> {
        let mut due = Vec::new();
        self.entries.retain(|e| {
            let keep = e.early > now;
            if !keep {
                due.push(e.waker.clone());
            }
            keep
        });
        self.refresh_earliest();
        due
    }
}

/// Wakes the waits of this thread whose `early` instant has passed. The runtime calls it
/// before its thread parks (`on_thread_park`); a woken task then runs before the thread
/// sleeps. Costs one thread-local read when nothing waits, and one clock read otherwise.
pub fn on_park() {
    let due = WAITS.with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            return Vec::new();
        };
        match w.earliest {
            Some(earliest) => {
                let now = Instant::now();
                if now >= earliest {
                    w.take_due(now)
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        }
    });
    for waker in due {
        waker.wake();
    }
}

/// A timer that fires between `early` and `late`: at the first wake-up of its thread after
/// `early`, or at `late` by its own timer. Reset it for each round.
///
/// The timer for `late` is made when the wait starts and dropped when it ends, never moved
/// later: tokio keeps a timer moved later in its old place and wakes the thread there for
/// nothing, the very wake-up this saves.
#[derive(Debug)]
pub struct SlackTimer {
    early: Instant,
    late: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Where the wait is registered: its id and the thread it is registered on.
    registered: Option<(u64, ThreadId)>,
}

impl SlackTimer {
    /// A timer that fires between `early` and `late` (`late` is taken as `early` when it is
    /// before it).
    pub fn new(early: Instant, late: Instant) -> Self {
        SlackTimer {
            early,
            late: late.max(early),
            sleep: None,
            registered: None,
        }
    }

    /// Sets the timer to fire between `early` and `late` again.
    pub fn reset(&mut self, early: Instant, late: Instant) {
        self.early = early;
        self.late = late.max(early);
        self.sleep = None;
    }

    /// The earliest instant the timer fires at.
    pub fn early(&self) -> Instant {
        self.early
    }

    fn finish(&mut self) {
        self.sleep = None;
        if let Some((id, thread)) = self.registered.take()
            && thread == std::thread::current().id()
        {
            // A wait left on another thread (a task moved between worker threads) is taken
            // out when due there; waking it then does nothing.
            WAITS.with(|w| {
                if let Ok(mut w) = w.try_borrow_mut() {
                    w.remove(id);
                }
            });
        }
    }
}

impl Future for SlackTimer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (early, late) = (self.early, self.late);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(late)));
        if Instant::now() >= early || sleep.as_mut().poll(cx).is_ready() {
            self.finish();
            return Poll::Ready(());
        }
        let thread = std::thread::current().id();
        let id = match self.registered {
            Some((id, t)) if t == thread => Some(id),
            _ => None,
        };
        let registered = WAITS.with(|w| {
            w.try_borrow_mut()
                .ok()
                .map(|mut w| w.register(id, early, cx.waker()))
        });
        // Unregistered (never happens: nothing holds the list across a poll) the wait
        // still ends at `late`.
        self.registered = registered.map(|id| (id, thread));
        Poll::Pending
    }
}

impl Drop for SlackTimer {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn registered() -> usize {
        WAITS.with(|w| w.borrow().entries.len())
    }

    /// A current-thread runtime with the hook, as the daemon's, on a paused clock.
    fn runtime_with_hook() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .on_thread_park(on_park)
            .build()
            .unwrap()
    }

    #[test]
    fn alone_it_fires_at_late() {
        let rt = runtime_with_hook();
        rt.block_on(async {
            let start = Instant::now();
            let timer = SlackTimer::new(
                start + Duration::from_millis(200),
                start + Duration::from_millis(300),
            );
            timer.await;
            // Nothing else woke the thread but tokio's own timer wheel (which wakes at the
            // start of a coarser slot to sort its timers): between `early` and `late`.
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(200) && waited <= Duration::from_millis(300),
                "{waited:?}"
            );
            assert_eq!(registered(), 0);
        });
    }

    #[test]
    fn it_rides_on_a_wake_up_after_early() {
        let rt = runtime_with_hook();
        rt.block_on(async {
            let start = Instant::now();
            // Something else wakes the thread every 60 ms (a packet, say).
            let wakes = Arc::new(AtomicUsize::new(0));
            let w = wakes.clone();
            let other = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(60));
                loop {
                    tick.tick().await;
                    w.fetch_add(1, Ordering::Relaxed);
                }
            });
            let timer = SlackTimer::new(
                start + Duration::from_millis(200),
                start + Duration::from_millis(300),
            );
            timer.await;
            // The first wake-up after 200 ms is the one at 240 ms.
            assert_eq!(start.elapsed(), Duration::from_millis(240));
            assert_eq!(registered(), 0);
            other.abort();
        });
    }

    /// Runs a task that wakes every 70 ms (packets) for 3 s, with or without a second one
    /// that waits on a slack timer between 200 and 300 ms in a loop (LEVELs); returns the
    /// instants the runtime's thread woke at (the paused clock moves only while it sleeps)
    /// and the time between the rounds of the second task.
    fn wake_ups_with_packets(levels: bool) -> (usize, Vec<Duration>) {
        let instants = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let seen = instants.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .on_thread_park(move || {
                seen.lock().unwrap().insert(Instant::now());
                on_park();
            })
            .build()
            .unwrap();
        let rounds = rt.block_on(async move {
            let end = Instant::now() + Duration::from_secs(3);
            let packets = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(70));
                while Instant::now() < end {
                    tick.tick().await;
                }
            });
            let mut rounds = Vec::new();
            if levels {
                let mut last = Instant::now();
                let mut timer = SlackTimer::new(last, last);
                loop {
                    (&mut timer).await;
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    rounds.push(now - last);
                    last = now;
                    timer.reset(
                        now + Duration::from_millis(200),
                        now + Duration::from_millis(300),
                    );
                }
            }
            packets.await.unwrap();
            rounds
        });
        let woke = instants.lock().unwrap().len();
        (woke, rounds)
    }

    #[test]
    fn riding_timers_add_no_wake_ups_of_their_own() {
        let (alone, _) = wake_ups_with_packets(false);
        let (with_levels, rounds) = wake_ups_with_packets(true);
        // Each round 200 to 300 ms after the one before, at a packet's wake-up.
        assert!(rounds.len() >= 10, "{rounds:?}");
        assert!(
            rounds[1..]
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(300)),
            "{rounds:?}"
        );
        // Most rounds ride on a packet; one whose window holds no packet takes a wake-up of
        // its own (two of fifteen here, the same every time under the paused clock). A
        // timer moved later instead of made anew wakes the thread at its old deadline too:
        // four.
        assert!(
            with_levels <= alone + 2,
            "woke at {with_levels} instants with the slack timer, {alone} without"
        );
    }

    #[test]
    fn without_the_hook_it_fires_at_late_even_with_wake_ups() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let start = Instant::now();
            let other = tokio::spawn(async {
                let mut tick = tokio::time::interval(Duration::from_millis(60));
                loop {
                    tick.tick().await;
                }
            });
            SlackTimer::new(
                start + Duration::from_millis(200),
                start + Duration::from_millis(300),
            )
            .await;
            assert_eq!(start.elapsed(), Duration::from_millis(300));
            other.abort();
        });
    }

    #[test]
    fn a_reset_timer_fires_again_and_a_past_early_fires_at_once() {
        let rt = runtime_with_hook();
        rt.block_on(async {
            let start = Instant::now();
            let mut timer = SlackTimer::new(start, start + Duration::from_millis(50));
            (&mut timer).await;
            assert_eq!(start.elapsed(), Duration::ZERO);
            timer.reset(
                start + Duration::from_millis(100),
                start + Duration::from_millis(150),
            );
            assert_eq!(timer.early(), start + Duration::from_millis(100));
            (&mut timer).await;
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(100) && waited <= Duration::from_millis(150),
                "{waited:?}"
            );
        });
    }

    #[test]
    fn a_dropped_timer_leaves_nothing_behind() {
        let rt = runtime_with_hook();
        rt.block_on(async {
            let start = Instant::now();
            let mut timer = SlackTimer::new(
                start + Duration::from_secs(10),
                start + Duration::from_secs(20),
            );
            let polled = futures_util::poll!(&mut timer);
            assert!(polled.is_pending());
            assert_eq!(registered(), 1);
            drop(timer);
            assert_eq!(registered(), 0);
            // The hook with nothing registered reads no clock and wakes nothing.
            on_park();
        });
    }

    #[test]
    fn late_before_early_is_taken_as_early() {
        let rt = runtime_with_hook();
        rt.block_on(async {
            let start = Instant::now();
            SlackTimer::new(
                start + Duration::from_millis(100),
                start + Duration::from_millis(10),
            )
            .await;
            assert_eq!(start.elapsed(), Duration::from_millis(100));
        });
    }
}
