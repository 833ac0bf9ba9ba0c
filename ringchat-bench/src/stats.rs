//! Latency histograms (hdrhistogram, microsecond resolution) and the summary the reports
//! print: count, min, p50, p90, p99, p99.9, max and mean.
//!
//! Percentiles are hdrhistogram's nearest-rank values with three significant digits, so a
//! value below 2,048 µs is exact and larger ones are within 0.1 %.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value recorded: one hour, in microseconds. Larger values are clamped to it.
const HIGHEST_US: u64 = 3_600_000_000;

/// A histogram of durations.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram for 1 µs to one hour.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; this cannot fail.
        let hist = Histogram::new_with_bounds(1, HIGHEST_US, 3)
            .expect("constant histogram bounds are valid");
        Self { hist }
    }

    /// Records one duration (sub-microsecond values count as 1 µs).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(HIGHEST_US);
        self.record_us(us);
    }

    /// Records one value in microseconds.
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, HIGHEST_US));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot go out of range.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The summary at the reported percentiles.
    pub fn summary(&self) -> Summary {
        let h = &self.hist;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// Percentiles of a latency distribution, in microseconds (all zero when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Smallest value.
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

/// `count` events over `secs` seconds, 0 for an empty interval.
pub fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_summarises_to_zeros() {
        assert_eq!(Latency::new().summary(), Summary::default());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latency::new();
        for us in 1..=1000 {
            l.record_us(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 1.0);
    }

    #[test]
    fn durations_are_recorded_in_microseconds_and_merge() {
        let mut a = Latency::new();
        a.record(Duration::from_micros(250));
        a.record(Duration::from_nanos(10)); // counts as 1 µs
        let mut b = Latency::new();
        b.record(Duration::from_millis(2));
        a.merge(&b);
        let s = a.summary();
        assert_eq!((s.count, s.min_us, s.max_us), (3, 1, 2000));
        assert_eq!(s.p50_us, 250);
    }

    #[test]
    fn rate_of_an_empty_interval_is_zero() {
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(per_second(10, 2.0), 5.0);
    }
}
