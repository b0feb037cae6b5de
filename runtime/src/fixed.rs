//! Fixed-point encoding of reals in Z_2^64: `v ↦ round(v · 2^t)` as a two's complement 64-bit integer.
//!
//! `t` (the fractional bits) is configurable, 20 by default. Values whose encoding does not fit a signed 64-bit
//! integer (|v| ≥ 2^(63−t)), NaN and infinities are errors, never silently wrapped. Multiplying two encodings gives
//! scale 2t, so products of values with |x·y| ≥ 2^(63−2t) overflow before truncation; the protocols document the
//! range they support.

use crate::{Error, Result};

/// Default number of fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 20;

/// A fixed-point encoding with `frac_bits` fractional bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    frac_bits: u32,
}

/// Name the element an encoding error is about.
fn at_element(e: Error, i: usize) -> Error {
    match e {
        Error::Encode { value, frac_bits, reason } => {
            Error::Encode { value, frac_bits, reason: format!("element {i}: {reason}") }
        }
        e => e,
    }
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint { frac_bits: DEFAULT_FRAC_BITS }
    }
}

impl FixedPoint {
    /// An encoding with `frac_bits` fractional bits; at most 31, so that a product of two encodings still has a
    /// sign bit.
    pub fn new(frac_bits: u32) -> Result<Self> {
        if frac_bits > 31 {
            return Err(Error::Invalid(format!("fractional bits must be in 0..=31, found {frac_bits}")));
        }
        Ok(FixedPoint { frac_bits })
    }

    /// Fractional bits `t`.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// `2^t` as a float.
    pub fn scale(&self) -> f64 {
        (self.frac_bits as f64).exp2()
    }

    /// Largest magnitude that encodes: values must satisfy |v| < 2^(63−t).
    pub fn max_abs(&self) -> f64 {
        (63.0 - self.frac_bits as f64).exp2()
    }

    /// Encode one real.
    pub fn encode(&self, value: f64) -> Result<u64> {
        let fail = |reason: String| Err(Error::Encode { value, frac_bits: self.frac_bits, reason });
        if value.is_nan() {
            return fail("NaN has no fixed-point encoding".into());
        }
        if value.is_infinite() {
            return fail("infinity has no fixed-point encoding".into());
        }
        let scaled = (value * self.scale()).round();
        // 2^63 is exact in f64; the encoding must lie in [-2^63, 2^63).
        if !(-(63f64.exp2())..63f64.exp2()).contains(&scaled) {
            return fail(format!(
                "outside the representable range |v| < 2^{} = {:e}",
                63 - self.frac_bits,
                self.max_abs()
            ));
        }
        Ok(scaled as i64 as u64)
    }

    /// Decode one ring element (read as a signed integer).
    pub fn decode(&self, x: u64) -> f64 {
        x as i64 as f64 / self.scale()
    }

    /// Encode a slice; the error names the index of the first bad value.
    pub fn encode_slice(&self, values: &[f64]) -> Result<Vec<u64>> {
        values.iter().enumerate().map(|(i, &v)| self.encode(v).map_err(|e| at_element(e, i))).collect()
    }

    /// Check that every value of a slice encodes (NaN, ±infinity and out-of-range values do not), without
    /// encoding it: the error is [`FixedPoint::encode_slice`]'s. Owners check their inputs with it before any
    /// message is sent.
    pub fn check_slice(&self, values: &[f64]) -> Result<()> {
        for (i, &v) in values.iter().enumerate() {
            self.encode(v).map_err(|e| at_element(e, i))?;
        }
        Ok(())
    }

    /// Decode a slice.
    pub fn decode_slice(&self, xs: &[u64]) -> Vec<f64> {
        xs.iter().map(|&x| self.decode(x)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rounds_to_nearest() {
        let fp = FixedPoint::default();
        for v in [0.0, 1.0, -1.0, 3.25, -1234.5678, 1.0 / 3.0] {
            let back = fp.decode(fp.encode(v).unwrap());
            assert!((back - v).abs() <= 0.5 / fp.scale(), "{v} -> {back}");
        }
        assert_eq!(fp.encode(-1.0).unwrap(), (1u64 << 20).wrapping_neg());
        assert_eq!(fp.encode(1.0 / (1u64 << 21) as f64).unwrap(), 1); // half an ulp rounds away from zero
    }

    #[test]
    fn rejects_nan_infinity_and_out_of_range() {
        let fp = FixedPoint::default();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2f64.powi(43), -(2f64.powi(43)) - 1.0] {
            let e = fp.encode(v).unwrap_err().to_string();
            assert!(e.contains("cannot encode"), "{e}");
        }
        // the extremes that do fit
        assert_eq!(fp.encode(-(2f64.powi(43))).unwrap(), 1u64 << 63);
        assert!(fp.encode(2f64.powi(43) - 1.0).is_ok());
        let e = fp.encode_slice(&[1.0, f64::NAN]).unwrap_err().to_string();
        assert!(e.contains("element 1") && e.contains("NaN"), "{e}");
        assert!(FixedPoint::new(32).is_err());
    }
}
