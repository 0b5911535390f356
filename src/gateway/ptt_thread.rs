//! Each radio's PTT interface on an OS thread of its own, reached by a channel.
//!
//! A PTT call can take its time: rigctld is a TCP round trip with a 300 ms limit and a
//! retry, and a serial line waits for a mutex its carrier-polling thread holds across
//! ioctls. The runtime's one thread carries every radio's audio and the Zello session, so
//! no PTT call runs there: the [`PttThread`] owns the interface, takes requests (key,
//! unkey, check, read back) in order, and answers each on [`PttThread::answer`]. The caller
//! never waits for an answer unless it chooses to; the bridge goes on with its timers (the
//! time-out timer among them) while a call is under way.
//!
//! The thread holds the interface in a [`PttGuard`]: it unkeys the line first thing, and
//! again when its channel closes, which happens however its owner goes away (a return, a
//! dropped task, a panic unwinding through the bridge). An interface that panics unkeys
//! too (the guard is dropped on the thread), and the panic is handed to the caller with the
//! answer, as if the call had been made there.

use super::PttGuard;
use crate::radio::{Fault, Ptt, RadioError};
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{Span, error};

/// The longest the caller waits for one answer: an interface that hangs past this is
/// reported as failed (its late answer is then ignored).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What to do with the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PttOp {
    /// Key the transmitter.
    Key,
    /// Unkey it (always sent to the line).
    Unkey,
    /// Check that the interface answers ([`Ptt::check`]); skipped while keyed.
    Check,
    /// Read back whether the transmitter is keyed ([`Ptt::readback`]).
    Read,
}

/// The answer to one request.
#[derive(Debug)]
pub struct PttAnswer {
    /// The request's number, from [`PttThread::request`].
    pub id: u64,
    pub op: PttOp,
    /// For [`PttOp::Read`], whether the transmitter is keyed; otherwise whether the line is
    /// keyed after the call.
    pub result: Result<bool, RadioError>,
}

/// How a request ended on the thread.
enum Done {
    Answer(Result<bool, RadioError>),
    Panicked(Box<dyn Any + Send>),
}

/// Where answers go, in the order the thread gives them.
type Answers = mpsc::UnboundedSender<(u64, PttOp, Done)>;

struct Job {
    id: u64,
    op: PttOp,
    /// Set by whoever answers first: the thread, or the wait that gave up on it.
    answered: Arc<AtomicBool>,
    /// Dropped once the call has returned.
    _busy: std_mpsc::Sender<()>,
}

/// Sends an answer unless one was sent already.
fn answer_once(answers: &Answers, answered: &AtomicBool, id: u64, op: PttOp, done: Done) {
    if !answered.swap(true, Ordering::AcqRel) {
        let _ = answers.send((id, op, done));
    }
}

/// A radio's PTT interface on its own thread (see the module's documentation).
pub struct PttThread {
    /// `None` once released.
    jobs: Option<std_mpsc::Sender<Job>>,
    describe: String,
    can_read_back: bool,
    next_id: u64,
    answers_tx: Answers,
    answers: mpsc::UnboundedReceiver<(u64, PttOp, Done)>,
    /// Closed by the thread once it has unkeyed and let go of the interface.
    released: Option<std_mpsc::Receiver<()>>,
}

impl PttThread {
    /// Starts the thread for `ptt`, entering `span` (the radio's) for its log lines. The
    /// receiver tells whether the first unkey worked; if it did not, the thread has ended.
    pub fn spawn(
        ptt: Box<dyn Ptt>,
        name: &str,
        span: Span,
    ) -> std::io::Result<(PttThread, oneshot::Receiver<Result<(), RadioError>>)> {
        let describe = ptt.describe();
        let can_read_back = ptt.readback().is_some();
        let (jobs_tx, jobs) = std_mpsc::channel::<Job>();
        let (first_tx, first) = oneshot::channel();
        let (released_tx, released) = std_mpsc::channel::<()>();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let to_owner = answers_tx.clone();
        std::thread::Builder::new()
            .name(format!("ptt-{name}"))
            .spawn(move || {
                let _span = span.entered();
                // Dropped last: the owner learns the line is released once the guard is.
                let _released = released_tx;
                serve(ptt, jobs, first_tx, to_owner);
            })?;
        Ok((
            PttThread {
                jobs: Some(jobs_tx),
                describe,
                can_read_back,
                next_id: 0,
                answers_tx,
                answers,
                released: Some(released),
            },
            first,
        ))
    }

    /// The line, for log lines ("gpio 17", "rigctld 127.0.0.1:4532", ...).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Whether the interface can read its state back ([`PttOp::Read`]).
    pub fn can_read_back(&self) -> bool {
        self.can_read_back
    }

    /// Asks the thread for `op` and returns the request's number; the answer comes on
    /// [`answer`](Self::answer), in the order asked (an answer given up on after
    /// [`ANSWER_WITHIN`] comes when it is given up). Never blocks. Must be called within a
    /// tokio runtime: one of its blocking threads follows the call (so the runtime's paused
    /// clock, in tests, waits for it as it waits for other blocking work) and gives up on
    /// it after [`ANSWER_WITHIN`].
    pub fn request(&mut self, op: PttOp) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let answered = Arc::new(AtomicBool::new(false));
        let (busy, returned) = std_mpsc::channel::<()>();
        let job = Job {
            id,
            op,
            answered: answered.clone(),
            _busy: busy,
        };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        let answers = self.answers_tx.clone();
        if !sent {
            let gone = RadioError::ptt(
                self.describe.clone(),
                Fault::Device(
                    "the PTT thread has stopped (the gateway is stopping, or the interface failed)"
                        .into(),
                ),
            );
            answer_once(&answers, &answered, id, op, Done::Answer(Err(gone)));
            return id;
        }
        let describe = self.describe.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = returned.recv_timeout(ANSWER_WITHIN) {
                let hangs = RadioError::ptt(
                    describe,
                    Fault::Device(format!(
                        "no answer within {} s: the interface hangs",
                        ANSWER_WITHIN.as_secs()
                    )),
                );
                answer_once(&answers, &answered, id, op, Done::Answer(Err(hangs)));
            }
        });
        id
    }

    /// The next answer. A panic of the interface is resumed here.
    pub async fn answer(&mut self) -> PttAnswer {
        // The sender is held by `self`: the channel never closes.
        let Some((id, op, done)) = self.answers.recv().await else {
            return std::future::pending().await;
        };
        match done {
            Done::Answer(result) => PttAnswer { id, op, result },
            Done::Panicked(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Asks for `op` and waits for its answer (answers to earlier requests are dropped).
    pub async fn call(&mut self, op: PttOp) -> Result<bool, RadioError> {
        let id = self.request(op);
        loop {
            let answer = self.answer().await;
            if answer.id == id {
                return answer.result;
            }
        }
    }

    /// Keys the transmitter and waits for it.
    pub async fn key(&mut self) -> Result<(), RadioError> {
        self.call(PttOp::Key).await.map(drop)
    }

    /// Unkeys the transmitter and waits for it.
    pub async fn unkey(&mut self) -> Result<(), RadioError> {
        self.call(PttOp::Unkey).await.map(drop)
    }

    /// Checks the interface and waits for it.
    pub async fn check(&mut self) -> Result<(), RadioError> {
        self.call(PttOp::Check).await.map(drop)
    }

    /// Lets the line go: the thread unkeys it and ends. Waits up to `within` for that;
    /// `false` if the thread was still busy (it unkeys once its call returns).
    pub async fn release(&mut self, within: Duration) -> bool {
        self.jobs = None;
        let Some(released) = self.released.take() else {
            return true;
        };
        tokio::task::spawn_blocking(move || {
            matches!(
                released.recv_timeout(within),
                Err(std_mpsc::RecvTimeoutError::Disconnected)
            )
        })
        .await
        .unwrap_or(false)
    }
}

/// The thread's work: unkey first, then each request in turn until the channel closes;
/// the guard unkeys on the way out.
fn serve(
    ptt: Box<dyn Ptt>,
    jobs: std_mpsc::Receiver<Job>,
    first: oneshot::Sender<Result<(), RadioError>>,
    answers: Answers,
) {
    let mut guard = match PttGuard::new(ptt) {
        Ok(guard) => guard,
        Err(e) => {
            let _ = first.send(Err(e));
            return;
        }
    };
    let _ = first.send(Ok(()));
    let mut reader = guard.readback();
    while let Ok(job) = jobs.recv() {
        let op = job.op;
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match op {
            PttOp::Key => guard.key().map(|()| true),
            PttOp::Unkey => guard.unkey().map(|()| false),
            PttOp::Check => guard.check().map(|()| guard.is_keyed()),
            PttOp::Read => match reader.as_mut() {
                Some(r) => r.keyed(),
                None => Err(RadioError::ptt(
                    guard.describe(),
                    Fault::Device("this interface cannot read its state back".into()),
                )),
            },
        }));
        match done {
            Ok(result) => {
                answer_once(&answers, &job.answered, job.id, op, Done::Answer(result));
            }
            Err(panic) => {
                error!(ptt = %guard.describe(), "the PTT interface panicked: transmitter released, the line is no longer used");
                // Unkeyed before the caller hears of it.
                drop(guard);
                answer_once(&answers, &job.answered, job.id, op, Done::Panicked(panic));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::sim::SimPtt;
    use std::sync::atomic::AtomicU32;

    /// A line that takes `delay` to key, and panics once keyed if told to.
    struct SlowPtt {
        line: SimPtt,
        delay: Duration,
        panics: bool,
    }

    impl Ptt for SlowPtt {
        fn set(&mut self, keyed: bool) -> Result<(), RadioError> {
            if keyed {
                std::thread::sleep(self.delay);
            }
            self.line.set(keyed)?;
            assert!(!(keyed && self.panics), "the interface broke");
            Ok(())
        }

        fn describe(&self) -> String {
            "slow".into()
        }
    }

    async fn slow_line(delay: Duration, panics: bool) -> (PttThread, SimPtt) {
        let line = SimPtt::new();
        let ptt = SlowPtt {
            line: line.clone(),
            delay,
            panics,
        };
        let (thread, first) = PttThread::spawn(Box::new(ptt), "test", Span::none()).unwrap();
        first.await.unwrap().unwrap();
        (thread, line)
    }

    /// Keying waits on the PTT thread: the runtime's one thread goes on with the other
    /// tasks (every radio's packets) meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_ptt_line_never_holds_the_runtimes_thread() {
        let (mut ptt, line) = slow_line(Duration::from_millis(300), false).await;
        let ticks = Arc::new(AtomicU32::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::SeqCst);
        ptt.key().await.unwrap();
        let during = ticks.load(Ordering::SeqCst) - before;
        assert!(line.is_keyed());
        // 300 ms of 10 ms ticks; a machine this busy still gets a few in.
        assert!(during >= 5, "{during} ticks while keying");
        ptt.unkey().await.unwrap();
        assert!(!line.is_keyed());
        ptt.check().await.unwrap();
        ticker.abort();
    }

    /// An owner that goes away while its line is being keyed (shutdown, a task dropped)
    /// leaves the transmitter unkeyed: the thread unkeys once the call ends.
    #[tokio::test(flavor = "current_thread")]
    async fn a_caller_gone_during_a_ptt_call_leaves_the_transmitter_unkeyed() {
        let (mut ptt, line) = slow_line(Duration::from_millis(200), false).await;
        let keying = tokio::spawn(async move {
            let _ = ptt.key().await;
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        keying.abort();
        let _ = keying.await;
        let unkeyed = std::time::Instant::now() + Duration::from_secs(5);
        while line.key_count() == 0 || line.is_keyed() {
            assert!(std::time::Instant::now() < unkeyed, "still keyed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(line.key_count(), 1);
    }

    /// An interface that panics while keying: the panic reaches the caller as it did when
    /// the call was made on its own thread, and the line is unkeyed on the way.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_in_the_ptt_interface_reaches_the_caller_and_unkeys() {
        let (mut ptt, line) = slow_line(Duration::from_millis(1), true).await;
        let keying = tokio::spawn(async move {
            let _ = ptt.key().await;
        });
        let e = keying.await.unwrap_err();
        assert!(e.is_panic(), "{e:?}");
        assert_eq!(line.key_count(), 1);
        assert!(!line.is_keyed());
    }

    /// Requests are answered in the order asked, whatever the caller does meanwhile, and
    /// a released thread unkeys before it ends.
    #[tokio::test(flavor = "current_thread")]
    async fn answers_come_in_order_and_release_unkeys() {
        let (mut ptt, line) = slow_line(Duration::from_millis(30), false).await;
        let key = ptt.request(PttOp::Key);
        let read = ptt.request(PttOp::Read);
        let unkey = ptt.request(PttOp::Unkey);
        let key_again = ptt.request(PttOp::Key);
        let a = ptt.answer().await;
        assert_eq!((a.id, a.op, a.result.unwrap()), (key, PttOp::Key, true));
        let a = ptt.answer().await;
        assert_eq!((a.id, a.op), (read, PttOp::Read));
        assert!(a.result.unwrap_err().to_string().contains("cannot read"));
        let a = ptt.answer().await;
        assert_eq!((a.id, a.result.unwrap()), (unkey, false));
        let a = ptt.answer().await;
        assert_eq!(a.id, key_again);
        assert!(line.is_keyed());
        assert!(ptt.release(Duration::from_secs(5)).await);
        assert!(!line.is_keyed());
        let e = ptt.key().await.unwrap_err();
        assert!(e.to_string().contains("stopped"), "{e}");
    }
}
