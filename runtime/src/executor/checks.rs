//! The checks before a private inference's first message: the data owner's batch against the public input bound,
//! the model owner's range analysis and failure probability (see the [executor](super) docs, "Range safety").

use super::*;

/// How the model owner checks, before sharing anything, that no value of the private run reaches 2^62.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeCheck {
    /// Worst-case interval analysis from the declared input bound: a guarantee (the default). On deep networks
    /// the intervals can be far looser than real values and refuse every `t`.
    Interval,
    /// The largest magnitudes over `samples` inputs drawn uniformly within the input bound (seeded), times
    /// `margin`: **not a guarantee** (an input unlike those samples can exceed them).
    Calibrated {
        /// Number of random inputs.
        samples: usize,
        /// Factor on the measured magnitudes (≥ 1).
        margin: f64,
    },
    /// No check: an overflow gives a silently wrong result.
    Off,
}

/// Largest predicted failure probability per run a private inference may have by default (any truncation mode).
pub const DEFAULT_MAX_FAILURE: f64 = 1e-9;

impl Executor {
    /// Declares the public bound `|x| ≤ bound` on every input element: the data owner refuses a batch outside it,
    /// the model owner checks the model's range for it; nothing about the batch beyond the declaration is revealed.
    /// Without it the bound is the smallest power of two at least the batch's `max |x|` (`2^⌈log2 max|x|⌉`, at
    /// least [`range::MIN_ANNOUNCED_BOUND`]), which thereby becomes known to the model owner.
    pub fn with_input_bound(mut self, bound: f64) -> Self {
        self.input_bound = Some(bound);
        self
    }

    /// How the model owner checks the range (default [`RangeCheck::Interval`]).
    pub fn with_range_check(mut self, check: RangeCheck) -> Self {
        self.range_check = check;
        self
    }

    /// Allows runs whose predicted failure probability per run is at most `p` (default [`DEFAULT_MAX_FAILURE`]);
    /// `1.0` accepts any. The probability counts every truncation under probabilistic truncation and, in the exact
    /// mode, the divisions by a non-power of two (3×3 or 7×7 average pooling), which are probabilistic in every
    /// mode.
    pub fn allow_truncation_failures(mut self, p: f64) -> Self {
        self.max_failure = p;
        self
    }

    /// The data owner's check, before sharing: every element of `input` is finite and within `|x| ≤ bound`.
    pub fn check_input(&self, input: &DslTensor, bound: f64) -> Result<()> {
        match input.data().iter().enumerate().find(|(_, v)| !(v.is_finite() && v.abs() <= bound)) {
            Some((index, &value)) => Err(Error::InputRange { index, value, bound }),
            None => Ok(()),
        }
    }

    /// The data owner's bound after [`Executor::check_input`] against it: the declared one, else the smallest
    /// power of two at least the batch's `max |x|` ([`InputBound::of_batch`]), which is all the model owner learns
    /// of the batch.
    pub(super) fn data_bound(&self, input: &DslTensor) -> Result<f64> {
        let bound = match self.input_bound {
            Some(b) => b,
            None => InputBound::of_batch(input).map_err(|e| dsl_err(&self.graph, e))?.max_abs(),
        };
        self.check_input(input, bound)?;
        Ok(bound)
    }

    /// The model owner's check, before sharing: the range analysis of the model with `params` for inputs
    /// `|x| ≤ input_bound` at `frac_bits`, for a run of `batch` samples under `truncation`. Returns the report
    /// (`None` with [`RangeCheck::Off`]); an error names the first layer that can reach 2^62
    /// ([`Error::Range`]), or the layers whose failures make the predicted failure probability of the run exceed
    /// the allowed one ([`Error::FailureProbability`]): every truncation under probabilistic truncation, in the
    /// exact mode the divisions by a non-power of two (average pooling over 3×3 or 7×7 windows).
    pub fn check_model(
        &self,
        params: &Params,
        input_bound: f64,
        frac_bits: u32,
        truncation: TruncationMode,
        batch: usize,
    ) -> Result<Option<RangeReport>> {
        let bound = InputBound::Uniform(input_bound);
        let fold = !self.folds.is_empty();
        let report = match self.range_check {
            RangeCheck::Off => return Ok(None),
            RangeCheck::Interval => range::intervals_fused(&self.graph, params, &bound, fold, &self.fusion),
            RangeCheck::Calibrated { samples, margin } => {
                let how = (fold, &self.fusion);
                range::calibrate_uniform_fused(&self.graph, params, &bound, samples, margin, how, 0x5eed)
            }
        }
        .map_err(|e| dsl_err(&self.graph, e))?;
        let method = report.method.to_string();
        if let Some((layer, bound)) = report.first_unsafe(frac_bits) {
            return Err(Error::Range(Box::new(crate::RangeViolation {
                model: self.graph.name().to_string(),
                layer: layer.name.clone(),
                kind: layer.kind.to_string(),
                bound,
                limit: range::RING_LIMIT,
                frac_bits,
                largest_safe_t: report.largest_safe_t(),
                method,
            })));
        }
        // A declared ReLU bound must hold for every ReLU input, with room for a truncation's ulp and the encoding's
        // rounding (the sign circuit covers −2^h ≤ x < 2^h in the ring).
        if let (Some(k), Some(l)) = (self.relu_bound, report.largest_relu_input()) {
            let limit = f64::from(k).exp2() - 2.0 * (-f64::from(frac_bits)).exp2();
            if k + frac_bits < 63 && (l.input >= limit || l.input.is_nan()) {
                return Err(Error::ReluBound {
                    model: self.graph.name().to_string(),
                    layer: l.name.clone(),
                    bound: l.input,
                    declared_bits: k,
                    method,
                });
            }
        }
        // Under probabilistic truncation every truncation can fail; in the exact mode the divisions by a
        // non-power of two still can (they are probabilistic in every mode).
        let probabilistic = truncation == TruncationMode::Probabilistic;
        let probability = report.failure_probability(frac_bits, probabilistic, batch);
        if probability > self.max_failure || probability.is_nan() {
            let sources: Vec<crate::FailureSource> = report
                .failure_sources(frac_bits, probabilistic)
                .into_iter()
                .map(|(l, p)| crate::FailureSource {
                    layer: l.name.clone(),
                    kind: l.kind.to_string(),
                    divisor: match l.truncation.as_ref().map(|t| t.op) {
                        Some(range::Rescale::DivideInt(d)) => Some(d),
                        _ => None,
                    },
                    probability: (p * batch as f64).min(1.0),
                })
                .collect();
            return Err(Error::FailureProbability(Box::new(crate::FailureRisk {
                model: self.graph.name().to_string(),
                probability,
                threshold: self.max_failure,
                frac_bits,
                batch,
                truncation,
                layer: sources.first().map_or(String::new(), |s| s.layer.clone()),
                sources,
                method,
            })));
        }
        Ok(Some(report))
    }

    /// The data owner's local check of its batch, before any message: shape `[batch, …input]` with `batch ≥ 1`,
    /// and every value encodable at `fixed` (no NaN, ±infinity or out-of-range value).
    pub(super) fn check_batch(&self, x: &DslTensor, batch: usize, fixed: crate::FixedPoint) -> Result<()> {
        let shape = self.batch_shape(batch);
        if batch == 0 {
            return Err(Error::EmptyBatch { what: format!("input of model `{}`", self.graph.name()) });
        }
        if x.shape() != shape.as_slice() {
            return Err(Error::Shape {
                op: format!("input of model `{}`", self.graph.name()),
                expected: format!("{shape:?}"),
                found: format!("{:?}", x.shape()),
            });
        }
        fixed.check_slice(x.data())
    }

    /// The data owner sends its bound (the power of two above `max |x|`, a public declaration from now on) to the
    /// model owner: one round.
    pub(super) fn announce_bound(&self, p: &mut Party, bound: Option<f64>) -> Result<Option<f64>> {
        let (owner, data) = (self.roles.model_owner, self.roles.data_owner);
        if p.id() == data {
            let b = bound.ok_or(Error::Ownership { what: "data", party: data, owner: data, supplied: false })?;
            p.round(vec![(owner, vec![b.to_bits()].into())], &[])?;
            Ok(Some(b))
        } else if p.id() == owner {
            let got = p.round(vec![], &[(data, 1)])?;
            Ok(got.first().and_then(|w| w.first()).map(|&w| f64::from_bits(w)))
        } else {
            p.round(vec![], &[])?;
            Ok(bound)
        }
    }
}
