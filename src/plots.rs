//! SVG plots of the paper harness ([`crate::paper`]): line charts (error against precision, loss and accuracy
//! curves) and horizontal bar panels (per-layer time and bytes), drawn with `plotters`' SVG backend only (no system fonts: text
//! is laid out with plotters' built-in metrics and rendered by the viewer).

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Size of every plot, in SVG pixels.
const SIZE: (u32, u32) = (900, 560);

/// A plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed while drawing or writing the file.
    #[error("plot {path}: {message}")]
    Draw {
        /// The SVG file.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
    /// The data cannot be plotted (no points, or a value that is not finite or, on a log axis, not positive).
    #[error("plot {path}: {what}")]
    Data {
        /// The SVG file.
        path: PathBuf,
        /// What is wrong with the data.
        what: String,
    },
}

/// One named line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points `(x, y)`, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// The axes of a line chart.
#[derive(Debug, Clone)]
pub struct Axes<'a> {
    /// Chart title.
    pub title: &'a str,
    /// Label of the x axis.
    pub x: &'a str,
    /// Label of the y axis.
    pub y: &'a str,
    /// Logarithmic y axis (every y must then be positive).
    pub log_y: bool,
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw { path: path.to_path_buf(), message: e.to_string() }
}

/// A tick label: plain for moderate magnitudes, scientific for very large or small ones.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(0.01..1e4).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The x and y ranges of `series` (y from 0 unless `log_y`), padded a little; errors on no points or a value that
/// cannot be drawn.
/// A closed interval `(low, high)` of an axis.
type Span = (f64, f64);

fn ranges(path: &Path, series: &[Series], log_y: bool) -> Result<(Span, Span), PlotError> {
    let bad = |what: String| PlotError::Data { path: path.to_path_buf(), what };
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    if points.is_empty() {
        return Err(bad("no points to plot".into()));
    }
    if let Some(p) = points.iter().find(|(x, y)| !x.is_finite() || !y.is_finite() || (log_y && *y <= 0.0)) {
        return Err(bad(format!("point {p:?} cannot be drawn{}", if log_y { " on a log axis" } else { "" })));
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| points.iter().map(pick).fold(init, f);
    let (x0, x1) = (fold(f64::min, f64::INFINITY, |p| p.0), fold(f64::max, f64::NEG_INFINITY, |p| p.0));
    let (y0, y1) = (fold(f64::min, f64::INFINITY, |p| p.1), fold(f64::max, f64::NEG_INFINITY, |p| p.1));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let (y0, y1) = if log_y { (y0 / 1.5, y1 * 1.5) } else { (y0.min(0.0), if y1 > 0.0 { y1 * 1.08 } else { 1.0 }) };
    Ok(((x0, x1), (y0, y1)))
}

/// Draws `series` as lines with point markers into the SVG file `path`.
pub fn line_chart(path: &Path, axes: &Axes<'_>, series: &[Series]) -> Result<(), PlotError> {
    let ((x0, x1), (y0, y1)) = ranges(path, series, axes.log_y)?;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(axes.title, ("sans-serif", 22)).margin(16).x_label_area_size(44).y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| draw_err(path, e))?;
            chart
                .configure_mesh()
                .x_desc(axes.x)
                .y_desc(axes.y)
                .y_label_formatter(&|v| tick(*v))
                .draw()
                .map_err(|e| draw_err(path, e))?;
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| draw_err(path, e))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                if s.points.len() <= 40 {
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| draw_err(path, e))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| draw_err(path, e))?;
        }};
    }
    if axes.log_y {
        draw!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()));
    } else {
        draw!(builder.build_cartesian_2d(x0..x1, y0..y1));
    }
    root.present().map_err(|e| draw_err(path, e))
}

/// One panel of a bar chart: a y-axis label and one value per bar.
#[derive(Debug, Clone)]
pub struct Bars {
    /// Label of the y axis (and the panel's title).
    pub y: String,
    /// One value per bar (finite, ≥ 0).
    pub values: Vec<f64>,
}

fn bar_panel(
    path: &Path,
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    labels: &[String],
    panel: &Bars,
    color: RGBColor,
    show_labels: bool,
) -> Result<(), PlotError> {
    let top = panel.values.iter().copied().fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.08 } else { 1.0 };
    let n = labels.len();
    // Bars run horizontally, the first label on top: bar i spans y ∈ [n − i − 1, n − i].
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.y, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(if show_labels { 170 } else { 8 })
        .build_cartesian_2d(0.0..top, 0.0..n as f64)
        .map_err(|e| draw_err(path, e))?;
    let label_at = |v: &f64| {
        let row = n as f64 - v - 0.5;
        let i = row.round();
        if show_labels && (row - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(2 * n + 1)
        .y_label_formatter(&label_at)
        .y_label_style(("sans-serif", 12))
        .x_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(|e| draw_err(path, e))?;
    chart
        .draw_series(panel.values.iter().enumerate().map(|(i, &v)| {
            let y = (n - i - 1) as f64;
            Rectangle::new([(0.0, y + 0.15), (v, y + 0.85)], color.filled())
        }))
        .map_err(|e| draw_err(path, e))?;
    Ok(())
}

/// Draws one horizontal-bar panel per entry of `panels`, side by side and sharing the bar `labels` (one bar per
/// label, the first on top), into the SVG file `path`.
pub fn bar_chart(path: &Path, title: &str, labels: &[String], panels: &[Bars]) -> Result<(), PlotError> {
    let bad = |what: String| PlotError::Data { path: path.to_path_buf(), what };
    if labels.is_empty() || panels.is_empty() {
        return Err(bad("no bars to plot".into()));
    }
    for p in panels {
        if p.values.len() != labels.len() {
            return Err(bad(format!("panel `{}` has {} values for {} bars", p.y, p.values.len(), labels.len())));
        }
        if let Some(v) = p.values.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(bad(format!("panel `{}` has the value {v}, not a finite number ≥ 0", p.y)));
        }
    }
    let height = (120 + 18 * labels.len() as u32).max(400);
    let width = 170 + 420 * panels.len() as u32;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| draw_err(path, e))?;
    let (first, rest) = root.split_horizontally(170 + 420);
    bar_panel(path, &first, labels, &panels[0], PALETTE[0], true)?;
    let areas = rest.split_evenly((1, (panels.len() - 1).max(1)));
    for (i, (panel, area)) in panels[1..].iter().zip(&areas).enumerate() {
        bar_panel(path, area, labels, panel, PALETTE[(i + 1) % PALETTE.len()], false)?;
    }
    root.present().map_err(|e| draw_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_writes_an_svg_with_every_series() {
        let dir = std::env::temp_dir().join(format!("cryptgpu-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines.svg");
        let series = vec![
            Series { name: "alpha series".into(), points: vec![(10.0, 1e-2), (20.0, 1e-5)] },
            Series { name: "beta series".into(), points: vec![(10.0, 3e-2), (20.0, 2e-5)] },
        ];
        line_chart(&path, &Axes { title: "error vs t", x: "t", y: "error", log_y: true }, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("alpha series") && svg.contains("beta series") && svg.contains("error vs t"));
        let bad = vec![Series { name: "zero".into(), points: vec![(1.0, 0.0)] }];
        let e = line_chart(&path, &Axes { title: "t", x: "x", y: "y", log_y: true }, &bad).unwrap_err();
        assert!(e.to_string().contains("log axis"), "{e}");
        let labels = vec!["conv1".to_string(), "relu1".to_string()];
        let panels =
            vec![Bars { y: "ms".into(), values: vec![1.0, 2.0] }, Bars { y: "MB".into(), values: vec![3.0, 0.5] }];
        bar_chart(&dir.join("bars.svg"), "per layer", &labels, &panels).unwrap();
        let svg = std::fs::read_to_string(dir.join("bars.svg")).unwrap();
        assert!(svg.contains("conv1") && svg.contains("relu1") && svg.matches("<rect").count() >= 4);
        let short = vec![Bars { y: "ms".into(), values: vec![1.0] }];
        assert!(bar_chart(&dir.join("bad.svg"), "x", &labels, &short).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
