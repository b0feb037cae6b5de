//! Fig. 4 / Table VII of the CryptGPU paper on this machine: LeNet trained privately and in plaintext from the same
//! initialisation and batches on MNIST and Fashion-MNIST — loss and test-accuracy curves of both (a new short run,
//! [`super::curves`]) and the recorded one-epoch loss curve (`results/lenet_mnist_loss_epoch.csv`) as plots.

use super::curves::{Curve, CurveSpec};
use super::measure::{Kind, Lab, Net};
use super::table::Table;
use super::{Budget, Experiment, Options, PaperError, Section};
use crate::data::Source;
use crate::deployment::ModelName;
use crate::dsl::models::Pooling;
use crate::plots::{line_chart, Axes, Series};
use std::path::Path;
use std::time::Duration;

/// The curves' specification: `quick` is a few steps of 8 images.
pub fn spec(source: Source, pooling: Pooling, quick: bool) -> CurveSpec {
    if quick {
        CurveSpec { source, pooling, steps: 2, batch: 8, eval_every: 1, eval_images: 100 }
    } else {
        CurveSpec { source, pooling, steps: 30, batch: 128, eval_every: 5, eval_images: 1000 }
    }
}

/// The fewest steps a curve is worth plotting with.
const MIN_STEPS: usize = 3;

/// The loss revealed every step makes a curve step a little dearer than a bare training iteration.
const LOSS_OVERHEAD: f64 = 1.15;

/// Estimated wall time of one curve step, from the lab's measurements.
pub fn step_estimate(lab: &mut Lab, spec: &CurveSpec) -> Result<Duration, PaperError> {
    let net = Net { model: ModelName::Lenet, pooling: spec.pooling };
    Ok(lab.cost(Kind::Train, net, spec.batch)?.mul_f64(LOSS_OVERHEAD))
}

/// Runs `spec`, or as many of its steps as fit `share` seconds (at least [`MIN_STEPS`]); the note when it was cut
/// or skipped.
pub fn fitted(
    lab: &mut Lab,
    opts: &Options,
    budget: &Budget,
    mut spec: CurveSpec,
    share: f64,
    what: &str,
) -> Result<(Option<Curve>, Option<String>), PaperError> {
    let per = step_estimate(lab, &spec)?.as_secs_f64().max(1e-3);
    let fits = if share.is_finite() { (share / per).floor() as usize } else { spec.steps };
    let mut note = None;
    if fits < spec.steps {
        if fits < MIN_STEPS {
            let est = Duration::from_secs_f64(per * spec.steps as f64);
            return Ok((None, budget.admit(what, est).err()));
        }
        note = Some(format!(
            "{what}: {fits} of {} steps fit the budget (estimated {per:.1} s per step); `--only {} --budget-s {}={:.0}` runs all",
            spec.steps,
            budget_name(budget),
            budget_name(budget),
            (per * spec.steps as f64 * 1.5 / 10.0).ceil() * 10.0
        ));
        spec.steps = fits;
    }
    super::status(&format!("{what}: {} steps of {} (estimated {per:.1} s per step)", spec.steps, spec.batch));
    Ok((Some(lab.curve(spec, &opts.data)?), note))
}

fn budget_name(b: &Budget) -> &'static str {
    b.experiment().name()
}

/// Reads a recorded `step,private,plaintext` loss CSV.
pub fn read_loss_csv(path: &Path) -> Result<Vec<(f64, f64, f64)>, PaperError> {
    let text = std::fs::read_to_string(path).map_err(|source| PaperError::Io { path: path.into(), source })?;
    let bad = |line: usize| PaperError::Format {
        path: path.into(),
        what: format!("line {line}: expected `step,private,plaintext` with three numbers"),
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let v: Vec<f64> =
            line.split(',').map(|c| c.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad(i + 1))?;
        match v.as_slice() {
            [s, p, q] => rows.push((*s, *p, *q)),
            _ => return Err(bad(i + 1)),
        }
    }
    if rows.is_empty() {
        return Err(PaperError::Format { path: path.into(), what: "no rows after the header".into() });
    }
    Ok(rows)
}

/// The row of Table VII for a curve.
pub fn summary_row(c: &Curve) -> Vec<String> {
    let n = c.private_losses.len().max(1);
    let last = c.accuracy.last().copied().unwrap_or((0, f64::NAN, f64::NAN));
    vec![
        c.spec.source.to_string(),
        format!("{:?}", c.spec.pooling).to_lowercase(),
        format!("{} × {}", c.private_losses.len(), c.spec.batch),
        format!("{:.4}", c.private_losses.last().copied().unwrap_or(f64::NAN)),
        format!("{:.4}", c.plain_losses.last().copied().unwrap_or(f64::NAN)),
        format!("{:.2}%", 100.0 * last.1),
        format!("{:.2}%", 100.0 * last.2),
        format!("{:+.2}", 100.0 * (last.1 - last.2)),
        format!("{:.2}", c.wall.as_secs_f64() / n as f64),
        format!("{:.0}", c.rounds as f64 / n as f64),
        format!("{:.3}", c.bytes as f64 / n as f64 / 1e9),
    ]
}

/// Columns of [`summary_row`].
pub const SUMMARY_COLUMNS: [&str; 11] = [
    "dataset",
    "pooling",
    "steps × batch",
    "last private loss",
    "last plaintext loss",
    "private test accuracy",
    "plaintext test accuracy",
    "difference (pp)",
    "s per step",
    "rounds per step",
    "GB per step (all parties)",
];

/// Runs Fig. 4 / Table VII within `budget`.
pub fn run(lab: &mut Lab, opts: &Options, budget: &Budget) -> Result<Section, PaperError> {
    let first = spec(Source::Mnist, Pooling::Avg, opts.quick);
    let mut section = Section::new(
        Experiment::Fig4,
        "Fig. 4 / Table VII: private vs plaintext training of LeNet",
        format!(
            "LeNet (average pooling), same Kaiming initialisation (seed 1) and shuffled batches privately and in \
             plaintext f64, SGD lr {} momentum {}, batch {}; both models evaluated on the first {} test images every \
             {} steps (the private parameters revealed to the model owner for it). The paper: LeNet/MNIST 5 epochs, \
             93.97% private vs 93.34% plaintext.",
            super::curves::LR,
            super::curves::MOMENTUM,
            first.batch,
            first.eval_images,
            first.eval_every
        ),
    );
    let mut table = Table::new("table7", "Private vs plaintext training", &SUMMARY_COLUMNS);
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let sources = [Source::Mnist, Source::FashionMnist];
    for (i, source) in sources.into_iter().enumerate() {
        let share = budget.left() / (sources.len() - i) as f64;
        let what = format!("LeNet training curves on {source}");
        let (curve, note) = fitted(lab, opts, budget, spec(source, Pooling::Avg, opts.quick), share, &what)?;
        section.notes.extend(note);
        let Some(c) = curve else { continue };
        table.push(summary_row(&c));
        let steps = |v: &[f64]| v.iter().enumerate().map(|(i, &l)| ((i + 1) as f64, l)).collect::<Vec<_>>();
        losses.push(Series { name: format!("{source} private"), points: steps(&c.private_losses) });
        losses.push(Series { name: format!("{source} plaintext"), points: steps(&c.plain_losses) });
        let acc =
            |pick: fn(&(usize, f64, f64)) -> f64| c.accuracy.iter().map(|a| (a.0 as f64, 100.0 * pick(a))).collect();
        accs.push(Series { name: format!("{source} private"), points: acc(|a| a.1) });
        accs.push(Series { name: format!("{source} plaintext"), points: acc(|a| a.2) });
    }
    if !losses.is_empty() {
        let path = opts.out.join("fig4_loss.svg");
        let axes = Axes { title: "LeNet training loss, private vs plaintext", x: "step", y: "loss", log_y: false };
        line_chart(&path, &axes, &losses)?;
        section.plots.push(path);
        let path = opts.out.join("fig4_accuracy.svg");
        let axes = Axes {
            title: "LeNet test accuracy, private vs plaintext",
            x: "step",
            y: "test accuracy (%)",
            log_y: false,
        };
        line_chart(&path, &axes, &accs)?;
        section.plots.push(path);
    }
    section.tables.push(table);
    if opts.recorded_loss.exists() {
        let rows = read_loss_csv(&opts.recorded_loss)?;
        let series = vec![
            Series { name: "private".into(), points: rows.iter().map(|r| (r.0, r.1)).collect() },
            Series { name: "plaintext".into(), points: rows.iter().map(|r| (r.0, r.2)).collect() },
        ];
        let path = opts.out.join("fig4_epoch_loss.svg");
        let title = "LeNet on MNIST, one epoch at batch 128 (recorded run)";
        line_chart(&path, &Axes { title, x: "step", y: "loss", log_y: false }, &series)?;
        section.plots.push(path);
        section.notes.push(format!(
            "fig4_epoch_loss.svg plots the recorded one-epoch run ({}, {} steps; BENCHMARKS.md \"Private training of \
             LeNet on MNIST: one epoch\" has its accuracy).",
            opts.recorded_loss.display(),
            rows.len()
        ));
    } else {
        section
            .notes
            .push(format!("no recorded loss curve at {}: nothing to plot for it", opts.recorded_loss.display()));
    }
    Ok(section)
}
