//! Locks that keep working after a thread panicked while holding them.
//!
//! The data behind the project's mutexes stays consistent between statements (a counter, a
//! map of open devices, a cached token), so a panic elsewhere is no reason to stop keying the
//! radio or serving the channel: the guard is taken back from the poisoned lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the guard back if another thread panicked while holding it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
