//! Cross-layer fusion of an average pool into the product after it: which average pools hand their division to
//! the next convolution or linear layer. The private lowering (the runtime's `model` module) runs exactly this plan
//! and the [range analysis](crate::range) bounds exactly its values, so both read it from here.
//!
//! An average pool is a window sum (local on shares) and a division by the window area `a`. When `a = 2^e` and the
//! pool's output reaches a Conv2d or Linear layer through only ReLU, Flatten and Dropout layers (`relu(x/a) =
//! relu(x)/a`; flatten and dropout are the identity in inference), the pool keeps the sum and the product truncates
//! by `t + e` bits instead of `t`: `W·(Σx)/2^(t+e) = W·(Σx/a)/2^t`. The division's own truncation (its rounds and
//! rounding) disappears; the values in between are `a`× the unfused ones, which the range analysis accounts for.
//! A residual block is a barrier (its input feeds two branches).
//!
//! The plan of an inference ([`inference_fusions`]) also folds every batch norm whose output reaches a product
//! through shape-only layers (a batch norm after a ReLU, typically) into that product's weights and bias
//! ([`crate::fold::bn_input_folds`]): the batch norm costs nothing.

use crate::fold::{bn_input_folds, Folds};
use crate::graph::Graph;
use crate::layer::{BatchNorm2d, Layer, Node};
use std::collections::HashMap;

/// Which average pools fold their division into which product, and which batch norms fold into the product after
/// them: see the [module documentation](self).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusionPlan {
    /// Average pool name → `e = log2(area)`: the pool keeps the window sum.
    pub pools: HashMap<String, u32>,
    /// Conv2d/Linear name → (the fused pool's name, `e`): the product truncates by `t + e` bits.
    pub consumers: HashMap<String, (String, u32)>,
    /// Conv2d/Linear name → the batch norm on its input folded into its weights and bias
    /// ([`crate::fold::bn_input_folds`]); that batch norm is the identity in the run.
    pub batch_norms: Folds,
}

impl FusionPlan {
    /// No fusion.
    pub fn none() -> FusionPlan {
        FusionPlan::default()
    }

    /// The extra truncation bits of product `name` (0 when it takes over no pool's division).
    pub fn extra_bits(&self, name: &str) -> u32 {
        self.consumers.get(name).map_or(0, |(_, e)| *e)
    }

    /// `e` when average pool `name` keeps its window sum.
    pub fn pool_bits(&self, name: &str) -> Option<u32> {
        self.pools.get(name).copied()
    }

    /// The batch norm folded into the input of product `name`, if any.
    pub fn input_fold(&self, name: &str) -> Option<&(String, BatchNorm2d)> {
        self.batch_norms.get(name)
    }

    /// Whether batch norm `name` is folded into the product after it (so it is the identity in the run).
    pub fn folds_batch_norm(&self, name: &str) -> bool {
        self.batch_norms.values().any(|(bn, _)| bn == name)
    }

    /// Whether nothing is fused.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.batch_norms.is_empty()
    }
}

/// The fusions of an inference of `graph`: the average pools of [`avg_pool_fusions`] and, when
/// `fold_batch_norm`, the batch norms folded into the product after them ([`crate::fold::bn_input_folds`]).
pub fn inference_fusions(graph: &Graph, fold_batch_norm: bool) -> FusionPlan {
    let mut plan = avg_pool_fusions(graph);
    if fold_batch_norm {
        plan.batch_norms = bn_input_folds(graph);
    }
    plan
}

/// The average-pool fusions of `graph`: every AvgPool2d or GlobalAvgPool with a power-of-two area whose output
/// reaches a Conv2d or Linear layer through ReLU, Flatten and Dropout layers only, in execution order and outside
/// any residual join.
pub fn avg_pool_fusions(graph: &Graph) -> FusionPlan {
    let spatial: HashMap<&str, usize> = graph
        .layers()
        .iter()
        .map(|info| (info.name.as_str(), info.input.get(1..).map_or(0, |hw| hw.iter().product())))
        .collect();
    let mut plan = FusionPlan::default();
    for stream in &streams(graph) {
        for (i, &(name, layer)) in stream.iter().enumerate() {
            let area = match layer {
                Layer::AvgPool2d(p) => p.kernel.0 * p.kernel.1,
                Layer::GlobalAvgPool => spatial.get(name).copied().unwrap_or(0),
                _ => continue,
            };
            if !area.is_power_of_two() {
                continue;
            }
            let next = stream[i + 1..]
                .iter()
                .find(|(_, l)| !matches!(l, Layer::Relu | Layer::Flatten | Layer::Dropout { .. }));
            if let Some(&(consumer, Layer::Conv2d(_) | Layer::Linear(_))) = next {
                let e = area.trailing_zeros();
                plan.pools.insert(name.to_string(), e);
                plan.consumers.insert(consumer.to_string(), (name.to_string(), e));
            }
        }
    }
    plan
}

/// The node tree as straight runs of layers `(name, layer)` in execution order: a residual block ends the run
/// before it and each of its branches (and its post list) is a run of its own, so within a run every layer's output
/// feeds only the next layer.
pub(crate) fn streams(graph: &Graph) -> Vec<Vec<(&str, &Layer)>> {
    let mut streams = vec![Vec::new()];
    collect_streams(graph.nodes(), &mut streams);
    streams
}

/// Splits the node tree into straight runs of layers (see [`streams`]).
fn collect_streams<'a>(nodes: &'a [Node], streams: &mut Vec<Vec<(&'a str, &'a Layer)>>) {
    for node in nodes {
        match node {
            Node::Layer { name, layer } => {
                if let Some(run) = streams.last_mut() {
                    run.push((name.as_str(), layer));
                }
            }
            Node::Sequential { children, .. } => collect_streams(children, streams),
            Node::Residual { main, shortcut, post, .. } => {
                for list in [main, shortcut, post] {
                    streams.push(Vec::new());
                    collect_streams(list, streams);
                }
                streams.push(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{alexnet_cifar10, lenet, resnet18, vgg16_cifar10, Pooling, Stem};

    #[test]
    fn lenet_pools_fold_into_the_next_products() {
        let plan = avg_pool_fusions(&lenet(Pooling::Avg).unwrap());
        assert_eq!(plan.pools.len(), 2, "{plan:?}");
        assert!(plan.consumers.values().all(|(_, e)| *e == 2), "{plan:?}");
        assert!(avg_pool_fusions(&lenet(Pooling::Max).unwrap()).is_empty());
    }

    #[test]
    fn alexnet_and_vgg_fuse_their_two_by_two_pools() {
        // AlexNet: the 2×2/1 pool into conv3 (its 3×3 pool divides by 9); VGG-16: four pools into convolutions, the
        // last through the flatten into the classifier.
        let alex = avg_pool_fusions(&alexnet_cifar10(Pooling::Avg).unwrap());
        assert_eq!(alex.consumers.keys().collect::<Vec<_>>(), ["features.6"], "{alex:?}");
        let vgg = avg_pool_fusions(&vgg16_cifar10(Pooling::Avg).unwrap());
        assert_eq!(vgg.pools.len(), 5, "{vgg:?}");
        assert_eq!(vgg.extra_bits("classifier.1"), 2, "{vgg:?}");
        assert!(avg_pool_fusions(&vgg16_cifar10(Pooling::Max).unwrap()).is_empty());
    }

    #[test]
    fn resnet_stem_pool_of_nine_is_not_fused() {
        let plan = avg_pool_fusions(&resnet18(Stem::AvgPool).unwrap());
        assert!(plan.pools.keys().all(|k| k != "maxpool"), "{plan:?}");
    }
}
