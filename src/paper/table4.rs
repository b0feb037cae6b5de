//! Table 4 of the CryptGPU paper on this machine: LeNet, AlexNet and VGG-16 private inference at batch 1 and 64
//! and one training iteration at batch 128 / 128 / 32 — time beside the plaintext f64 model in the same run, rounds,
//! bytes over all parties — next to Falcon's, CryptGPU's and Piranha's published bytes ([`super::anchors`]), and
//! the layer kinds that send the most per workload (input for the next optimisation).

use super::anchors::{published, SYSTEMS};
use super::measure::{Kind, Lab, Net};
use super::table::{Table, NOT_APPLICABLE};
use super::{mb, secs, Budget, Experiment, Options, PaperError, Section};
use crate::deployment::ModelName;
use crate::runtime::executor::LayerStats;
use std::collections::BTreeMap;

/// One row: the model, inference or training, the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// The model (average pooling, as CryptGPU's).
    pub net: Net,
    /// A training iteration (else an inference).
    pub training: bool,
    /// Samples.
    pub batch: usize,
}

impl Workload {
    fn label(&self) -> String {
        format!("{} {}", self.net.name(), if self.training { "training" } else { "inference" })
    }
}

/// The rows, in the order they are measured (cheap first); `quick`: LeNet only, small batches.
pub fn workloads(quick: bool) -> Vec<Workload> {
    let w = |m, training, batch| Workload { net: Net::avg(m), training, batch };
    use ModelName::{Alexnet, Lenet, Vgg16};
    if quick {
        return vec![w(Lenet, false, 1), w(Lenet, false, 2), w(Lenet, true, 4)];
    }
    vec![
        w(Lenet, false, 1),
        w(Alexnet, false, 1),
        w(Vgg16, false, 1),
        w(Lenet, false, 64),
        w(Alexnet, false, 64),
        w(Lenet, true, 128),
        w(Vgg16, false, 64),
        w(Alexnet, true, 128),
        w(Vgg16, true, 32),
    ]
}

/// Bytes over all parties per layer kind (training: `<kind> backward` for the backward phases), largest first.
pub fn contributors(steps: &[LayerStats]) -> Vec<(String, u64)> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for s in steps {
        let key = if s.name.ends_with(".backward") { format!("{} backward", s.kind) } else { s.kind.to_string() };
        *by.entry(key).or_default() += s.bytes();
    }
    let mut v: Vec<(String, u64)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

struct Measured {
    w: Workload,
    secure: std::time::Duration,
    plaintext: std::time::Duration,
    rounds: u64,
    bytes: u64,
    steps: Vec<LayerStats>,
}

/// Runs Table 4 within `budget`.
pub fn run(lab: &mut Lab, opts: &Options, budget: &Budget) -> Result<Section, PaperError> {
    let mut section = Section::new(
        Experiment::Table4,
        "Table 4: private inference and training vs plaintext, communication vs the anchors",
        "Random Kaiming weights, inputs uniform in [-1, 1], t = 20, exact truncation, three parties in one process. \
         Inference: the model already shared, as in the anchors' figures (sharing the input, every layer, \
         revealing the logits; sharing the model once costs the bytes in the note); \
         training: one iteration (sharing the batch, forward, backward, SGD) with the model already shared. \
         Plaintext: the f64 reference of the same model (`cryptgpu_dsl::reference`) in the same run. Bytes: sent by \
         all parties together. Published figures (ANCHORS.md) are communication only: their times are other \
         hardware. Published figures exist for inference at batch 1 and the training rows."
            .into(),
    );
    let mut done = Vec::new();
    let mut model_bytes: Vec<(Net, u64)> = Vec::new();
    for w in workloads(opts.quick) {
        let kind = if w.training { Kind::Train } else { Kind::Infer };
        let what = format!("{}, batch {}", w.label(), w.batch);
        let est = lab.estimate(kind, w.net, w.batch, 20)?;
        if let Err(note) = budget.admit(&what, est) {
            section.notes.push(note);
            continue;
        }
        super::status(&format!("table4: {what} (estimated {:.1} s)", est.as_secs_f64()));
        let m = if w.training {
            let Some(r) = super::or_refused(&mut section, &what, lab.train_step(w.net, w.batch))? else { continue };
            Measured { w, secure: r.secure, plaintext: r.plaintext, rounds: r.rounds, bytes: r.bytes, steps: r.phases }
        } else {
            let Some(r) = super::or_refused(&mut section, &what, lab.infer(w.net, w.batch, 20))? else { continue };
            if !model_bytes.iter().any(|(n, _)| *n == w.net) {
                model_bytes.push((w.net, r.model_bytes));
            }
            Measured { w, secure: r.secure, plaintext: r.plaintext, rounds: r.rounds, bytes: r.bytes, steps: r.layers }
        };
        done.push(m);
    }
    let mut table = Table::new(
        "table4",
        "Measured here beside the published communication",
        &[
            "workload",
            "batch",
            "private s",
            "plaintext s",
            "private / plaintext",
            "rounds",
            "MB sent (all parties)",
            "Falcon MB",
            "CryptGPU MB",
            "Piranha MB",
            "ours / lowest published",
        ],
    );
    let order = workloads(opts.quick);
    done.sort_by_key(|m| {
        let w = m.w;
        (w.training, order.iter().position(|o| o.net == w.net && !o.training).unwrap_or(0), w.batch)
    });
    let mut tops = Table::new(
        "table4_contributors",
        "Largest contributors to the bytes sent (all parties), by layer kind",
        &["workload", "batch", "MB total", "largest", "second", "third"],
    );
    for m in &done {
        let w = m.w;
        let pubd = published(w.net.name(), w.training, w.batch);
        let mut row = vec![
            w.label(),
            w.batch.to_string(),
            secs(m.secure),
            secs(m.plaintext),
            format!("{:.0}×", m.secure.as_secs_f64() / m.plaintext.as_secs_f64().max(1e-9)),
            m.rounds.to_string(),
            mb(m.bytes as f64),
        ];
        match pubd {
            Some(p) => {
                row.extend(p.bytes.iter().map(|&b| mb(b)));
                let (sys, _) = p.lowest();
                row.push(format!("{:.2}× ({sys})", p.ratio_to_lowest(m.bytes as f64)));
            }
            None => row.extend(std::iter::repeat_n(NOT_APPLICABLE.to_string(), SYSTEMS.len() + 1)),
        }
        table.push(row);
        let c = contributors(&m.steps);
        let cell = |i: usize| {
            c.get(i).map_or(NOT_APPLICABLE.to_string(), |(k, b)| {
                format!("{k}: {} MB ({:.0}%)", mb(*b as f64), 100.0 * *b as f64 / m.bytes.max(1) as f64)
            })
        };
        tops.push(vec![w.label(), w.batch.to_string(), mb(m.bytes as f64), cell(0), cell(1), cell(2)]);
    }
    section.tables.push(table);
    section.tables.push(tops);
    section.notes.push(
        "Per-layer-kind bytes count the layers' own messages; sharing the input (inference) or the batch \
         (training) and revealing make up the rest of the total."
            .into(),
    );
    for (net, bytes) in model_bytes {
        section.notes.push(format!(
            "sharing {}'s weights once: {} MB (all parties), not in the table",
            net.name(),
            mb(bytes as f64)
        ));
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PartyStats, Stats};
    use std::time::Duration;

    #[test]
    fn contributors_group_by_kind_and_direction() {
        let st = |name: &str, kind: &'static str, b: u64| LayerStats {
            name: name.into(),
            kind,
            time: Duration::ZERO,
            stats: PartyStats([
                Stats { rounds: 1, bytes_sent: b, messages: 1, ..Stats::default() },
                Stats::default(),
                Stats::default(),
            ]),
        };
        let steps = [st("a", "ReLU", 5), st("b", "ReLU", 7), st("b.backward", "ReLU", 3), st("c", "Conv2d", 10)];
        assert_eq!(
            contributors(&steps),
            vec![("ReLU".to_string(), 12), ("Conv2d".to_string(), 10), ("ReLU backward".to_string(), 3)]
        );
    }
}
