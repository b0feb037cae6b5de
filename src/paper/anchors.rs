//! The anchors' published figures (`../shared/ANCHORS.md`, Piranha's head-to-head table: inference at batch 1,
//! training one iteration) that Table 4 sets our measured communication beside, and the ratio to the lowest.

/// The published systems, in the order of the table's columns.
pub const SYSTEMS: [&str; 3] = ["Falcon", "CryptGPU", "Piranha"];

/// One workload's published total communication over all parties, in bytes, per system of [`SYSTEMS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// Model name as the harness labels it (`LeNet`, `AlexNet`, `VGG-16`).
    pub model: &'static str,
    /// Whether the row is a training iteration (else inference).
    pub training: bool,
    /// Batch size of the published figure.
    pub batch: usize,
    /// Bytes over all parties: Falcon, CryptGPU, Piranha.
    pub bytes: [f64; 3],
}

const MB: f64 = 1e6;
const GB: f64 = 1e9;

/// ANCHORS.md, "Head-to-head": communication only (times are of other hardware).
pub const PUBLISHED: [Published; 6] = [
    Published { model: "LeNet", training: false, batch: 1, bytes: [2.29 * MB, 3.00 * MB, 2.49 * MB] },
    Published { model: "AlexNet", training: false, batch: 1, bytes: [4.02 * MB, 2.43 * MB, 1.96 * MB] },
    Published { model: "VGG-16", training: false, batch: 1, bytes: [40.05 * MB, 56.2 * MB, 88.39 * MB] },
    Published { model: "LeNet", training: true, batch: 128, bytes: [0.346 * GB, 1.14 * GB, 0.417 * GB] },
    Published { model: "AlexNet", training: true, batch: 128, bytes: [0.621 * GB, 1.37 * GB, 0.581 * GB] },
    Published { model: "VGG-16", training: true, batch: 32, bytes: [1.78 * GB, 7.55 * GB, 4.261 * GB] },
];

/// The published figures of `model` (training or inference) at `batch`, if any.
pub fn published(model: &str, training: bool, batch: usize) -> Option<&'static Published> {
    PUBLISHED.iter().find(|p| p.model == model && p.training == training && p.batch == batch)
}

impl Published {
    /// The lowest published figure and the system that has it.
    pub fn lowest(&self) -> (&'static str, f64) {
        let i = (0..3).fold(0, |b, i| if self.bytes[i] < self.bytes[b] { i } else { b });
        (SYSTEMS[i], self.bytes[i])
    }

    /// Our bytes over the lowest published figure (> 1: we send more).
    pub fn ratio_to_lowest(&self, ours: f64) -> f64 {
        ours / self.lowest().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_to_the_lowest_published_figure() {
        let lenet = published("LeNet", false, 1).unwrap();
        assert_eq!(lenet.lowest(), ("Falcon", 2.29e6));
        assert!((lenet.ratio_to_lowest(2.74e6) - 2.74 / 2.29).abs() < 1e-12);
        let alex = published("AlexNet", true, 128).unwrap();
        assert_eq!(alex.lowest().0, "Piranha");
        assert!((alex.ratio_to_lowest(1.162e9) - 2.0).abs() < 1e-12);
        assert_eq!(published("VGG-16", false, 1).unwrap().lowest().0, "Falcon");
        assert!(published("LeNet", false, 64).is_none());
        assert!(published("VGG-16", true, 32).is_some() && published("VGG-16", true, 128).is_none());
    }
}
