//! A minimal owned f64 tensor: a shape and a row-major data vector (NCHW for images). It is the value type of
//! the plaintext reference and of weights in memory; it has no views, strides or broadcasting on purpose.

use crate::error::{DslError, Result};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// An owned, row-major f64 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// Number of elements of a shape (1 for the scalar shape `[]`); saturates at `usize::MAX` instead of wrapping, so
/// an overflowing shape never matches a data vector.
pub fn numel(shape: &[usize]) -> usize {
    checked_numel(shape).unwrap_or(usize::MAX)
}

/// Number of elements of a shape (0 when a dimension is 0), or `None` when the product of the non-zero dimensions
/// overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(1usize, |a, &d| a.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![0.0; numel(shape)] }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f64) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![value; numel(shape)] }
    }

    /// A tensor from a shape and row-major data; errors when the lengths disagree.
    pub fn from_vec(shape: &[usize], data: Vec<f64>) -> Result<Self> {
        let expected = numel(shape);
        if expected != data.len() {
            return Err(DslError::DataLength {
                what: "Tensor::from_vec".into(),
                shape: shape.to_vec(),
                expected,
                found: data.len(),
            });
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// A tensor of independent N(0, std²) samples (|std| is used; a non-finite std gives zeros).
    pub fn randn<R: Rng + ?Sized>(shape: &[usize], std: f64, rng: &mut R) -> Self {
        let data = match Normal::new(0.0, std.abs()) {
            Ok(normal) => (0..numel(shape)).map(|_| normal.sample(rng)).collect(),
            Err(_) => vec![0.0; numel(shape)],
        };
        Tensor { shape: shape.to_vec(), data }
    }

    /// A tensor of independent U(lo, hi) samples.
    pub fn uniform<R: Rng + ?Sized>(shape: &[usize], lo: f64, hi: f64, rng: &mut R) -> Self {
        let data = (0..numel(shape)).map(|_| lo + (hi - lo) * rng.gen::<f64>()).collect();
        Tensor { shape: shape.to_vec(), data }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The row-major data.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The row-major data, mutable.
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// Consumes the tensor and returns its data.
    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let expected = numel(shape);
        if expected != self.data.len() {
            return Err(DslError::DataLength {
                what: "Tensor::reshape".into(),
                shape: shape.to_vec(),
                expected,
                found: self.data.len(),
            });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Elementwise sum of two tensors of the same shape.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        if self.shape != other.shape {
            return Err(DslError::BatchShape {
                what: "Tensor::add".into(),
                expected: format!("{:?}", self.shape),
                found: other.shape.clone(),
            });
        }
        let data = self.data.iter().zip(&other.data).map(|(a, b)| a + b).collect();
        Ok(Tensor { shape: self.shape.clone(), data })
    }

    /// Largest absolute elementwise difference to `other`: infinite when the shapes differ, NaN when any
    /// difference is NaN (a NaN on either side), so that `diff < tolerance` fails on NaN.
    pub fn max_abs_diff(&self, other: &Tensor) -> f64 {
        if self.shape != other.shape {
            return f64::INFINITY;
        }
        let diffs = self.data.iter().zip(&other.data).map(|(a, b)| (a - b).abs());
        diffs.fold(0.0, |m: f64, d| if m.is_nan() || d.is_nan() { f64::NAN } else { m.max(d) })
    }

    /// Euclidean norm of all elements.
    pub fn norm(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum::<f64>().sqrt()
    }
}
