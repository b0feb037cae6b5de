//! Table VI of the CryptGPU paper on this machine: ResNet-50/101/152 private inference at t = 20 on random inputs
//! of ImageNet shape with random Kaiming weights — mean relative error of the logits against the plaintext f64
//! model, Top-1 and Top-5 agreement, rounds, bytes, time — beside the paper's published relative errors.

use super::measure::{Kind, Lab, Net};
use super::table::Table;
use super::{secs, Budget, Experiment, Options, PaperError, Section};
use crate::deployment::ModelName;

/// The paper's mean relative error of the logits at t = 20 on ImageNet (ANCHORS.md, "Accuracy").
pub const PAPER_REL_ERR: [(ModelName, f64); 3] =
    [(ModelName::Resnet50, 1.5e-4), (ModelName::Resnet101, 2.0e-4), (ModelName::Resnet152, 2.1e-4)];

/// Samples per model.
pub const BATCH: usize = 2;

/// Runs Table VI within `budget` (`quick`: ResNet-18, one sample).
pub fn run(lab: &mut Lab, opts: &Options, budget: &Budget) -> Result<Section, PaperError> {
    let (models, batch) = if opts.quick {
        (vec![ModelName::Resnet18], 1)
    } else {
        (vec![ModelName::Resnet50, ModelName::Resnet101, ModelName::Resnet152], BATCH)
    };
    let mut section = Section::new(
        Experiment::Table6,
        "Table VI: ResNet private inference at t = 20",
        format!(
            "Random Kaiming weights (seed 2021) with every batch norm's running statistics set from a training-mode \
             pass on 2 other random inputs (as trained statistics would be: with the default ones, activations double \
             block after block and ResNet-101 exceeds the ring at t = 20), {batch} random input(s) of ImageNet shape \
             [3, 224, 224] uniform in [-1, 1], average-pool stem (the paper's), batch norms folded into their \
             convolutions, exact \
             truncation; rounds, bytes and time with the model already shared (sharing the weights costs once per model). \
             Relative error ‖private − plaintext‖₂ / ‖plaintext‖₂ per sample, averaged; Top-5: the same \
             five classes as plaintext. The paper's figures are on 100 real ImageNet images with trained weights."
        ),
    );
    let mut table = Table::new(
        "table6",
        "ResNets at t = 20",
        &[
            "model",
            "samples",
            "mean relative error of the logits",
            "paper",
            "same Top-1",
            "same Top-5",
            "rounds",
            "GB sent (all parties)",
            "private s",
            "plaintext s",
        ],
    );
    for m in models {
        let net = Net::avg(m);
        let est = lab.estimate(Kind::Infer, net, batch, 20)?;
        if let Err(note) = budget.admit(&format!("{}, batch {batch}", net.name()), est) {
            section.notes.push(note);
            continue;
        }
        super::status(&format!("table6: {} batch {batch} (estimated {:.0} s)", net.name(), est.as_secs_f64()));
        let what = format!("{}, batch {batch}", net.name());
        let Some(r) = super::or_refused(&mut section, &what, lab.infer(net, batch, 20))? else { continue };
        let paper = PAPER_REL_ERR.iter().find(|p| p.0 == m).map_or("–".into(), |p| format!("{:.3}%", p.1 * 100.0));
        table.push(vec![
            net.name().into(),
            batch.to_string(),
            format!("{:.2e} ({:.4}%)", r.rel_err, r.rel_err * 100.0),
            paper,
            format!("{}/{batch}", r.top1),
            format!("{}/{batch}", r.top5),
            r.rounds.to_string(),
            format!("{:.3}", r.bytes as f64 / 1e9),
            secs(r.secure),
            secs(r.plaintext),
        ]);
    }
    section.tables.push(table);
    Ok(section)
}
