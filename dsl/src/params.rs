//! A model's tensors in memory (weights, biases, batch-norm buffers) keyed by PyTorch state_dict names, with
//! Kaiming initialisation and a check against a [`Graph`] that reports missing, extra and mis-shaped tensors.

use crate::error::{DslError, Result};
use crate::graph::Graph;
use crate::layer::ParamKind;
use crate::tensor::Tensor;
use rand::Rng;
use std::collections::BTreeMap;

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

    /// Checks that exactly the graph's tensors are present with the graph's shapes; `source_name` (a file path
    /// or `parameters`) goes into the error.
    pub fn check(&self, graph: &Graph, source_name: &str) -> Result<()> {
        self.check_inner(graph, source_name, false)
    }

    /// Checks that every tensor the graph needs is present with the graph's shape; extra tensors are allowed.
    pub fn check_present(&self, graph: &Graph, source_name: &str) -> Result<()> {
        self.check_inner(graph, source_name, true)
    }

    fn check_inner(&self, graph: &Graph, source_name: &str, allow_extra: bool) -> Result<()> {
        let specs = graph.parameters();
        for spec in &specs {
            match self.map.get(&spec.name) {
                None => {
                    return Err(DslError::MissingTensor {
                        name: spec.name.clone(),
                        expected: spec.shape.clone(),
                        source_name: source_name.to_string(),
                    })
                }
                Some(t) if t.shape() != spec.shape.as_slice() => {
                    return Err(DslError::TensorShape {
                        name: spec.name.clone(),
                        expected: spec.shape.clone(),
                        found: t.shape().to_vec(),
                        source_name: source_name.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
        if !allow_extra && self.map.len() != specs.len() {
            let known: std::collections::HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            if let Some((name, t)) = self.map.iter().find(|(n, _)| !known.contains(n.as_str())) {
                return Err(DslError::UnexpectedTensor {
                    name: name.clone(),
                    found: t.shape().to_vec(),
                    source_name: source_name.to_string(),
                });
            }
        }
        Ok(())
    }
}
