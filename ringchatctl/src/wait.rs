//! Waiting for an outcome: a deadline polled every 50 ms, and progress lines printed at
//! most once a second (to stdout, or to stderr when stdout carries `--json`).

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

/// How often the daemon is asked while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Least time between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A wait of at most `timeout` from its creation.
#[derive(Debug)]
pub struct Waiter {
    started: Instant,
    timeout: Duration,
    json: bool,
    last_progress: Instant,
}

impl Waiter {
    /// Starts the clock; progress goes to stderr if `json`.
    pub fn new(timeout: Duration, json: bool) -> Waiter {
        let now = Instant::now();
        Waiter {
            started: now,
            timeout,
            json,
            last_progress: now,
        }
    }

    /// Sleeps one poll interval; false (at once) if the timeout has passed.
    pub fn next(&self) -> bool {
        if self.started.elapsed() >= self.timeout {
            return false;
        }
        thread::sleep(POLL);
        true
    }

    /// Prints `line` if the wait began, or the last line was printed, a second ago or more:
    /// an outcome that comes quickly prints no progress at all.
    pub fn progress(&mut self, line: &str) {
        if !self.progress_due() {
            return;
        }
        // A closed stdout must not end the wait; the outcome still sets the exit code.
        let _ = if self.json {
            writeln!(std::io::stderr(), "{line}")
        } else {
            writeln!(std::io::stdout(), "{line}")
        };
    }

    /// Whether a progress line may be printed now; if so, the next one is a second away.
    fn progress_due(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last_progress) < PROGRESS_EVERY {
            return false;
        }
        self.last_progress = now;
        true
    }

    /// Milliseconds since the wait began.
    pub fn elapsed_ms(&self) -> u64 {
        millis_since(self.started)
    }

    /// The timeout, for messages ("after 10s").
    pub fn timeout_text(&self) -> String {
        format!("{}s", self.timeout.as_secs_f64())
    }
}

/// Milliseconds since `start`.
pub fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_timeout() {
        let w = Waiter::new(Duration::from_millis(120), true);
        let mut polls = 0;
        while w.next() {
            polls += 1;
        }
        assert!((2..=3).contains(&polls), "{polls}");
        assert!(w.elapsed_ms() >= 120);
        assert_eq!(w.timeout_text(), "0.12s");
    }

    #[test]
    fn progress_is_throttled() {
        let mut w = Waiter::new(Duration::from_secs(5), true);
        assert!(!w.progress_due(), "not in the first second");
        w.last_progress -= PROGRESS_EVERY;
        assert!(w.progress_due());
        assert!(!w.progress_due(), "not twice in a second");
    }
}
