//! The HdrHistogram percentile distribution text format (`.hgrm`), as
//! Java's `AbstractHistogram.outputPercentileDistribution` writes it and
//! HdrHistogram's plotters read it: a header, one line per percentile
//! step (value, percentile as a fraction, cumulative count, 1/(1-p)), and
//! a footer with mean, standard deviation, max, count and the histogram's
//! geometry. Values are written in microseconds (the histograms hold
//! nanoseconds).

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile reporting ticks per half distance (Java's default is 5).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Nanoseconds per output unit (microseconds).
pub const NS_PER_UNIT: f64 = 1000.0;

/// The sub-bucket count of a histogram with `sigfig` significant digits.
fn sub_buckets(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// Writes `h` (values in ns) as a percentile distribution in µs.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let digits = usize::from(h.sigfig());
    let _ = write!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / NS_PER_UNIT;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{value:12.digits$} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{value:12.digits$} {q:2.12} {total:10}");
            }
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() } / NS_PER_UNIT;
    let sd = if h.is_empty() { 0.0 } else { h.stdev() } / NS_PER_UNIT;
    let max = h.max() as f64 / NS_PER_UNIT;
    let _ = writeln!(
        s,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {sd:12.digits$}]"
    );
    let _ = writeln!(
        s,
        "#[Max     = {max:12.digits$}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::new_histogram;

    struct Line {
        value: f64,
        quantile: f64,
        total: u64,
    }

    fn parse(text: &str) -> (Vec<Line>, Vec<String>) {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let mut rows = Vec::new();
        let mut footer = Vec::new();
        for l in lines {
            if l.starts_with("#[") {
                footer.push(l.to_string());
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() == 4 || f.len() == 3, "{l}");
            let row = Line {
                value: f[0].parse().unwrap(),
                quantile: f[1].parse().unwrap(),
                total: f[2].parse().unwrap(),
            };
            if f.len() == 4 {
                let inv: f64 = f[3].parse().unwrap();
                assert!((inv - 1.0 / (1.0 - row.quantile)).abs() <= 0.01 * inv.max(1.0));
            }
            rows.push(row);
        }
        (rows, footer)
    }

    #[test]
    fn parses_back_consistently() {
        let mut h = new_histogram();
        // 1000 values: 100 ns .. 100 µs.
        for i in 1..=1000u64 {
            h.record(i * 100).unwrap();
        }
        let text = percentile_distribution(&h);
        let (rows, footer) = parse(&text);
        assert!(rows.len() > 20);
        for w in rows.windows(2) {
            assert!(w[0].value <= w[1].value);
            assert!(w[0].quantile <= w[1].quantile);
            assert!(w[0].total <= w[1].total);
        }
        let last = rows.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.total, 1000);
        assert!(
            (last.value - 100.0).abs() < 0.1,
            "max 100 µs: {}",
            last.value
        );
        // The median row: about 50 µs (3 significant digits).
        let median = rows.iter().find(|r| r.quantile >= 0.5).unwrap();
        assert!((median.value - 50.0).abs() < 0.1, "{}", median.value);
        assert_eq!(footer.len(), 3);
        assert!(footer[0].starts_with("#[Mean    ="), "{}", footer[0]);
        assert!(footer[1].contains("Total count    =         1000"));
        assert!(footer[2].contains("SubBuckets     =         2048"));
    }

    #[test]
    fn empty_histogram_is_still_well_formed() {
        let text = percentile_distribution(&new_histogram());
        let (rows, footer) = parse(&text);
        assert!(rows.is_empty());
        assert_eq!(footer.len(), 3);
    }
}
