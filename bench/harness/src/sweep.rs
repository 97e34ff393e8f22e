//! `sweep`: a workload over a grid of client settings, the throughput / p99 frontier, and the
//! `throughput`, `latency` and `balanced` client profiles picked from it.

use std::path::Path;

use crate::result::TestResult;

/// A grid axis: a setting and the values it takes.
pub type Axis = (String, Vec<String>);

/// The grid when none is given: how long to linger, how large a batch, whether to compress.
pub fn default_grid() -> Vec<Axis> {
    let axis = |key: &str, values: &[&str]| {
        (
            key.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        )
    };
    vec![
        axis("linger.ms", &["0", "5", "50"]),
        axis("batch.size", &["16384", "1048576"]),
        axis("compression.type", &["none", "lz4"]),
    ]
}

/// Parses `key=v1,v2,...`.
pub fn parse_axis(text: &str) -> Result<Axis, String> {
    let (key, values) = text
        .split_once('=')
        .ok_or_else(|| format!("--grid `{text}`: want key=v1,v2"))?;
    let values: Vec<String> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    if key.trim().is_empty() || values.is_empty() {
        return Err(format!("--grid `{text}`: want key=v1,v2"));
    }
    Ok((key.trim().to_string(), values))
}

/// Every combination of the axes' values, the first axis slowest.
pub fn combinations(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((key.clone(), v.clone()));
                    next
                })
            })
            .collect();
    }
    out
}

/// One measured grid point.
#[derive(Clone, Debug)]
pub struct Point {
    pub settings: Vec<(String, String)>,
    pub result: TestResult,
}

impl Point {
    pub fn throughput_mbps(&self) -> f64 {
        self.result.aggregated_publish_mbps
    }

    /// End-to-end p99 where there are consumers, else publish p99.
    pub fn p99_ms(&self) -> f64 {
        let a = &self.result.aggregated;
        if self.result.consumers_per_topic > 0 {
            a.aggregated_end_to_end_latency_99pct
        } else {
            a.aggregated_publish_latency_99pct
        }
    }

    pub fn describe(&self) -> String {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The points no other point beats on both throughput and p99, by rising throughput.
pub fn frontier(points: &[Point]) -> Vec<usize> {
    let dominated = |i: usize| {
        points.iter().enumerate().any(|(j, q)| {
            let p = &points[i];
            j != i
                && q.throughput_mbps() >= p.throughput_mbps()
                && q.p99_ms() <= p.p99_ms()
                && (q.throughput_mbps() > p.throughput_mbps() || q.p99_ms() < p.p99_ms())
        })
    };
    let mut out: Vec<usize> = (0..points.len()).filter(|&i| !dominated(i)).collect();
    out.sort_by(|&a, &b| {
        points[a]
            .throughput_mbps()
            .total_cmp(&points[b].throughput_mbps())
    });
    out
}

/// The frontier points for each profile: `throughput` the most MB/s, `latency` the lowest p99,
/// `balanced` the best product of the two as shares of the best (MB/s / best MB/s times
/// best p99 / p99).
pub fn picks(points: &[Point], frontier: &[usize]) -> [(&'static str, usize); 3] {
    let best_mbps = frontier
        .iter()
        .map(|&i| points[i].throughput_mbps())
        .fold(0.0, f64::max);
    let best_p99 = frontier
        .iter()
        .map(|&i| points[i].p99_ms())
        .fold(f64::MAX, f64::min);
    let by = |score: &dyn Fn(&Point) -> f64| {
        *frontier
            .iter()
            .max_by(|&&a, &&b| score(&points[a]).total_cmp(&score(&points[b])))
            .expect("a frontier has a point")
    };
    [
        ("throughput", by(&|p| p.throughput_mbps())),
        ("latency", by(&|p| -p.p99_ms())),
        (
            "balanced",
            by(&|p| {
                (p.throughput_mbps() / best_mbps.max(1e-9)) * (best_p99 / p.p99_ms().max(1e-9))
            }),
        ),
    ]
}

/// Rewrites the client profile at `path` with `point`'s settings, each with the measurement
/// behind it as its reason; the profile's other settings stay. A setting librdkafka cannot
/// combine with idempotence (acks other than all, more than 5 in flight) turns it off.
pub fn write_profile(
    path: &Path,
    profile: &str,
    point: &Point,
    rank: &str,
    command: &str,
    date: &str,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let measured = format!(
        "{:.1} MB/s at p99 {:.2} ms",
        point.throughput_mbps(),
        point.p99_ms()
    );
    let mut settings = point.settings.clone();
    let acks_all = settings
        .iter()
        .find(|(k, _)| k == "acks")
        .is_none_or(|(_, v)| v == "all" || v == "-1");
    let in_flight_ok = settings
        .iter()
        .find(|(k, _)| k == "max.in.flight.requests.per.connection" || k == "max.in.flight")
        .is_none_or(|(_, v)| v.parse::<u32>().is_ok_and(|n| n <= 5));
    if !(acks_all && in_flight_ok) {
        settings.push(("enable.idempotence".into(), "false".into()));
    }
    for (key, value) in &settings {
        let reason = if key == "enable.idempotence" {
            "# Off: the measured acks / in-flight setting cannot be idempotent.".to_string()
        } else {
            format!("# Swept ({date}): {key}={value} gave {measured}, the {rank}.")
        };
        let at = lines
            .iter()
            .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key));
        match at {
            Some(i) => {
                lines[i] = format!("{key}={value}");
                if i > 0 && lines[i - 1].starts_with('#') {
                    lines[i - 1] = reason;
                } else {
                    lines.insert(i, reason);
                }
            }
            None => {
                lines.push(reason);
                lines.push(format!("{key}={value}"));
            }
        }
    }
    let header = format!("# Measured: `{command}` ({date}); the `{profile}` pick.");
    match lines.iter().position(|l| l.starts_with("# Measured: ")) {
        Some(i) => lines[i] = header,
        None => lines.insert(usize::from(!lines.is_empty()), header),
    }
    std::fs::write(path, lines.join("\n") + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// The sweep's table: every point, frontier points marked.
pub fn table(points: &[Point], frontier: &[usize]) -> String {
    let mut out = format!("{:>3} {:>10} {:>10}  settings\n", "", "MB/s", "p99 ms");
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[b]
            .throughput_mbps()
            .total_cmp(&points[a].throughput_mbps())
    });
    for i in order {
        let p = &points[i];
        out += &format!(
            "{:>3} {:>10.1} {:>10.2}  {}\n",
            if frontier.contains(&i) { "*" } else { "" },
            p.throughput_mbps(),
            p.p99_ms(),
            p.describe()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(settings: &[(&str, &str)], mbps: f64, p99: f64) -> Point {
        let mut result = TestResult {
            aggregated_publish_mbps: mbps,
            consumers_per_topic: 1,
            ..TestResult::default()
        };
        result.aggregated.aggregated_end_to_end_latency_99pct = p99;
        Point {
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            result,
        }
    }

    #[test]
    fn grid_frontier_and_picks() {
        let axes = vec![
            parse_axis("linger.ms=0,5").unwrap(),
            parse_axis("acks=1,all").unwrap(),
        ];
        let combos = combinations(&axes);
        assert_eq!(combos.len(), 4);
        assert_eq!(
            combos[1],
            vec![
                ("linger.ms".into(), "0".into()),
                ("acks".into(), "all".into())
            ]
        );
        assert!(parse_axis("linger.ms").is_err() && parse_axis("linger.ms=").is_err());

        let points = vec![
            point(&[("linger.ms", "0")], 10.0, 1.0),
            point(&[("linger.ms", "5")], 40.0, 3.0),
            point(&[("linger.ms", "50")], 50.0, 30.0),
            // Beaten on both by the second.
            point(&[("linger.ms", "20")], 30.0, 8.0),
        ];
        let front = frontier(&points);
        assert_eq!(front, vec![0, 1, 2]);
        let picked = picks(&points, &front);
        assert_eq!(picked[0], ("throughput", 2));
        assert_eq!(picked[1], ("latency", 0));
        // 0.8 x 1/3 = 0.27 beats 1.0 x 1/30 and 0.2 x 1.
        assert_eq!(picked[2], ("balanced", 1));
        assert!(table(&points, &front)
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("  *"));
    }

    #[test]
    fn profiles_keep_their_other_settings() {
        let dir = std::env::temp_dir().join(format!("sluice-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.properties");
        std::fs::write(
            &path,
            "# Lowest latency.\n# Send at once.\nlinger.ms=0\nenable.idempotence=true\n# Consumers.\nfetch.min.bytes=1\n",
        )
        .unwrap();
        let p = point(&[("linger.ms", "1"), ("acks", "1")], 12.5, 0.75);
        write_profile(
            &path,
            "latency",
            &p,
            "lowest p99",
            "sluice-bench sweep w.yaml",
            "2026-11-22",
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Lowest latency.\n# Measured: `sluice-bench sweep w.yaml`"),
            "{text}"
        );
        assert!(text.contains("# Swept (2026-11-22): linger.ms=1 gave 12.5 MB/s at p99 0.75 ms, the lowest p99.\nlinger.ms=1\n"), "{text}");
        assert!(text.contains("enable.idempotence=false"), "{text}");
        assert!(
            text.contains("acks=1") && text.contains("# Consumers.\nfetch.min.bytes=1"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
