//! The plaintext f64 twin of a private inference: the same graph over the same tensors the model owner shares.

use super::*;

impl Executor {
    /// The plaintext f64 result of exactly what [`Executor::infer`] computes privately on `input` `[B, …input]`:
    /// the same graph, the same tensors the model owner shares (batch norm from its running statistics, folded
    /// into the convolution before it or applied as `scale`/`shift`), every layer in f64 instead of fixed point
    /// on shares. A model owner who also holds the inputs (e.g. to test a deployment) compares the private logits
    /// with it: they differ by the fixed-point error only (README, "Accuracy"). It runs in this process and sends
    /// nothing. NaN in `input` or `params` propagates to every logit it reaches (the reference's semantics).
    pub fn plaintext_reference(&self, params: &Params, input: &DslTensor) -> Result<DslTensor> {
        let batch = input.shape().first().copied().unwrap_or(0);
        if input.shape() != self.batch_shape(batch).as_slice() || batch == 0 {
            return Err(Error::Shape {
                op: format!("input of model `{}`", self.graph.name()),
                expected: format!("[B, {}] with B ≥ 1", join(self.graph.input_shape())),
                found: format!("{:?}", input.shape()),
            });
        }
        let flat = self.flatten_params(params)?;
        let mut tensors = HashMap::new();
        let mut at = 0;
        for slot in self.slots() {
            let len = crate::tensor::held_numel(&slot.shape);
            let t =
                DslTensor::from_vec(&slot.shape, flat[at..at + len].to_vec()).map_err(|e| dsl_err(&self.graph, e))?;
            tensors.insert(slot.key, t);
            at += len;
        }
        self.plain_nodes(&tensors, self.graph.nodes(), input.clone()).map_err(|e| dsl_err(&self.graph, e))
    }

    /// [`Executor::run_nodes`] in plaintext f64 over the owner's shared tensors (see
    /// [`Executor::plaintext_reference`]).
    fn plain_nodes(
        &self,
        tensors: &HashMap<String, DslTensor>,
        nodes: &[Node],
        mut x: DslTensor,
    ) -> cryptgpu_dsl::Result<DslTensor> {
        use cryptgpu_dsl::reference as r;
        let get = |key: String| {
            tensors.get(&key).ok_or_else(|| cryptgpu_dsl::DslError::InvalidLayer {
                layer: key.rsplit_once('.').map_or(key.as_str(), |(layer, _)| layer).to_string(),
                message: format!("the model owner's shared tensors have no `{key}`"),
            })
        };
        for node in nodes {
            x = match node {
                Node::Layer { name, layer } => match layer {
                    Layer::Conv2d(c) => {
                        let has_bias = c.bias || self.folds.contains_key(name);
                        let b = if has_bias { Some(get(format!("{name}.bias"))?) } else { None };
                        r::conv2d_forward(&x, get(format!("{name}.weight"))?, b, c)?
                    }
                    Layer::Linear(l) => {
                        let b = if l.bias { Some(get(format!("{name}.bias"))?) } else { None };
                        r::linear_forward(&x, get(format!("{name}.weight"))?, b)?
                    }
                    Layer::Relu => r::relu_forward(&x),
                    Layer::AvgPool2d(pool) => r::avg_pool2d_forward(&x, pool)?,
                    Layer::MaxPool2d(pool) => r::max_pool2d_forward(&x, pool)?.0,
                    Layer::GlobalAvgPool => r::global_avg_pool_forward(&x)?,
                    Layer::BatchNorm2d(_) if self.is_folded_bn(name) => x,
                    Layer::BatchNorm2d(b) => {
                        let (scale, shift) = (get(format!("{name}.scale"))?, get(format!("{name}.shift"))?);
                        let hw: usize = x.shape().get(2..).map_or(1, |s| s.iter().product());
                        for (i, v) in x.data_mut().iter_mut().enumerate() {
                            let c = (i / hw.max(1)) % b.channels.max(1);
                            *v = *v * scale.data()[c] + shift.data()[c];
                        }
                        x
                    }
                    Layer::Flatten => {
                        let (n, len) = (x.shape().first().copied().unwrap_or(0), x.len());
                        x.reshape(&[n, len / n.max(1)])?
                    }
                    Layer::Dropout { .. } => x,
                },
                Node::Sequential { children, .. } => self.plain_nodes(tensors, children, x)?,
                Node::Residual { main, shortcut, post, .. } => {
                    let m = self.plain_nodes(tensors, main, x.clone())?;
                    let s = self.plain_nodes(tensors, shortcut, x)?;
                    self.plain_nodes(tensors, post, m.add(&s)?)?
                }
            };
        }
        Ok(x)
    }
}
