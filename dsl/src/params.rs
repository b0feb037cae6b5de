//! A model's tensors in memory (weights, biases, batch-norm buffers) keyed by PyTorch state_dict names, with
//! Kaiming initialisation and a check against a [`Graph`] that reports every missing, extra and mis-shaped tensor.

use crate::error::{DslError, Result, TensorIssue};
use crate::graph::Graph;
use crate::layer::ParamKind;
use crate::tensor::Tensor;
use rand::Rng;
use std::collections::{BTreeMap, HashSet};

/// Named tensors of a model (state_dict names, PyTorch layouts, f64 values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    map: BTreeMap<String, Tensor>,
}

impl Params {
    /// An empty set.
    pub fn new() -> Self {
        Params { map: BTreeMap::new() }
    }

    /// Kaiming-normal initialisation (fan-in, ReLU gain: std = √(2 / fan_in)) of every conv and linear weight;
    /// biases zero; batch norm weight 1, bias 0, running mean 0, running variance 1, counter 0.
    pub fn kaiming<R: Rng + ?Sized>(graph: &Graph, rng: &mut R) -> Self {
        let mut map = BTreeMap::new();
        for p in graph.parameters() {
            let is_bn = p.shape.len() == 1 && p.name.ends_with(".weight");
            let t = match p.kind {
                ParamKind::Trainable if p.name.ends_with(".weight") && !is_bn => {
                    let fan_in: usize = p.shape[1..].iter().product();
                    Tensor::randn(&p.shape, (2.0 / fan_in.max(1) as f64).sqrt(), rng)
                }
                ParamKind::Trainable if is_bn => Tensor::full(&p.shape, 1.0),
                ParamKind::RunningStat if p.name.ends_with(".running_var") => Tensor::full(&p.shape, 1.0),
                _ => Tensor::zeros(&p.shape),
            };
            map.insert(p.name, t);
        }
        Params { map }
    }

    /// [`Params::kaiming`] weights with the rest drawn at random, for tests and benchmarks where Kaiming's trivial
    /// values (zero biases, `γ = 1`, `β = 0`, unit statistics) would hide a mistake: biases, batch-norm `β` and
    /// running means uniform in `[−spread, spread)`, running variances in `[0.5, 2)`, `|γ|` in `[0.5, 1.5)`, negative
    /// for about half the channels when `signed_gamma`.
    pub fn random<R: Rng + ?Sized>(graph: &Graph, rng: &mut R, spread: f64, signed_gamma: bool) -> Self {
        let mut params = Params::kaiming(graph, rng);
        for spec in graph.parameters() {
            let is_gamma = spec.shape.len() == 1 && spec.name.ends_with(".weight");
            let t = if spec.name.ends_with(".running_var") {
                Tensor::uniform(&spec.shape, 0.5, 2.0, rng)
            } else if is_gamma {
                let mut gamma = Tensor::uniform(&spec.shape, 0.5, 1.5, rng);
                if signed_gamma {
                    gamma.data_mut().iter_mut().filter(|_| rng.gen::<bool>()).for_each(|g| *g = -*g);
                }
                gamma
            } else if spec.name.ends_with(".bias") || spec.name.ends_with(".running_mean") {
                Tensor::uniform(&spec.shape, -spread, spread, rng)
            } else {
                continue;
            };
            params.insert(&spec.name, t);
        }
        params
    }

    /// The tensor named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// The tensor named `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.map.get_mut(name)
    }

    /// The tensor named `name` or an error naming it.
    pub fn require(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| DslError::MissingTensor {
            name: name.to_string(),
            expected: Vec::new(),
            source_name: "parameters".into(),
        })
    }

    /// Inserts or replaces a tensor, returning the previous one.
    pub fn insert(&mut self, name: &str, tensor: Tensor) -> Option<Tensor> {
        self.map.insert(name.to_string(), tensor)
    }

    /// Removes a tensor.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.map.remove(name)
    }

    /// All tensors in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every way these tensors differ from what `graph` needs, in name order: missing tensors, mis-shaped ones
    /// and, when `allow_extra` is false, tensors the graph does not have. Batch norm's `num_batches_tracked`
    /// is optional: inference never reads it and training counts from 0 when it is absent (see the
    /// [`weights`](crate::weights) module), so its absence is no issue; a present one must have shape `[]`.
    pub fn issues(&self, graph: &Graph, allow_extra: bool) -> Vec<TensorIssue> {
        let specs = graph.parameters();
        let mut issues = Vec::new();
        for spec in &specs {
            match self.map.get(&spec.name) {
                None if spec.kind == ParamKind::Counter => {}
                None => issues.push(TensorIssue::Missing { name: spec.name.clone(), expected: spec.shape.clone() }),
                Some(t) if t.shape() != spec.shape.as_slice() => issues.push(TensorIssue::Shape {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    found: t.shape().to_vec(),
                }),
                Some(_) => {}
            }
        }
        if !allow_extra {
            let known: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            for (name, t) in self.map.iter().filter(|(n, _)| !known.contains(n.as_str())) {
                issues.push(TensorIssue::Unexpected { name: name.clone(), found: t.shape().to_vec() });
            }
        }
        issues.sort_by(|a, b| a.name().cmp(b.name()));
        issues
    }

    /// Checks that exactly the graph's tensors are present with the graph's shapes (`num_batches_tracked` may be
    /// absent); the error lists every missing, extra and mis-shaped tensor and names `source_name` (a file path
    /// or `parameters`).
    pub fn check(&self, graph: &Graph, source_name: &str) -> Result<()> {
        mismatch(graph, source_name, self.issues(graph, false))
    }

    /// Checks that every tensor the graph needs is present with the graph's shape; extra tensors are allowed.
    pub fn check_present(&self, graph: &Graph, source_name: &str) -> Result<()> {
        mismatch(graph, source_name, self.issues(graph, true))
    }
}

/// `Ok` when there are no issues, else the error listing all of them.
fn mismatch(graph: &Graph, source_name: &str, issues: Vec<TensorIssue>) -> Result<()> {
    if issues.is_empty() {
        return Ok(());
    }
    Err(DslError::Mismatch { source_name: source_name.to_string(), model: graph.name().to_string(), issues, hint: "" })
}
