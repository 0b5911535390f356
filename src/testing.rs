//! Helpers for the library's own tests.

use std::sync::{Arc, Mutex};

/// The log lines written on this thread at `level` and above while the returned guard
/// lives (a paused-clock test runs every task on its thread).
pub(crate) fn capture_logs(
    level: tracing::Level,
) -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().flush()
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // A call site first met meanwhile by another test's thread, which has no subscriber,
    // may have been judged without this one: judge every call site again, with it.
    tracing::callsite::rebuild_interest_cache();
    (buf.0, guard)
}
