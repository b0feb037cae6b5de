//! Fig. 3 of the CryptGPU paper on this machine: the mean relative error of the private logits against the
//! plaintext f64 model as the fixed-point precision t varies, for AlexNet (CIFAR-10 shape) and ResNet-50
//! (ImageNet shape), random Kaiming weights and inputs — a table and a log-scale plot.

use super::measure::{Kind, Lab, Net};
use super::table::Table;
use super::{Budget, Experiment, Options, PaperError, Section};
use crate::deployment::ModelName;
use crate::plots::{line_chart, Axes, Series};

/// (model, samples, precisions) of the full run.
fn sweeps(quick: bool) -> Vec<(Net, usize, Vec<u32>)> {
    if quick {
        return vec![(Net::avg(ModelName::Lenet), 2, vec![12, 20])];
    }
    vec![
        (Net::avg(ModelName::Alexnet), 8, vec![8, 10, 12, 13, 14, 15, 16, 18, 20]),
        (Net::avg(ModelName::Resnet50), 1, vec![10, 12, 14, 15, 16, 18, 20]),
    ]
}

/// Runs Fig. 3 within `budget`.
pub fn run(lab: &mut Lab, opts: &Options, budget: &Budget) -> Result<Section, PaperError> {
    let mut section = Section::new(
        Experiment::Fig3,
        "Fig. 3: relative error of the logits vs fractional bits t",
        "Random Kaiming weights (seed 2021; ResNet-50's batch-norm statistics set as in Table VI), inputs uniform in [-1, 1], exact truncation; mean over the samples of \
         ‖private − plaintext f64‖₂ / ‖plaintext‖₂. The paper: about 1% at 12–14 bits for AlexNet; ResNet-50 needs \
         at least 15 bits for < 1% and is about 5× worse than AlexNet at equal t."
            .into(),
    );
    let mut table = Table::new(
        "fig3",
        "Relative error by precision",
        &["model", "samples", "t", "mean relative error", "same argmax"],
    );
    let mut series = Vec::new();
    for (net, batch, ts) in sweeps(opts.quick) {
        let mut points = Vec::new();
        for t in ts {
            let est = lab.estimate(Kind::Infer, net, batch, t)?;
            if let Err(note) = budget.admit(&format!("{} at t = {t}", net.name()), est) {
                section.notes.push(note);
                continue;
            }
            super::status(&format!("fig3: {} t = {t}", net.name()));
            let what = format!("{} at t = {t}", net.name());
            let Some(r) = super::or_refused(&mut section, &what, lab.infer(net, batch, t))? else { continue };
            table.push(vec![
                net.name().into(),
                batch.to_string(),
                t.to_string(),
                format!("{:.3e} ({:.4}%)", r.rel_err, r.rel_err * 100.0),
                format!("{}/{batch}", r.top1),
            ]);
            points.push((t as f64, r.rel_err * 100.0));
        }
        if !points.is_empty() {
            series.push(Series { name: format!("{} ({batch} sample(s))", net.name()), points });
        }
    }
    if !series.is_empty() {
        let path = opts.out.join("fig3_error_vs_bits.svg");
        let axes = Axes {
            title: "Private vs plaintext logits: relative error by fractional bits",
            x: "fractional bits t",
            y: "mean relative error (%)",
            log_y: true,
        };
        line_chart(&path, &axes, &series)?;
        section.plots.push(path);
    }
    section.tables.push(table);
    Ok(section)
}
