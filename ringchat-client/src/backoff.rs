//! Growing pauses between reconnect attempts, so a dead cluster is not hammered while a
//! short outage (a failover) is still bridged within a few tens of milliseconds.

use std::time::Duration;

/// First pause after a failure.
pub const FIRST: Duration = Duration::from_millis(50);
/// Longest pause.
pub const MAX: Duration = Duration::from_secs(1);

/// Doubles from [`FIRST`] up to [`MAX`]; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The pause to take now; the one after is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }

    /// Back to the first, short pause.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let ms: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), FIRST);
    }
}
