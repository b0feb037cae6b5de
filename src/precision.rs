//! `cryptgpu precision`: which fixed-point precision `t` a model's private inference can use, from the range
//! analysis of [`cryptgpu_dsl::range`] — per layer the guaranteed interval bound of the largest ring value, and
//! optionally the calibrated bound (largest magnitude over sample inputs × margin) and the measured largest value
//! beside it, then the largest safe `t` of each and the predicted failure probability per inference in either
//! truncation mode (in the exact mode from the divisions by a non-power of two, which are probabilistic in every
//! mode; the executor refuses a run above its threshold in both modes).

use crate::dsl::range::{self, InputBound, LayerRange, RangeReport};
use crate::dsl::{Graph, Params, Tensor as DslTensor};
use crate::lenet_mnist::JobError;
use std::fmt::Write;

/// An interval bound this many times above the calibrated one (or refusing every `t`) is reported as too loose.
pub const LOOSE_FACTOR: f64 = 1e3;

/// What [`analyse`] computed.
#[derive(Debug, Clone)]
pub struct Precision {
    /// Guaranteed interval bounds.
    pub interval: RangeReport,
    /// Largest magnitudes measured on the samples (margin 1), when calibrating.
    pub measured: Option<RangeReport>,
    /// The measured magnitudes × the margin, when calibrating.
    pub calibrated: Option<RangeReport>,
}

/// Interval analysis of `graph` with `params` for inputs within `bound`, and, when `samples` is given, the
/// measured and calibrated (× `margin`, a finite factor ≥ 1, checked even without samples) magnitudes on them. Batch
/// norm is folded as the executor does by default.
pub fn analyse(
    graph: &Graph,
    params: &Params,
    bound: &InputBound,
    samples: Option<&DslTensor>,
    margin: f64,
) -> Result<Precision, JobError> {
    range::check_margin(margin)?;
    let interval = range::intervals(graph, params, bound, true)?;
    let (measured, calibrated) = match samples {
        Some(s) => {
            let measured = range::calibrate(graph, params, s, 1.0, true)?;
            let calibrated = measured.with_margin(margin)?;
            (Some(measured), Some(calibrated))
        }
        None => (None, None),
    };
    Ok(Precision { interval, measured, calibrated })
}

fn log2(v: f64) -> String {
    if v <= 0.0 {
        "0".into()
    } else {
        format!("2^{:.1}", v.log2())
    }
}

fn safe_t(l: &LayerRange) -> String {
    (0..=range::MAX_FRAC_BITS).rev().find(|&t| l.safe_at(t)).map_or("none".into(), |t| t.to_string())
}

fn t_or_none(t: Option<u32>) -> String {
    t.map_or("none (not even t = 0)".into(), |t| t.to_string())
}

impl Precision {
    /// Whether the interval bounds are too loose to be useful: they allow no `t`, or (when calibrated) some layer's
    /// interval bound is more than [`LOOSE_FACTOR`] times its calibrated bound.
    pub fn loose(&self) -> bool {
        self.interval.largest_safe_t().is_none()
            || self
                .calibrated
                .as_ref()
                .is_some_and(|c| self.interval.looseness(c).iter().any(|(_, r)| *r > LOOSE_FACTOR))
    }

    /// The per-layer table and the summary at precision `t`, as Markdown.
    pub fn render(&self, t: u32) -> String {
        let mut s = String::new();
        let iv = &self.interval;
        let _ = writeln!(s, "{}: {} at t = {t}; limit 2^62 for every ring value\n", iv.model, iv.method);
        let cal = self.calibrated.as_ref().zip(self.measured.as_ref());
        if cal.is_some() {
            let _ = writeln!(
                s,
                "| layer | kind | rescale | interval bound | safe t | measured max | calibrated bound | safe t | interval / calibrated |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        } else {
            let _ = writeln!(s, "| layer | kind | rescale | interval bound | safe t |\n|---|---|---|---|---|");
        }
        for (i, l) in iv.layers.iter().enumerate() {
            let op = l.truncation.as_ref().map_or("-".to_string(), |tr| format!("{:?}", tr.op));
            let _ = write!(s, "| {} | {} | {op} | {} | {} |", l.name, l.kind, log2(l.ring_bound(t)), safe_t(l));
            if let Some((c, m)) = cal {
                let (cl, ml) = (&c.layers[i], &m.layers[i]);
                let ratio = l.ring_bound(t) / cl.ring_bound(t).max(f64::MIN_POSITIVE);
                let _ = write!(
                    s,
                    " {} | {} | {} | {:.1e}{} |",
                    log2(ml.ring_bound(t)),
                    log2(cl.ring_bound(t)),
                    safe_t(cl),
                    ratio,
                    if ratio > LOOSE_FACTOR { " (loose)" } else { "" }
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s);
        let summary = |s: &mut String, what: &str, r: &RangeReport| {
            let _ = writeln!(s, "{what} ({}):", r.method);
            let _ = writeln!(s, "  largest safe t: {}", t_or_none(r.largest_safe_t()));
            if let Some(top) = r.layers.iter().max_by(|a, b| a.ring_bound(t).total_cmp(&b.ring_bound(t))) {
                let _ =
                    writeln!(s, "  largest ring value at t = {t}: {} (layer `{}`)", log2(top.ring_bound(t)), top.name);
            }
            match r.first_unsafe(t) {
                Some((l, b)) => {
                    let _ = writeln!(
                        s,
                        "  UNSAFE at t = {t}: layer `{}` ({}) is the first to reach {} ≥ 2^62",
                        l.name,
                        l.kind,
                        log2(b)
                    );
                }
                None => {
                    let _ = writeln!(s, "  safe at t = {t}");
                }
            }
            let _ = writeln!(
                s,
                "  predicted failure probability per inference (one sample, union bound) at t = {t}: probabilistic mode {:.2e}, exact mode {:.2e} (divisions by a non-power of two stay probabilistic)",
                r.failure_probability(t, true, 1),
                r.failure_probability(t, false, 1)
            );
        };
        summary(&mut s, "interval analysis (guaranteed)", iv);
        if let Some((c, m)) = cal {
            summary(&mut s, "calibrated (not a guarantee)", c);
            let top = m.layers.iter().map(|l| l.ring_bound(t)).fold(0.0, f64::max);
            let _ = writeln!(s, "measured: largest ring value at t = {t} over the samples: {}", log2(top));
        }
        if self.loose() {
            let _ = writeln!(
                s,
                "\nthe interval bounds are too loose to be useful here ({}): worst-case intervals grow layer after layer far beyond what real inputs reach; {}",
                if iv.largest_safe_t().is_none() {
                    "they allow no t at all".to_string()
                } else {
                    format!("some layer's bound is over {LOOSE_FACTOR:.0e}× its calibrated bound")
                },
                if cal.is_some() {
                    "the calibrated bounds are the useful figure, but they hold only for inputs like the samples"
                } else {
                    "run with --calibrate N to compare with measured magnitudes"
                }
            );
        }
        s
    }
}
