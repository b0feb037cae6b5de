//! 2-out-of-3 replicated secret shares over Z_2^64.
//!
//! A secret `x` is split as `x = x_0 + x_1 + x_2`; party `i` holds the pieces `(x_i, x_{i+1})` (indices mod 3).
//! Any two parties can reconstruct; any single party's pieces are uniformly random and independent of `x`.

use crate::buffer::{assemble, Buffer};
use crate::{Error, PartyId, Result};
use std::ops::Range;

/// One party's view of a secret-shared tensor: pieces `x_i` (`mine`) and `x_{i+1}` (`next`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    shape: Vec<usize>,
    mine: Buffer,
    next: Buffer,
}

impl Share {
    /// Build from the two pieces (crate-internal: only protocols create shares).
    pub(crate) fn from_pieces(shape: &[usize], mine: impl Into<Buffer>, next: impl Into<Buffer>) -> Share {
        let (mine, next) = (mine.into(), next.into());
        debug_assert_eq!(Some(mine.len()), crate::tensor::numel(shape).ok());
        debug_assert_eq!(next.len(), mine.len());
        Share { shape: shape.to_vec(), mine, next }
    }
    /// Shape of the secret.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.mine.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.mine.is_empty()
    }
    /// Piece `x_i` of party `i`.
    pub fn mine(&self) -> &Buffer {
        &self.mine
    }
    /// Piece `x_{i+1}` of party `i`.
    pub fn next(&self) -> &Buffer {
        &self.next
    }
    /// The elements of `parts`, one after the other, viewed with `shape` (local, no message; copied where the pieces
    /// are, on the device of a device backend). An error when `shape` does not hold exactly the elements of all
    /// parts.
    pub fn concat(parts: &[&Share], shape: &[usize]) -> Result<Share> {
        let total: usize = parts.iter().map(|s| s.len()).sum();
        check_numel("concatenation", shape, total)?;
        let mine: Vec<(&Buffer, Range<usize>)> = parts.iter().map(|s| (&s.mine, 0..s.len())).collect();
        let next: Vec<(&Buffer, Range<usize>)> = parts.iter().map(|s| (&s.next, 0..s.len())).collect();
        Ok(Share { shape: shape.to_vec(), mine: assemble(&mine)?, next: assemble(&next)? })
    }

    /// Elements `range` of the flat pieces, viewed with `shape` (local, no message; copied where the pieces are). An
    /// error when the range is outside the share or `shape` does not hold exactly its elements.
    pub fn slice(&self, range: Range<usize>, shape: &[usize]) -> Result<Share> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::Shape {
                op: "share slice".into(),
                expected: format!("a range within 0..{}", self.len()),
                found: format!("{range:?}"),
            });
        }
        check_numel("share slice", shape, range.len())?;
        Ok(Share {
            shape: shape.to_vec(),
            mine: assemble(&[(&self.mine, range.clone())])?,
            next: assemble(&[(&self.next, range)])?,
        })
    }

    /// The same pieces viewed with another shape of equal size (a reshape is free on shares).
    pub fn reshaped(mut self, shape: &[usize]) -> Option<Share> {
        (crate::tensor::numel(shape).ok() == Some(self.len())).then(|| {
            self.shape = shape.to_vec();
            self
        })
    }

    /// [`Share::reshaped`] where the sizes agree by construction: a mismatch is a bug, reported as
    /// [`Error::Internal`] naming `what`.
    pub(crate) fn viewed(self, shape: &[usize], what: &str) -> Result<Share> {
        let found = self.shape.clone();
        self.reshaped(shape).ok_or_else(|| Error::Internal(format!("{what}: {found:?} viewed as {shape:?}")))
    }
}

fn check_numel(op: &str, shape: &[usize], elements: usize) -> Result<()> {
    if crate::tensor::numel(shape)? != elements {
        return Err(Error::Shape {
            op: op.into(),
            expected: format!("a shape of {elements} elements"),
            found: format!("{shape:?}"),
        });
    }
    Ok(())
}

/// The party after `i`.
pub fn next_party(i: PartyId) -> PartyId {
    (i + 1) % 3
}

/// The party before `i`.
pub fn prev_party(i: PartyId) -> PartyId {
    (i + 2) % 3
}
