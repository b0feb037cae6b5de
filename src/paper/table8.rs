//! Table VIII of the CryptGPU paper on this machine: average vs max pooling — time, rounds and bytes of AlexNet and
//! VGG-16 private inference and one training iteration with either pooling, and the test accuracy of LeNet trained
//! privately with either pooling on Fashion-MNIST (the CIFAR-10 accuracies of the paper need hours of private
//! training here).

use super::curves::{Curve, CurveSpec};
use super::fig4::{fitted, spec, summary_row, SUMMARY_COLUMNS};
use super::measure::{Kind, Lab, Net};
use super::table::Table;
use super::{mb, secs, Budget, Experiment, Options, PaperError, Section};
use crate::data::Source;
use crate::deployment::ModelName;
use crate::dsl::models::Pooling;

/// (model, training, batch) of the cost rows, cheap first.
fn rows(quick: bool) -> Vec<(ModelName, bool, usize)> {
    if quick {
        return vec![(ModelName::Lenet, false, 1), (ModelName::Lenet, true, 4)];
    }
    vec![
        (ModelName::Alexnet, false, 1),
        (ModelName::Vgg16, false, 1),
        (ModelName::Alexnet, true, 128),
        (ModelName::Vgg16, true, 32),
    ]
}

struct Cost {
    secs: std::time::Duration,
    rounds: u64,
    bytes: u64,
}

fn measure(lab: &mut Lab, net: Net, training: bool, batch: usize) -> Result<Cost, PaperError> {
    Ok(if training {
        let r = lab.train_step(net, batch)?;
        Cost { secs: r.secure, rounds: r.rounds, bytes: r.bytes }
    } else {
        let r = lab.infer(net, batch, 20)?;
        Cost { secs: r.secure, rounds: r.rounds, bytes: r.bytes }
    })
}

/// Runs Table VIII within `budget`.
pub fn run(lab: &mut Lab, opts: &Options, budget: &Budget) -> Result<Section, PaperError> {
    let mut section = Section::new(
        Experiment::Table8,
        "Table VIII: average vs max pooling",
        "Same models and measurement as Table 4 (random Kaiming weights, random inputs, t = 20), with every pooling \
         layer average or max (same windows). The paper's CIFAR-10 accuracies: AlexNet 76.15% with max pooling, \
         73.35% with average pooling; VGG-16 82.37% max, 83.17% average. Here the accuracy comparison is LeNet \
         trained privately on Fashion-MNIST with either pooling (same initialisation, batches and steps)."
            .into(),
    );
    let mut table = Table::new(
        "table8",
        "Cost of average vs max pooling",
        &[
            "model",
            "workload",
            "batch",
            "avg s",
            "max s",
            "max / avg time",
            "avg rounds",
            "max rounds",
            "avg MB",
            "max MB",
            "max / avg bytes",
        ],
    );
    for (model, training, batch) in rows(opts.quick) {
        let kind = if training { Kind::Train } else { Kind::Infer };
        let mut costs = Vec::new();
        for net in [Net::avg(model), Net::max(model)] {
            let what = format!("{} {}, batch {batch}", net.label(), if training { "training" } else { "inference" });
            let est = lab.estimate(kind, net, batch, 20)?;
            if let Err(note) = budget.admit(&what, est) {
                section.notes.push(note);
                break;
            }
            super::status(&format!("table8: {what} (estimated {:.1} s)", est.as_secs_f64()));
            match super::or_refused(&mut section, &what, measure(lab, net, training, batch))? {
                Some(c) => costs.push(c),
                None => break,
            }
        }
        let [a, m] = costs.as_slice() else { continue };
        table.push(vec![
            Net::avg(model).name().into(),
            if training { "training iteration" } else { "inference" }.into(),
            batch.to_string(),
            secs(a.secs),
            secs(m.secs),
            format!("{:.2}×", m.secs.as_secs_f64() / a.secs.as_secs_f64().max(1e-9)),
            a.rounds.to_string(),
            m.rounds.to_string(),
            mb(a.bytes as f64),
            mb(m.bytes as f64),
            format!("{:.2}×", m.bytes as f64 / a.bytes.max(1) as f64),
        ]);
    }
    section.tables.push(table);

    let mut acc = Table::new("table8_accuracy", "LeNet on Fashion-MNIST, average vs max pooling", &SUMMARY_COLUMNS);
    // The average-pooling curve of Fig. 4 when it ran; the max-pooling one then takes the same steps.
    let avg_spec = spec(Source::FashionMnist, Pooling::Avg, opts.quick);
    let cached = lab
        .cached_curve(|s| s.source == avg_spec.source && s.pooling == Pooling::Avg && s.batch == avg_spec.batch)
        .cloned();
    let mut curves: Vec<Curve> = Vec::new();
    let avg = match cached {
        Some(c) => Some(c),
        None => {
            // Without Fig. 4's curve (e.g. `--only table8`): a shorter run of both variants.
            let short = if opts.quick { avg_spec } else { CurveSpec { steps: 20, batch: 64, ..avg_spec } };
            let what = "LeNet (average pooling) on Fashion-MNIST";
            let (c, note) = fitted(lab, opts, budget, short, budget.left() / 2.0, what)?;
            section.notes.extend(note);
            c
        }
    };
    if let Some(a) = avg {
        let max_spec = CurveSpec { pooling: Pooling::Max, steps: a.private_losses.len(), ..a.spec };
        let (c, note) = fitted(lab, opts, budget, max_spec, budget.left(), "LeNet (max pooling) on Fashion-MNIST")?;
        section.notes.extend(note);
        if let Some(m) = c {
            if m.private_losses.len() == a.private_losses.len() {
                curves.push(a);
                curves.push(m);
            } else {
                section
                    .notes
                    .push("the max-pooling run was cut shorter than the average-pooling one: not compared".into());
            }
        }
    }
    for c in &curves {
        acc.push(summary_row(c));
    }
    section.tables.push(acc);
    Ok(section)
}
