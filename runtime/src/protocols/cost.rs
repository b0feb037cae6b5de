//! Declared communication costs (rounds, bytes per element per party) of every protocol, as data.

/// What a protocol call costs: rounds, and the bytes each party sends per element, largest first (which party
/// plays which role rotates from call to call, so the declaration is of the multiset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Sequential communication rounds.
    pub rounds: u64,
    /// Bytes sent per element by each party, sorted largest first.
    pub bytes_per_elt: [u64; 3],
}

impl Cost {
    /// Bytes each party sends for `elements` elements, largest first.
    pub fn bytes_for(&self, elements: usize) -> [u64; 3] {
        self.bytes_per_elt.map(|b| b * elements as u64)
    }
    /// Largest per-party bytes per element.
    pub fn max_bytes_per_elt(&self) -> u64 {
        self.bytes_per_elt[0]
    }
}

/// Sharing a tensor from its owner.
pub const SHARE: Cost = Cost { rounds: 1, bytes_per_elt: [16, 0, 0] };
/// Revealing to all three parties.
pub const REVEAL_ALL: Cost = Cost { rounds: 1, bytes_per_elt: [8, 8, 8] };
/// Revealing to one party.
pub const REVEAL_TO_ONE: Cost = Cost { rounds: 1, bytes_per_elt: [8, 0, 0] };
/// Multiplication (elementwise, matmul, conv2d), with or without the fused truncation, per output element.
pub const MUL: Cost = Cost { rounds: 1, bytes_per_elt: [8, 8, 8] };
/// Truncation or division of a share by a public integer, per output element (average pooling too).
pub const DIVIDE: Cost = Cost { rounds: 1, bytes_per_elt: [8, 0, 0] };
/// Local operations.
pub const LOCAL: Cost = Cost { rounds: 0, bytes_per_elt: [0, 0, 0] };
