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
/// Multiplication (elementwise, matmul, conv2d) in the ring or with the probabilistic truncation fused, per output
/// element.
pub const MUL: Cost = Cost { rounds: 1, bytes_per_elt: [8, 8, 8] };
/// Truncation or division of a share by a public integer, per output element (average pooling too), in the
/// probabilistic mode (and for every divisor that is not a power of two).
pub const DIVIDE: Cost = Cost { rounds: 1, bytes_per_elt: [8, 0, 0] };
/// Multiplication with exact truncation (the default mode), per output element: R0's message, its wrap bit's
/// piece and the bit product; R1 and R2 their sums and the bit product.
pub const MUL_EXACT: Cost = Cost { rounds: 2, bytes_per_elt: [24, 16, 16] };
/// Exact truncation of a share by a power of two (the default mode), per element.
pub const DIVIDE_EXACT: Cost = Cost { rounds: 2, bytes_per_elt: [24, 8, 8] };
/// Local operations.
pub const LOCAL: Cost = Cost { rounds: 0, bytes_per_elt: [0, 0, 0] };

/// Words every party sends in the sign circuit's ANDs for `n` elements (the generate round and the prefix tree).
fn sign_and_words(n: usize, bits: super::SignBits) -> u64 {
    let w = n.div_ceil(64) as u64;
    let leaves = (bits.high - bits.low) as u64;
    let mut total = leaves * w;
    let mut groups = leaves;
    while groups > 1 {
        let pairs = groups / 2;
        total += (pairs + pairs.saturating_sub(1)) * w;
        groups = pairs + groups % 2;
    }
    total
}

/// Rounds of the sign circuit: sharing, generate, then one per prefix-tree level.
pub fn sign_rounds(bits: super::SignBits) -> u64 {
    2 + u64::from((bits.high - bits.low).next_power_of_two().trailing_zeros())
}

/// Bytes each party sends in DReLU of `n` elements, largest first (R0 also shares its two-summand planes).
pub fn drelu_bytes(n: usize, bits: super::SignBits) -> [u64; 3] {
    let w = n.div_ceil(64) as u64;
    let t = sign_and_words(n, bits);
    [8 * (t + (bits.high as u64 + 1) * w), 8 * t, 8 * t]
}

/// Bytes each party sends in a multiplication by a shared bit of `n` elements, largest first: the injection's R0
/// sends `r`'s piece, `c` twice (a plane each) and its product part; R1 and R2 their product part and the
/// re-replication word.
pub fn mul_bit_bytes(n: usize) -> [u64; 3] {
    let (n, w) = (n as u64, n.div_ceil(64) as u64);
    let mut b = [8 * (2 * n + 2 * w), 16 * n, 16 * n];
    b.sort_unstable_by(|x, y| y.cmp(x));
    b
}

/// Bytes each party sends in ReLU of `n` elements, largest first. The sign's R0 is the injection's R1 (their steps
/// are consecutive), so that party sends the two-summand planes on top of the injection's R1 share.
pub fn relu_bytes(n: usize, bits: super::SignBits) -> [u64; 3] {
    let (nn, w) = (n as u64, n.div_ceil(64) as u64);
    let t = sign_and_words(n, bits);
    let planes = bits.high as u64 + 1;
    let mut b = [8 * (t + 2 * nn + 2 * w), 8 * (t + planes * w + 2 * nn), 8 * (t + 2 * nn)];
    b.sort_unstable_by(|x, y| y.cmp(x));
    b
}
