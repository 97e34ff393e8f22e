//! SVG charts of one or several runs: throughput over time (publish and consume, per period)
//! and the end-to-end latency distribution by percentile (x: 90%, 99%, 99.9%... evenly spaced,
//! y: log scale), as HdrHistogram plots draw it.

use std::path::Path;

use plotters::prelude::*;

use crate::result::TestResult;

/// `-log10(1 - p/100)`: 90% -> 1, 99% -> 2, 99.9% -> 3.
fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(1e-6);
    -rest.log10()
}

fn nines_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if p >= 99.0 {
        format!("{}%", (p * 1000.0).round() / 1000.0)
    } else {
        format!("{}%", p.round())
    }
}

/// The run's end-to-end distribution as (nines, ms), in order.
fn distribution(run: &TestResult) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = run
        .aggregated_end_to_end_latency_quantiles
        .iter()
        .filter_map(|(k, v)| k.parse::<f64>().ok().map(|p| (p, *v)))
        .filter(|(p, _)| *p < 100.0)
        .map(|(p, v)| (nines(p), v.max(0.001)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Draws `runs` (label, result) into an SVG file at `path`.
pub fn draw(runs: &[(String, TestResult)], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(700);
    let error = |e: DrawingAreaErrorKind<_>| format!("drawing {}: {e}", path.display());

    let t_max = runs
        .iter()
        .flat_map(|(_, r)| r.sample_seconds.iter().copied())
        .fold(1.0f64, f64::max);
    let rate_max = runs
        .iter()
        .flat_map(|(_, r)| r.publish_rate.iter().chain(&r.consume_rate).copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Throughput (msg/s, solid: publish, thin: consume)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, 0f64..rate_max)
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("seconds after warm-up")
        .y_desc("msg/s")
        .draw()
        .map_err(error)?;
    for (i, (label, run)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let publish = run
            .sample_seconds
            .iter()
            .copied()
            .zip(run.publish_rate.iter().copied());
        chart
            .draw_series(LineSeries::new(publish, color.stroke_width(3)))
            .map_err(error)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        let consume = run
            .sample_seconds
            .iter()
            .copied()
            .zip(run.consume_rate.iter().copied());
        chart
            .draw_series(LineSeries::new(consume, color.stroke_width(1)))
            .map_err(error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(error)?;

    let curves: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|(label, run)| (label.clone(), distribution(run)))
        .collect();
    let all = curves.iter().flat_map(|(_, c)| c.iter());
    let (lo, hi) = all.fold((f64::MAX, 0.001f64), |(lo, hi), (_, v)| {
        (lo.min(*v), hi.max(*v))
    });
    let lo = if lo == f64::MAX { 0.001 } else { lo };
    let x_max = curves
        .iter()
        .flat_map(|(_, c)| c.last().map(|p| p.0))
        .fold(2.0f64, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("End-to-end latency by percentile (ms)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (lo * 0.8..hi * 1.25).log_scale())
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_labels(x_max.ceil() as usize + 1)
        .x_label_formatter(&nines_label)
        .x_desc("percentile")
        .y_desc("ms")
        .draw()
        .map_err(error)?;
    for (i, (label, curve)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(error)?;
    root.present().map_err(error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_space_the_tail_evenly() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&4.0), "99.99%");
        assert_eq!(nines_label(&0.0), "0%");
    }
}
