//! The plaintext f64 twin of a private inference: the dsl's reference runner over the owner's parameters.

use super::*;

impl Executor {
    /// The plaintext f64 result of what [`Executor::infer`] computes privately on `input` `[B, …input]`: the
    /// dsl's reference inference ([`cryptgpu_dsl::reference::infer`]: batch norm from its running statistics)
    /// over the same parameters. Folding a batch norm into the convolution before it, as the private run does, is
    /// exact in real arithmetic, so the two agree to f64 rounding (a relative 1e-15); what the private logits
    /// differ by is the fixed-point error only (README, "Accuracy"). A model owner who also holds the inputs (e.g.
    /// to test a deployment) compares the private logits with it. It runs in this process and sends nothing. NaN
    /// in `input` or `params` propagates to every logit it reaches (the reference's semantics).
    pub fn plaintext_reference(&self, params: &Params, input: &DslTensor) -> Result<DslTensor> {
        let batch = input.shape().first().copied().unwrap_or(0);
        if input.shape() != self.batch_shape(batch).as_slice() || batch == 0 {
            return Err(Error::Shape {
                op: format!("input of model `{}`", self.graph.name()),
                expected: format!("[B, {}] with B ≥ 1", join(self.graph.input_shape())),
                found: format!("{:?}", input.shape()),
            });
        }
        cryptgpu_dsl::reference::infer(&self.graph, params, input).map_err(|e| dsl_err(&self.graph, e))
    }
}
