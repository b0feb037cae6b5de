//! The model graph: a tree of [`Node`]s with resolved PyTorch-style names (`layer1.0.conv1`), shape inference
//! from a per-sample input shape `[C, H, W]` (the batch dimension is implicit), the run-time [`Builder`] that
//! imported models and the `secure_model!` macro target, and the parameter listing under state_dict names.

use crate::error::{DslError, Result};
use crate::layer::{Layer, Node, ParamKind};
use crate::tensor::numel;
use std::collections::HashSet;

/// Per-layer record of shape inference, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Full hierarchical name.
    pub name: String,
    /// The layer.
    pub layer: Layer,
    /// Per-sample input shape.
    pub input: Vec<usize>,
    /// Per-sample output shape.
    pub output: Vec<usize>,
}

/// A tensor of the model under its PyTorch state_dict name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// State-dict name, e.g. `layer1.0.bn1.running_var`.
    pub name: String,
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// Trainable parameter, running statistic or counter.
    pub kind: ParamKind,
}

/// A shape-checked model: nodes with full names, its input and output shapes and the per-layer shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    nodes: Vec<Node>,
    layers: Vec<LayerInfo>,
}

/// Builds a sequence of nodes at run time; nested blocks are built with closures.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    nodes: Vec<Node>,
}

impl Builder {
    /// An empty sequence.
    pub fn new() -> Self {
        Builder { nodes: Vec::new() }
    }

    /// Appends a named layer (its state_dict prefix is `name` under the enclosing blocks).
    pub fn layer(&mut self, name: &str, layer: impl Into<Layer>) -> &mut Self {
        self.nodes.push(Node::Layer { name: name.to_string(), layer: layer.into() });
        self
    }

    /// Appends an anonymous layer, named by its index in the sequence like `nn.Sequential`.
    pub fn push(&mut self, layer: impl Into<Layer>) -> &mut Self {
        self.layer("", layer)
    }

    /// Appends an anonymous ReLU.
    pub fn relu(&mut self) -> &mut Self {
        self.push(Layer::Relu)
    }

    /// Appends an anonymous Flatten.
    pub fn flatten(&mut self) -> &mut Self {
        self.push(Layer::Flatten)
    }

    /// Appends an already built node.
    pub fn node(&mut self, node: Node) -> &mut Self {
        self.nodes.push(node);
        self
    }

    /// Appends a named sequence whose children `body` adds.
    pub fn sequential(&mut self, name: &str, body: impl FnOnce(&mut Builder)) -> &mut Self {
        let mut inner = Builder::new();
        body(&mut inner);
        self.nodes.push(Node::Sequential { name: name.to_string(), children: inner.nodes });
        self
    }

    /// Appends a residual block `post(main(x) + shortcut(x))`; a shortcut that adds nothing is the identity.
    pub fn residual(
        &mut self,
        name: &str,
        main: impl FnOnce(&mut Builder),
        shortcut: impl FnOnce(&mut Builder),
        post: impl FnOnce(&mut Builder),
    ) -> &mut Self {
        let (mut m, mut s, mut p) = (Builder::new(), Builder::new(), Builder::new());
        main(&mut m);
        shortcut(&mut s);
        post(&mut p);
        self.nodes.push(Node::Residual { name: name.to_string(), main: m.nodes, shortcut: s.nodes, post: p.nodes });
        self
    }

    /// The nodes added so far.
    pub fn into_nodes(self) -> Vec<Node> {
        self.nodes
    }

    /// Resolves names and infers shapes for a per-sample input shape.
    pub fn build(self, name: &str, input: &[usize]) -> Result<Graph> {
        Graph::new(name, input, self.nodes)
    }
}

struct Resolver {
    seen: HashSet<String>,
    layers: Vec<LayerInfo>,
}

impl Resolver {
    fn full_name(&mut self, node: &Node, index: usize, prefix: &str, anon: &str) -> Result<String> {
        let local = node.name();
        let local = if local.is_empty() {
            format!("{anon}{index}")
        } else {
            if local.contains('.') || local.chars().any(char::is_whitespace) {
                return Err(DslError::InvalidName { name: local.to_string() });
            }
            local.to_string()
        };
        let full = if prefix.is_empty() { local } else { format!("{prefix}.{local}") };
        if !self.seen.insert(full.clone()) {
            return Err(DslError::DuplicateName { name: full });
        }
        Ok(full)
    }

    fn seq(
        &mut self,
        nodes: Vec<Node>,
        prefix: &str,
        anon: &str,
        mut shape: Vec<usize>,
    ) -> Result<(Vec<Node>, Vec<usize>)> {
        let mut out = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.into_iter().enumerate() {
            let full = self.full_name(&node, i, prefix, anon)?;
            match node {
                Node::Layer { layer, .. } => {
                    let next = layer.output_shape(&full, &shape)?;
                    self.layers.push(LayerInfo {
                        name: full.clone(),
                        layer: layer.clone(),
                        input: shape,
                        output: next.clone(),
                    });
                    shape = next;
                    out.push(Node::Layer { name: full, layer });
                }
                Node::Sequential { children, .. } => {
                    let (children, next) = self.seq(children, &full, "", shape)?;
                    shape = next;
                    out.push(Node::Sequential { name: full, children });
                }
                Node::Residual { main, shortcut, post, .. } => {
                    let (main, main_shape) = self.seq(main, &full, "", shape.clone())?;
                    let (shortcut, short_shape) = self.seq(shortcut, &full, "shortcut.", shape)?;
                    if main_shape != short_shape {
                        return Err(DslError::ResidualMismatch {
                            block: full,
                            main: main_shape,
                            shortcut: short_shape,
                        });
                    }
                    let (post, next) = self.seq(post, &full, "post.", main_shape)?;
                    shape = next;
                    out.push(Node::Residual { name: full, main, shortcut, post });
                }
            }
        }
        Ok((out, shape))
    }
}

impl Graph {
    /// Resolves the full names of `nodes` (checking they are unique) and infers every layer's shapes from the
    /// per-sample `input` shape; errors name the offending layer and both shapes.
    pub fn new(name: &str, input: &[usize], nodes: Vec<Node>) -> Result<Graph> {
        if input.is_empty() || input.contains(&0) {
            return Err(DslError::ShapeMismatch {
                layer: format!("{name} (input)"),
                expected: "a non-empty per-sample shape without zero extents".into(),
                found: input.to_vec(),
            });
        }
        let mut r = Resolver { seen: HashSet::new(), layers: Vec::new() };
        let (nodes, output) = r.seq(nodes, "", "", input.to_vec())?;
        Ok(Graph { name: name.to_string(), input: input.to_vec(), output, nodes, layers: r.layers })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.output
    }

    /// The node tree; in a graph every node's name is its full hierarchical name.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every layer with its shapes, in execution order (main branch before shortcut before post).
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Every tensor of the model (parameters and buffers) under its state_dict name, in execution order.
    pub fn parameters(&self) -> Vec<ParamSpec> {
        self.layers
            .iter()
            .flat_map(|info| {
                info.layer.params().into_iter().map(move |p| ParamSpec {
                    name: format!("{}.{}", info.name, p.suffix),
                    shape: p.shape,
                    kind: p.kind,
                })
            })
            .collect()
    }

    /// Number of trainable scalars (PyTorch `sum(p.numel() for p in model.parameters())`).
    pub fn num_trainable(&self) -> usize {
        self.parameters().iter().filter(|p| p.kind == ParamKind::Trainable).map(|p| numel(&p.shape)).sum()
    }

    /// A one-line-per-layer summary: name, kind, input and output shapes.
    pub fn summary(&self) -> String {
        let mut s = format!("{} input {:?} -> output {:?}\n", self.name, self.input, self.output);
        for l in &self.layers {
            s.push_str(&format!("  {:<28} {:<14} {:?} -> {:?}\n", l.name, l.layer.kind_name(), l.input, l.output));
        }
        s
    }
}
