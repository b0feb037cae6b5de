//! Declared communication costs (rounds, bytes per element per party) of every protocol, as data.

/// What a protocol call costs: rounds, the bytes each party sends per element, and the exact truncation's wrap terms
/// each party sends per element, which travel as `k`-bit values packed into words ([`super::base::packed_len`]);
/// largest first (which party plays which role rotates from call to call, so the declaration is of the multiset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Sequential communication rounds.
    pub rounds: u64,
    /// Bytes sent per element by each party (full words), sorted largest first.
    pub bytes_per_elt: [u64; 3],
    /// Wrap terms sent per element by each party, packed `k` bits each (exact truncations only).
    pub wrap_terms: [u64; 3],
}

impl Cost {
    const fn words(rounds: u64, bytes_per_elt: [u64; 3]) -> Cost {
        Cost { rounds, bytes_per_elt, wrap_terms: [0, 0, 0] }
    }

    /// Bytes each party sends for `elements` elements under a truncation by `k` bits (which sizes the packed wrap
    /// terms of an exact truncation; irrelevant for every other cost), largest first.
    pub fn bytes_for(&self, elements: usize, k: u32) -> [u64; 3] {
        core::array::from_fn(|i| {
            let packed = super::base::packed_len(self.wrap_terms[i] as usize * elements, k) as u64;
            self.bytes_per_elt[i] * elements as u64 + 8 * packed
        })
    }
}

/// Sharing a tensor from its owner.
pub const SHARE: Cost = Cost::words(1, [16, 0, 0]);
/// Revealing to all three parties.
pub const REVEAL_ALL: Cost = Cost::words(1, [8, 8, 8]);
/// Revealing to one party.
pub const REVEAL_TO_ONE: Cost = Cost::words(1, [8, 0, 0]);
/// Multiplication (elementwise, matmul, conv2d) in the ring or with the probabilistic truncation fused, per output
/// element.
pub const MUL: Cost = Cost::words(1, [8, 8, 8]);
/// Truncation or division of a share by a public integer, per output element (average pooling too), in the
/// probabilistic mode (and for every divisor that is not a power of two).
pub const DIVIDE: Cost = Cost::words(1, [8, 0, 0]);
/// Multiplication with exact truncation (the default mode), per output element: R0 its message and its wrap bit's
/// piece, R1 and R2 their sums and their term of the wrap product — the wrap values as `k`-bit packed terms (at
/// `t = 20`: 8 + 8/3 bytes each).
pub const MUL_EXACT: Cost = Cost { rounds: 2, bytes_per_elt: [8, 8, 8], wrap_terms: [1, 1, 1] };
/// Exact truncation of a share by a power of two (the default mode), per element: R0 its message and its wrap bit's
/// piece; R1 and R2 their term of the wrap product (the wrap values packed as for [`MUL_EXACT`]).
pub const DIVIDE_EXACT: Cost = Cost { rounds: 2, bytes_per_elt: [8, 0, 0], wrap_terms: [1, 1, 1] };
/// Local operations.
pub const LOCAL: Cost = Cost::words(0, [0, 0, 0]);

/// Words every party sends in the sign circuit's carry tree for `n` elements (`D` digits: per level, a carry AND
/// per pair of groups and a propagate AND per pair but the lowest).
fn sign_tree_words(n: usize, bits: super::SignBits) -> u64 {
    let w = n.div_ceil(64) as u64;
    let mut total = 0;
    let mut groups = bits.digits() as u64;
    while groups > 1 {
        let pairs = groups / 2;
        total += (pairs + pairs.saturating_sub(1)) * w;
        groups = pairs + groups % 2;
    }
    total
}

/// Rounds of the sign circuit: the one-hot round, the re-replication, then one per carry-tree level.
pub fn sign_rounds(bits: super::SignBits) -> u64 {
    2 + u64::from(bits.digits().next_power_of_two().trailing_zeros())
}

/// Bytes each party sends in DReLU of `n` elements, by role (R0, R1, R2; R0 the largest): R0 the masked one-hot
/// codes (16 planes per digit) and its top bit; R1 and R2 the re-replication (`2·D` planes); all the carry tree.
pub fn drelu_bytes(n: usize, bits: super::SignBits) -> [u64; 3] {
    let w = n.div_ceil(64) as u64;
    let d = bits.digits() as u64;
    let t = sign_tree_words(n, bits);
    let (one_hot, rerep) = ((super::sign::DIGIT_VALUES as u64 * d + 1) * w, 2 * d * w);
    [8 * (t + one_hot), 8 * (t + rerep), 8 * (t + rerep)]
}

/// Bytes each party sends in a multiplication by a shared bit of `n` elements, largest first: the injection's R0
/// sends `r`'s piece, its masked part of the product and `c` twice (a plane each); R1 and R2 the re-replication
/// word.
pub fn mul_bit_bytes(n: usize) -> [u64; 3] {
    let (n, w) = (n as u64, n.div_ceil(64) as u64);
    [8 * (2 * n + 2 * w), 8 * n, 8 * n]
}

/// ReLU bytes by the role each party plays at the call's first step (the injection's R0, R1, R2). The sign's step
/// follows the injection's, so the injection's R0 is the sign's R2, its R1 the sign's R0 (which sends the one-hot
/// codes) and its R2 the sign's R1. The injection adds `r`'s piece and R0's part of the product, the reveal of `c`
/// (R0 two planes) and the re-replication. With two or more digits the sign's last AND (a plane each) goes into the
/// reveal instead of its own round, and R0 sends R2 the mask's piece (a plane): the same bytes, one round fewer.
pub fn relu_bytes_by_role(n: usize, bits: super::SignBits) -> [u64; 3] {
    let (nn, w) = (n as u64, n.div_ceil(64) as u64);
    let [s0, s1, s2] = drelu_bytes(n, bits);
    [8 * (2 * nn + 2 * w) + s2, 8 * nn + s0, 8 * nn + s1]
}

/// Rounds of ReLU over `bits`: the sign circuit, then the reveal of the injection's masked bit (merged with the
/// sign's last AND when there are two or more digits) and the re-replication.
pub fn relu_rounds_for(bits: super::SignBits) -> u64 {
    sign_rounds(bits) + if bits.digits() == 1 { 2 } else { 1 }
}

/// Rounds of [`Party::relu_backward`](crate::Party::relu_backward): R0's part of the product with the shared bit,
/// the re-replication.
pub const RELU_BACKWARD_ROUNDS: u64 = 2;

/// Bytes each party sends in [`Party::relu_backward`](crate::Party::relu_backward) of `n` elements, largest first:
/// the forward's R0 its masked part of the product; R1 and R2 the re-replication word.
pub fn relu_backward_bytes(n: usize) -> [u64; 3] {
    let n = n as u64;
    [8 * n, 8 * n, 8 * n]
}

/// Bytes each party sends in ReLU of `n` elements, largest first.
pub fn relu_bytes(n: usize, bits: super::SignBits) -> [u64; 3] {
    let mut b = relu_bytes_by_role(n, bits);
    b.sort_unstable_by(|x, y| y.cmp(x));
    b
}

// Comparisons, max/argmax tournaments and max pooling (comparison.rs, max.rs).

/// Rounds of a comparison ([`comparison`](super::comparison): one DReLU of a difference).
pub fn comparison_rounds() -> u64 {
    sign_rounds(super::SignBits::default())
}

/// Bytes each party sends in a comparison of `n` elements, largest first.
pub fn comparison_bytes(n: usize) -> [u64; 3] {
    drelu_bytes(n, super::SignBits::default())
}

/// Rounds of a multiplication by a shared bit.
pub const MUL_BIT_ROUNDS: u64 = 3;

/// Levels of a tournament over `k` candidates: `⌈log2 k⌉`.
pub fn tournament_levels(k: usize) -> u64 {
    u64::from(k.max(1).next_power_of_two().trailing_zeros())
}

/// Pairs played at each level of a tournament over `k` candidates (an odd one passes through).
fn tournament_pairs(k: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cands = k;
    while cands > 1 {
        out.push(cands / 2);
        cands = cands / 2 + cands % 2;
    }
    out
}

/// Rounds of the maximum over `k` candidates: one ReLU per level, `7·⌈log2 k⌉`.
pub fn max_rounds(k: usize) -> u64 {
    relu_rounds() * tournament_levels(k)
}

/// Rounds of the maximum with argmax over `k` candidates: one DReLU and one batched bit injection per level,
/// `9·⌈log2 k⌉`.
pub fn argmax_rounds(k: usize) -> u64 {
    (sign_rounds(super::SignBits::default()) + MUL_BIT_ROUNDS) * tournament_levels(k)
}

/// The sum over levels of per-party bytes by role (the tournament aligns every sub-protocol so that party `i` plays
/// role `i`), largest first.
fn tournament_sum(levels: impl Iterator<Item = [u64; 3]>) -> [u64; 3] {
    let mut total = [0u64; 3];
    for b in levels {
        for (t, x) in total.iter_mut().zip(b) {
            *t += x;
        }
    }
    total.sort_unstable_by(|x, y| y.cmp(x));
    total
}

/// Bytes each party sends in the maximum over `k` candidates of `m` independent instances, largest first.
pub fn max_bytes(k: usize, m: usize) -> [u64; 3] {
    tournament_sum(
        tournament_pairs(k).into_iter().map(|pairs| relu_bytes_by_role(pairs * m, super::SignBits::default())),
    )
}

/// Bytes each party sends in the maximum with argmax over `k` candidates of `m` instances, largest first: per level
/// a DReLU of the `pairs·m` differences (R0 sends the planes) and a bit injection of those and of the pairs'
/// one-hots, `2·pairs·2^level·m` more elements (R0 sends `r`'s piece and `c`). The roles coincide, as
/// [`drelu_bytes`] and [`mul_bit_bytes`] list R0 first and R1 = R2.
pub fn argmax_bytes(k: usize, m: usize) -> [u64; 3] {
    let bits = super::SignBits::default();
    tournament_sum(tournament_pairs(k).into_iter().enumerate().map(|(level, pairs)| {
        let (d, b) = (drelu_bytes(pairs * m, bits), mul_bit_bytes(pairs * m + 2 * pairs * (1 << level) * m));
        [d[0] + b[0], d[1] + b[1], d[2] + b[2]]
    }))
}

/// Max pooling backward, per window element (`kh·kw·N·C·OH·OW`): one ring product of the one-hot and the
/// broadcast gradient; the scatter back is local.
pub const MAX_POOL2D_BACKWARD: Cost = MUL;

// Non-linear functions (normalize.rs, exp.rs, reciprocal.rs; rsqrt.rs, log.rs and softmax.rs declare their own
// costs from these, as they depend on their tables).

/// Rounds of a fixed-point product, and of a truncation by a power of two, under `mode`.
pub fn fixed_mul_rounds(mode: super::TruncationMode) -> u64 {
    match mode {
        super::TruncationMode::Exact => MUL_EXACT.rounds,
        super::TruncationMode::Probabilistic => MUL.rounds,
    }
}

/// Rounds of ReLU over the default (full) bit range ([`relu_rounds_for`]).
pub fn relu_rounds() -> u64 {
    relu_rounds_for(super::SignBits::default())
}

/// Rounds of the exponential with `iterations` squarings: a truncation, one batched ReLU (both clips), the squarings.
pub fn exp_rounds(iterations: u32, mode: super::TruncationMode) -> u64 {
    let m = fixed_mul_rounds(mode);
    m + relu_rounds() + u64::from(iterations) * m
}

/// Rounds of the exponent normalisation with `levels` levels: the batched DReLU, the bit injection, `levels − 1`
/// truncations of the input and one batched product.
pub fn normalize_rounds(levels: u32, mode: super::TruncationMode) -> u64 {
    let m = fixed_mul_rounds(mode);
    sign_rounds(super::SignBits::default()) + MUL_BIT_ROUNDS + u64::from(levels.saturating_sub(1)) * m + m
}

/// Rounds of the reciprocal with `steps` Newton steps: normalisation (one level), two products per step, a
/// fixed-point and a ring product to rescale.
pub fn reciprocal_rounds(steps: u32, mode: super::TruncationMode) -> u64 {
    let m = fixed_mul_rounds(mode);
    normalize_rounds(1, mode) + 2 * u64::from(steps) * m + m + MUL.rounds
}
