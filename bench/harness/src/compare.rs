//! `--compare a.json b.json ...`: the runs' headline figures side by side, each as a ratio to
//! the first run's.

use crate::result::TestResult;

/// (name, what is better, value)
type Metric = (&'static str, &'static str, fn(&TestResult) -> f64);

const METRICS: &[Metric] = &[
    ("publish msg/s", "higher", |r| r.aggregated_publish_rate),
    ("publish MB/s", "higher", |r| r.aggregated_publish_mbps),
    ("consume msg/s", "higher", |r| r.aggregated_consume_rate),
    ("publish p50 ms", "lower", |r| {
        r.aggregated.aggregated_publish_latency_50pct
    }),
    ("publish p99 ms", "lower", |r| {
        r.aggregated.aggregated_publish_latency_99pct
    }),
    ("e2e p50 ms", "lower", |r| {
        r.aggregated.aggregated_end_to_end_latency_50pct
    }),
    ("e2e p99 ms", "lower", |r| {
        r.aggregated.aggregated_end_to_end_latency_99pct
    }),
    ("e2e p99.9 ms", "lower", |r| {
        r.aggregated.aggregated_end_to_end_latency_999pct
    }),
    ("e2e p99.99 ms", "lower", |r| {
        r.aggregated.aggregated_end_to_end_latency_9999pct
    }),
    ("e2e max ms", "lower", |r| {
        r.aggregated.aggregated_end_to_end_latency_max
    }),
    ("broker CPU-s/GB in", "lower", |r| {
        r.resources
            .as_ref()
            .map_or(f64::NAN, |x| x.cpu_seconds_per_gb_in)
    }),
    ("broker peak RSS MiB", "lower", |r| {
        r.resources
            .as_ref()
            .map_or(f64::NAN, |x| x.peak_rss_bytes as f64 / 1048576.0)
    }),
];

/// A table with one column per run: the value, and from the second run on its ratio to the
/// first's (`x1.25`).
pub fn ratio_table(runs: &[(String, TestResult)]) -> String {
    let mut out = format!("{:<22}{:<8}", "metric", "better");
    for (label, _) in runs {
        out += &format!("{:>24}", truncate(label, 22));
    }
    out.push('\n');
    for (name, better, value) in METRICS {
        let base = runs.first().map(|(_, r)| value(r)).unwrap_or(f64::NAN);
        if runs.iter().all(|(_, r)| value(r).is_nan()) {
            continue;
        }
        out += &format!("{name:<22}{better:<8}");
        for (i, (_, run)) in runs.iter().enumerate() {
            let v = value(run);
            let cell = if v.is_nan() {
                "-".to_string()
            } else if i == 0 || base == 0.0 || base.is_nan() {
                format!("{v:.3}")
            } else {
                format!("{v:.3} (x{:.2})", v / base)
            };
            out += &format!("{cell:>24}");
        }
        out.push('\n');
    }
    out
}

fn truncate(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        text.chars().take(n - 1).collect::<String>() + "~"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_against_the_first_run() {
        let mut a = TestResult {
            aggregated_publish_rate: 1000.0,
            ..TestResult::default()
        };
        a.aggregated.aggregated_end_to_end_latency_99pct = 4.0;
        let mut b = a.clone();
        b.aggregated_publish_rate = 1500.0;
        b.aggregated.aggregated_end_to_end_latency_99pct = 2.0;
        let table = ratio_table(&[("kafka".into(), a), ("sluice".into(), b)]);
        let line = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        assert!(
            line("publish msg/s").contains("1500.000 (x1.50)"),
            "{table}"
        );
        assert!(line("e2e p99 ms").contains("2.000 (x0.50)"), "{table}");
        // No resources in either run: no such rows.
        assert!(!table.contains("CPU-s"), "{table}");
    }
}
