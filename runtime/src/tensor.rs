//! Plaintext tensors: reals ([`Tensor`]) as users hold them, and ring elements ([`RingTensor`]) as encoded.

use crate::{Error, FixedPoint, Result};

/// Number of elements of a shape (1 for `[]`), or [`Error::Overflow`] when the product overflows `usize`.
pub fn numel(shape: &[usize]) -> Result<usize> {
    checked_product("tensor", shape)
}

/// The product of `factors` (an element count), or [`Error::Overflow`] naming `what` when the product of its
/// non-zero factors overflows `usize` (such a shape has strides that overflow even when it holds no element).
pub fn checked_product(what: &str, factors: &[usize]) -> Result<usize> {
    cryptgpu_codegen::checked_numel(factors)
        .ok_or_else(|| Error::Overflow { what: what.into(), shape: factors.to_vec() })
}

/// Elements of the shape of a tensor already in memory (whose element count cannot overflow); saturates instead
/// of wrapping should it be misused on an unchecked shape.
pub(crate) fn held_numel(shape: &[usize]) -> usize {
    numel(shape).unwrap_or(usize::MAX)
}

fn check_len(op: &str, shape: &[usize], len: usize) -> Result<()> {
    let n = checked_product(op, shape)?;
    if n != len {
        return Err(Error::Shape {
            op: op.into(),
            expected: format!("{n} elements for shape {shape:?}"),
            found: format!("{len} elements"),
        });
    }
    Ok(())
}

/// A row-major tensor of reals.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Tensor {
    /// A tensor of `shape` holding `data` (row-major); the lengths must agree.
    pub fn new(shape: &[usize], data: Vec<f64>) -> Result<Self> {
        check_len("Tensor::new", shape, data.len())?;
        Ok(Tensor { shape: shape.to_vec(), data })
    }
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Elements, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Encode with `fp`.
    pub fn encode(&self, fp: &FixedPoint) -> Result<RingTensor> {
        Ok(RingTensor { shape: self.shape.clone(), data: fp.encode_slice(&self.data)? })
    }
}

/// A row-major tensor of Z_2^64 elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingTensor {
    shape: Vec<usize>,
    data: Vec<u64>,
}

impl RingTensor {
    /// A tensor of `shape` holding `data` (row-major); the lengths must agree.
    pub fn new(shape: &[usize], data: Vec<u64>) -> Result<Self> {
        check_len("RingTensor::new", shape, data.len())?;
        Ok(RingTensor { shape: shape.to_vec(), data })
    }
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Elements, row-major.
    pub fn data(&self) -> &[u64] {
        &self.data
    }
    /// Consume into the elements.
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Decode with `fp`.
    pub fn decode(&self, fp: &FixedPoint) -> Tensor {
        Tensor { shape: self.shape.clone(), data: fp.decode_slice(&self.data) }
    }
}
