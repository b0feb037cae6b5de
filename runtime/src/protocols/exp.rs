//! The exponential `e^x` of a share by the limit approximation `(1 + x/2^n)^(2^n)`, clipped by comparisons.
//!
//! **Protocol.** `u = x/2^n` (one public truncation); ONE batched [ReLU](super::sign) over `[1 + u, u − u_max]`
//! (`u_max = max_input/2^n`) gives the clipped base `b = ReLU(1 + u) − ReLU(u − u_max)`; then `n` squarings. The
//! base is clipped on both sides: for `x ≤ −2^n` it is 0 (so the result is 0 rather than a huge even power of a
//! negative base, CrypTen's silent failure), and for `x > max_input` it saturates at `1 + u_max`, so the result is
//! `(1 + max_input/2^n)^(2^n)` rather than an overflow. Nothing is opened (CryptGPU's release reveals inside exp).
//!
//! **Error bound** (`n` iterations, `t` fractional bits; `N = 2^n`):
//! * `x ≤ 0` (the softmax domain, after subtracting the maximum): `|y − e^x| ≤ 0.28/N + 2N·2^−t`. The first term
//!   is the approximation (`max_x x²e^x/2N = 2e^−2/N`, at `x = −2`), the second the rounding (one ulp in `u`,
//!   amplified by the power, and one ulp per squaring, each amplified by at most 2 per later squaring as every
//!   intermediate is at most 1). For the default `n = 8`, t = 20: `1.58·10^−3`.
//! * `0 < x ≤ max_input`: relative error at most `x²/2N + 4N·2^−t` (the approximation error grows as `x²/2N`: 3%
//!   at `x = 4` with `n = 8`; raise `n` for positive inputs).
//! * `x > max_input`: the value at `max_input`, with the same relative error.
//!
//! **Range**: `|x| < 2^(62−t)` (the comparisons). The products stay below `max(1, e^max_input)·2^(2t)` before
//! truncation.
//!
//! **Cost**: [`cost::exp_rounds`](super::cost::exp_rounds) — one truncation, one ReLU (7 rounds), `n` products:
//! 16 rounds in the probabilistic mode, 25 in the exact mode, for `n = 8`.

use super::local::{row, stack};
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};

/// Parameters of [`Party::exp_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpConfig {
    /// `n`: the result is `(1 + x/2^n)^(2^n)`, `n` squarings (1 to 16).
    pub iterations: u32,
    /// Inputs above this saturate (the result is the approximation at `max_input`); at least 0.
    pub max_input: f64,
}

impl Default for ExpConfig {
    fn default() -> Self {
        ExpConfig { iterations: 8, max_input: 4.0 }
    }
}

impl ExpConfig {
    /// The documented bound on `|y − e^x|` for `x ≤ 0` at `t` fractional bits.
    pub fn error_bound_nonpositive(&self, t: u32) -> f64 {
        let big_n = (self.iterations as f64).exp2();
        0.28 / big_n + 2.0 * big_n * (-(t as f64)).exp2()
    }

    /// The documented bound on the relative error for `0 < x ≤ max_input` at `t` fractional bits.
    pub fn relative_error_bound(&self, x: f64, t: u32) -> f64 {
        let big_n = (self.iterations as f64).exp2();
        x * x / (2.0 * big_n) + 4.0 * big_n * (-(t as f64)).exp2()
    }
}

impl Party {
    /// `e^x` with the default [`ExpConfig`] (8 iterations, saturating above 4).
    pub fn exp(&mut self, x: &Share) -> Result<Share> {
        self.exp_with(x, ExpConfig::default())
    }

    /// `e^x` by the limit approximation with the given configuration (see the module docs).
    pub fn exp_with(&mut self, x: &Share, cfg: ExpConfig) -> Result<Share> {
        if !(1..=16).contains(&cfg.iterations) || cfg.max_input.is_nan() || cfg.max_input < 0.0 {
            return Err(Error::Invalid(format!(
                "exp: {} iterations (1 to 16) and max input {} (at least 0)",
                cfg.iterations, cfg.max_input
            )));
        }
        let n = x.len();
        let shape = x.shape().to_vec();
        let u_max = cfg.max_input / (cfg.iterations as f64).exp2();
        self.call(|p| {
            let u = p.truncate(x, cfg.iterations)?;
            let lo = p.add_scalar(&u, 1.0)?;
            let hi = p.add_scalar(&u, -u_max)?;
            let both = stack(&[&lo, &hi])?;
            let r = p.relu(&both)?;
            let (r_lo, r_hi) = (row(&r, 0, &[n])?, row(&r, 1, &[n])?);
            let base = p.sub(&r_lo, &r_hi)?;
            let mut y = base.viewed(&shape, "same size")?;
            for _ in 0..cfg.iterations {
                y = p.mul(&y, &y)?;
            }
            Ok(y)
        })
    }
}
