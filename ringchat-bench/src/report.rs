//! Plain-text tables for the reports (the JSON form is each report's `Serialize`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::Summary;

/// A report that prints as a table and serializes as one JSON object.
pub trait Report: Serialize {
    /// The human-readable table.
    fn table(&self) -> String;
}

/// Builds a table of `label  value` rows and latency rows.
#[derive(Debug, Default)]
pub struct Table {
    out: String,
}

const LABEL: usize = 24;

impl Table {
    /// A table under a title line.
    pub fn new(title: &str) -> Self {
        Self {
            out: format!("{title}\n"),
        }
    }

    /// A `label  value` row.
    pub fn row(&mut self, label: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = writeln!(self.out, "  {label:<LABEL$} {value}");
        self
    }

    /// The header of a latency block (values in milliseconds).
    pub fn latency_header(&mut self) -> &mut Self {
        let _ = writeln!(
            self.out,
            "  {:<LABEL$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   (ms)",
            "latency", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        self
    }

    /// One latency row.
    pub fn latency(&mut self, label: &str, s: &Summary) -> &mut Self {
        if s.count == 0 {
            let _ = writeln!(self.out, "  {label:<LABEL$} {:>9} {:>9}", 0, "-");
            return self;
        }
        let _ = writeln!(
            self.out,
            "  {label:<LABEL$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            s.count,
            ms(s.p50_us),
            ms(s.p90_us),
            ms(s.p99_us),
            ms(s.p999_us),
            ms(s.max_us)
        );
        self
    }

    /// The finished text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// A count with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second, rounded, with thousands separators.
pub fn rate(r: f64) -> String {
    count(r.max(0.0).round() as u64)
}

/// What a run drove: `"ringchat"`, or `"redis HOST:PORT"`.
pub fn target(redis: Option<&str>) -> String {
    redis.map_or_else(|| "ringchat".to_string(), |a| format!("redis {a}"))
}

/// `0`, or `CODE=n, CODE=n`.
pub fn errors(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "0".into();
    }
    let total: u64 = map.values().sum();
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{total} ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(rate(99_999.6), "100,000");
    }

    #[test]
    fn errors_list_codes() {
        assert_eq!(errors(&BTreeMap::new()), "0");
        let m = BTreeMap::from([("A".to_string(), 2), ("B".to_string(), 1)]);
        assert_eq!(errors(&m), "3 (A=2, B=1)");
    }

    #[test]
    fn latency_rows_are_in_milliseconds() {
        let s = Summary {
            count: 3,
            p50_us: 412,
            max_us: 2100,
            ..Summary::default()
        };
        let text = Table::new("t")
            .latency_header()
            .latency("commit", &s)
            .finish();
        assert!(text.contains("0.412") && text.contains("2.100"), "{text}");
    }
}
