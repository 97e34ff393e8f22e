//! `sluice-bench`: OpenMessaging-Benchmark workloads against any Kafka-compatible broker, with
//! real librdkafka producers and consumers, HdrHistogram latencies, JSON results under OMB's
//! field names, SVG charts, run comparisons and client-setting sweeps.

pub mod chart;
pub mod compare;
pub mod pace;
pub mod resources;
pub mod result;
pub mod run;
pub mod stats;
pub mod sweep;
pub mod workload;

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Markers around the table `sluice-bench table` keeps in bench/RESULTS.md.
pub const TABLE_BEGIN: &str = "<!-- sluice-bench table: begin -->";
pub const TABLE_END: &str = "<!-- sluice-bench table: end -->";

/// The Markdown table of runs (one row each) that `scripts/bench.sh` puts in bench/RESULTS.md.
pub fn results_table(runs: &[(String, result::TestResult)]) -> String {
    let mut out = String::from(
        "| run | workload | target msg/s | publish msg/s | MB/s | publish p99 ms | e2e p50 ms | e2e p99 ms | e2e p99.99 ms | e2e max ms | broker CPU-s/GB in | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, r) in runs {
        let a = &r.aggregated;
        let (cpu, rss) = r.resources.as_ref().map_or(("-".into(), "-".into()), |x| {
            (
                format!("{:.2}", x.cpu_seconds_per_gb_in),
                format!("{:.0}", x.peak_rss_bytes as f64 / 1048576.0),
            )
        });
        out += &format!(
            "| {name} | {} | {:.0}{} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {cpu} | {rss} |\n",
            r.workload,
            r.target_rate,
            if r.max_rate_search { " (max)" } else { "" },
            r.aggregated_publish_rate,
            r.aggregated_publish_mbps,
            a.aggregated_publish_latency_99pct,
            a.aggregated_end_to_end_latency_50pct,
            a.aggregated_end_to_end_latency_99pct,
            a.aggregated_end_to_end_latency_9999pct,
            a.aggregated_end_to_end_latency_max,
        );
    }
    out
}

/// `text` with the part between the table markers replaced by `table` (markers appended at
/// the end when there are none).
pub fn replace_table(text: &str, table: &str) -> String {
    match (text.find(TABLE_BEGIN), text.find(TABLE_END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{TABLE_BEGIN}\n{table}{}", &text[..b], &text[e..])
        }
        _ => format!("{}\n\n{TABLE_BEGIN}\n{table}{TABLE_END}\n", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_results_table_is_replaced_between_its_markers() {
        let run = result::TestResult {
            workload: "w".into(),
            target_rate: 100.0,
            aggregated_publish_rate: 99.0,
            ..Default::default()
        };
        let table = results_table(&[("a".into(), run)]);
        assert!(table.contains("| a | w | 100 | 99 |"), "{table}");
        let once = replace_table("# Results\n", &table);
        assert!(once.ends_with(&format!("{TABLE_BEGIN}\n{table}{TABLE_END}\n")));
        let twice = replace_table(&once, "| new |\n");
        assert_eq!(
            twice,
            format!("# Results\n\n{TABLE_BEGIN}\n| new |\n{TABLE_END}\n")
        );
        assert_eq!(today().len(), 10);
    }
}
