//! A body run on a thread of its own with a time limit: a deadlock (or a
//! writer waiting for ever) fails the test instead of hanging the run.
//! Included by path (`#[path = "support/deadline.rs"] mod deadline;`) by
//! tests that need nothing else of `support/`.

use std::time::Duration;

/// Runs `body` on its own thread; fails if it panics (with its panic) or
/// runs for more than `limit` (the thread is left blocked: the test binary
/// ends with the test run).
pub fn on_thread_within(what: &str, limit: Duration, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {limit:?} (deadlocked)"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(handle.join().expect_err("the body panicked"))
        }
    }
}
