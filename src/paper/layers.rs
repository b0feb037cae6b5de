//! Per-layer time and bytes of one model's private inference (VGG-16 at batch 1; LeNet with `--quick`): a table
//! and a bar plot of both, from the executor's per-layer statistics ([`crate::runtime::executor::LayerStats`]).

use super::measure::{Kind, Lab, Net};
use super::table::Table;
use super::{mb, Budget, Experiment, Options, PaperError, Section};
use crate::deployment::ModelName;
use crate::plots::{bar_chart, Bars};

/// Runs the per-layer experiment within `budget`.
pub fn run(lab: &mut Lab, opts: &Options, budget: &Budget) -> Result<Section, PaperError> {
    let net = Net::avg(if opts.quick { ModelName::Lenet } else { ModelName::Vgg16 });
    let mut section = Section::new(
        Experiment::Layers,
        &format!("Per-layer cost of {} private inference, batch 1", net.name()),
        "Every layer's wall time (the slowest party), rounds and bytes sent by all parties, t = 20, random Kaiming \
         weights and input; setup phases (sharing the weights and the input, revealing the logits) are left out."
            .into(),
    );
    let est = lab.estimate(Kind::Infer, net, 1, 20)?;
    if let Err(note) = budget.admit(&format!("{} inference, batch 1", net.name()), est) {
        section.notes.push(note);
        return Ok(section);
    }
    let what = format!("{} inference, batch 1", net.name());
    let Some(r) = super::or_refused(&mut section, &what, lab.infer(net, 1, 20))? else { return Ok(section) };
    let mut table = Table::new(
        "layers",
        &format!("{} layers", net.name()),
        &["layer", "kind", "ms", "rounds", "MB sent (all parties)"],
    );
    for l in &r.layers {
        table.push(vec![
            l.name.clone(),
            l.kind.into(),
            format!("{:.2}", l.time.as_secs_f64() * 1e3),
            l.rounds().to_string(),
            mb(l.bytes() as f64),
        ]);
    }
    let labels: Vec<String> = r.layers.iter().map(|l| format!("{} ({})", l.name, l.kind)).collect();
    let panels = vec![
        Bars { y: "time (ms)".into(), values: r.layers.iter().map(|l| l.time.as_secs_f64() * 1e3).collect() },
        Bars { y: "MB sent (all parties)".into(), values: r.layers.iter().map(|l| l.bytes() as f64 / 1e6).collect() },
    ];
    let path = opts.out.join("layers.svg");
    bar_chart(&path, &format!("{} private inference, batch 1: per-layer cost", net.name()), &labels, &panels)?;
    section.plots.push(path);
    section.tables.push(table);
    Ok(section)
}
