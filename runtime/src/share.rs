//! 2-out-of-3 replicated secret shares over Z_2^64.
//!
//! A secret `x` is split as `x = x_0 + x_1 + x_2`; party `i` holds the pieces `(x_i, x_{i+1})` (indices mod 3).
//! Any two parties can reconstruct; any single party's pieces are uniformly random and independent of `x`.

use crate::PartyId;

/// One party's view of a secret-shared tensor: pieces `x_i` (`mine`) and `x_{i+1}` (`next`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    shape: Vec<usize>,
    mine: Vec<u64>,
    next: Vec<u64>,
}

impl Share {
    /// Build from the two pieces (crate-internal: only protocols create shares).
    pub(crate) fn from_pieces(shape: &[usize], mine: Vec<u64>, next: Vec<u64>) -> Share {
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
    pub fn mine(&self) -> &[u64] {
        &self.mine
    }
    /// Piece `x_{i+1}` of party `i`.
    pub fn next(&self) -> &[u64] {
        &self.next
    }
    /// The same pieces viewed with another shape of equal size (a reshape is free on shares).
    pub fn reshaped(mut self, shape: &[usize]) -> Option<Share> {
        (crate::tensor::numel(shape).ok() == Some(self.len())).then(|| {
            self.shape = shape.to_vec();
            self
        })
    }
}

/// The party after `i`.
pub fn next_party(i: PartyId) -> PartyId {
    (i + 1) % 3
}

/// The party before `i`.
pub fn prev_party(i: PartyId) -> PartyId {
    (i + 2) % 3
}
