//! Condition waits: poll every 20 ms until a condition holds or a deadline passes.
//!
//! Tests synchronise only through these (never through fixed sleeps), so they are as fast
//! as the system allows and fail with a message saying what they waited for and what they
//! saw last.

use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(20);

/// A generous limit for things that normally take well under a second (elections, acks):
/// the machine is shared, so a busy moment must not fail a test.
pub const SHORT: Duration = Duration::from_secs(10);

/// A limit for things that involve several rounds (rejoin and catch-up, multicast discovery).
pub const LONG: Duration = Duration::from_secs(30);

/// Polls `probe` until it returns `Ok`, and returns that value. `Err` carries a description
/// of the current state; the last one is in the panic message if `timeout` passes first.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(v) => return v,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` until it is true; panics naming `what` if `timeout` passes first.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || {
        if cond() {
            Ok(())
        } else {
            Err("condition false".into())
        }
    })
}
