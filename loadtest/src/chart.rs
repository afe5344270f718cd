//! SVG chart of delivery latency percentiles (p50, p90, p99, max) per timeline bucket, drawn
//! with plotters' SVG backend (no system fonts: text is written as SVG `<text>`).

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::report::TimelinePoint;

const SERIES: [(&str, RGBColor); 4] = [
    ("p50", RGBColor(31, 119, 180)),
    ("p90", RGBColor(44, 160, 44)),
    ("p99", RGBColor(255, 127, 14)),
    ("max", RGBColor(214, 39, 40)),
];

fn value(point: &TimelinePoint, series: usize) -> f64 {
    match series {
        0 => point.p50_ms,
        1 => point.p90_ms,
        2 => point.p99_ms,
        _ => point.max_ms,
    }
}

/// The chart as an SVG document; buckets without deliveries are left out of the lines.
pub fn latency_svg(timeline: &[TimelinePoint], title: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the chart: {e:?}");
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let points: Vec<&TimelinePoint> = timeline.iter().filter(|p| p.deliveries > 0).collect();
        let max_x = timeline.last().map_or(1.0, |p| p.t_s + 1.0).max(1.0);
        let max_y = points.iter().map(|p| p.max_ms).fold(1.0_f64, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since publishing began")
            .y_desc("delivery latency, ms")
            .draw()
            .map_err(err)?;
        for (i, (name, color)) in SERIES.iter().enumerate() {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.t_s, value(p, i))),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, base: f64, deliveries: u64) -> TimelinePoint {
        TimelinePoint {
            t_s: t,
            deliveries,
            p50_ms: base,
            p90_ms: base * 2.0,
            p99_ms: base * 3.0,
            max_ms: base * 4.0,
        }
    }

    #[test]
    fn draws_four_series_with_a_legend() {
        let timeline = [point(0.0, 1.0, 10), point(1.0, 2.0, 0), point(2.0, 1.5, 10)];
        let svg = latency_svg(&timeline, "fanout on spacecast").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // The four series (2 px wide); the empty bucket at t = 1 is left out of each line.
        let series: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(r#"stroke-width="2""#))
            .collect();
        assert_eq!(series.len(), 4, "{svg}");
        assert!(
            series.iter().all(|l| l.matches(',').count() == 2),
            "{series:?}"
        );
        for label in ["p50", "p90", "p99", "max", "fanout on spacecast"] {
            assert!(svg.contains(label), "no {label}");
        }
    }

    #[test]
    fn an_empty_timeline_still_renders() {
        let svg = latency_svg(&[], "idle").unwrap();
        assert!(svg.contains("</svg>"));
    }
}
