//! The base every protocol builds on: the rotating roles of the one-sender steps, public divisors as kernels apply
//! them, zero-share pieces, and the epilogue that turns a party's local product into its part of a reshare
//! (masked, and with division, R0's message). Nothing here sends a message; [`super::reshare`] runs the messages
//! and the combine stages. Every other protocol file may import from here; this file imports no protocol file, so
//! the protocol modules form no import cycle.

use crate::backend::Source;
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::{Error, PartyId, Result};
use cryptgpu_codegen::{MapBuilder, Reg};

/// Largest supported public divisor.
pub const MAX_DIVISOR: u64 = i64::MAX as u64;

/// A public divisor, as the kernels apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divisor {
    /// `2^k` (arithmetic shift), `k < 63`.
    Pow2(u32),
    /// Any integer in `1..=MAX_DIVISOR` (signed floor division, a kernel parameter).
    Int(u64),
}

impl Divisor {
    /// The divisor for `d`, or an error when `d` is outside `1..=MAX_DIVISOR`.
    pub fn new(d: u64) -> Result<Divisor> {
        if d == 0 || d > MAX_DIVISOR {
            return Err(Error::DivisorOutOfRange { divisor: d });
        }
        Ok(if d.is_power_of_two() { Divisor::Pow2(d.trailing_zeros()) } else { Divisor::Int(d) })
    }

    /// Emit `⌊x / d⌋` (signed) into a kernel.
    pub(crate) fn emit(self, b: &mut MapBuilder, x: Reg) -> Reg {
        match self {
            Divisor::Pow2(k) => b.sar(x, k),
            Divisor::Int(_) => {
                let d = b.param(0);
                b.floor_div(x, d)
            }
        }
    }

    /// Kernel parameters the emitted code reads.
    pub(crate) fn params(self) -> Vec<u64> {
        match self {
            Divisor::Pow2(_) => vec![],
            Divisor::Int(d) => vec![d],
        }
    }
}

/// Arithmetic (sums to 0 mod 2^64) or binary (XORs to 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroKind {
    /// `F(k_i) − F(k_{i+1})`.
    Arithmetic,
    /// `F(k_i) ⊕ F(k_{i+1})`.
    Binary,
}

/// Emit a zero-share piece from PRF stream slots `prev` (key `k_i`) and `next` (key `k_{i+1}`).
pub(crate) fn emit_zero(b: &mut MapBuilder, kind: ZeroKind, prev: u16, next: u16) -> Reg {
    let (p, n) = (b.prg(prev), b.prg(next));
    match kind {
        ZeroKind::Arithmetic => b.sub(p, n),
        ZeroKind::Binary => b.xor(p, n),
    }
}

/// R0's local step: `B = c + 2^62`; the message `⌊B/2^k⌋ + 1 − 2^(62−k) − s` (mask `s` in PRF slot 2), `s` and
/// `a = msb(B)`.
pub(crate) fn r0_message(b: &mut MapBuilder, c: Reg, k: u32) -> [Reg; 3] {
    let offset = b.constant(1 << 62);
    let big_b = b.add(c, offset);
    let q = b.op(cryptgpu_codegen::Op::Shr(big_b, k));
    let adj = b.constant(1u64.wrapping_sub(1 << (62 - k)));
    let q1 = b.add(q, adj);
    let s = b.prg(2);
    let msg = b.sub(q1, s);
    let a = b.op(cryptgpu_codegen::Op::Shr(big_b, 63));
    [msg, s, a]
}

/// R0's local step in a kernel: `B = c + 2^62`; outputs the message `⌊B/2^k⌋ + 1 − 2^(62−k) − s`, the mask `s`
/// (PRF slot 2) and `a = msb(B)`.
pub(crate) fn emit_r0_message(b: &mut MapBuilder, c: Reg, k: u32) {
    let [msg, s, a] = r0_message(b, c, k);
    b.output(msg).output(s).output(a);
}

/// The role of `party` at `step` in a reshare with division: R0 is party `step mod 3`.
pub(crate) fn role(party: usize, step: u64) -> usize {
    (party + 3 - (step % 3) as usize) % 3
}

/// How a 3-out-of-3 sum becomes replicated shares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reshare {
    /// Exact ring value.
    Plain,
    /// Divide by a public integer (truncation when a power of two), probabilistic (one round).
    Divide(Divisor),
    /// Divide by `2^k` with no wrap failure for |z| < 2^62 (two rounds; see [`super::exact`]).
    ExactTruncate(u32),
}

impl Party {
    /// PRF streams of the local step's epilogue at `step` (see [`Party::reshare_epilogue`] for their use; the fused
    /// exact truncation appends its own, see [`Party::fused_exact_streams`]).
    pub(crate) fn reshare_streams(&self, how: Reshare, step: u64) -> Vec<crate::prg::Stream> {
        let zero = |k| self.stream(k, Purpose::ZeroShare, step);
        let mask = |k| self.stream(k, Purpose::TruncMask, step);
        match (how, role(self.id(), step)) {
            (Reshare::Plain, _) if self.mutated(crate::mutation::Mutation::ZeroShareDropped) => vec![],
            (Reshare::Plain, _) => vec![zero(KeyWith::Prev), zero(KeyWith::Next)],
            (Reshare::ExactTruncate(_), role) if self.fused_truncation => {
                let mut streams = match role {
                    0 => vec![zero(KeyWith::Prev), zero(KeyWith::Next), mask(KeyWith::Next)],
                    1 => vec![zero(KeyWith::Prev), mask(KeyWith::Prev)],
                    _ => vec![zero(KeyWith::Next)],
                };
                streams.extend(self.fused_exact_streams(role, step));
                streams
            }
            (_, 0) => vec![zero(KeyWith::Prev), zero(KeyWith::Next), mask(KeyWith::Next)],
            (_, 1) => vec![zero(KeyWith::Prev), mask(KeyWith::Prev)],
            (_, _) => vec![zero(KeyWith::Next)],
        }
    }

    /// Parameters of the local step's epilogue.
    pub(crate) fn reshare_params(how: Reshare) -> Vec<u64> {
        match how {
            Reshare::Divide(d) => d.params(),
            Reshare::Plain | Reshare::ExactTruncate(_) => vec![],
        }
    }

    /// Append this party's local reshare step to a kernel whose local product is `value`: mask it, then (with
    /// division) form R0's message. Marks the outputs that [`Party::finish_reshare`] expects.
    ///
    /// Masks: the plain reshare adds the zero share `α_i = F(k_i) − F(k_{i+1})`. With division only `c_1` (sent to
    /// R2) and `c_2` (sent to R1) leave their party, so only they need masks R1 and R2 cannot remove:
    /// R1 adds `F(k_{R1})` (shared with R0), R2 subtracts `F(k_{R0})` (shared with R0), and R0 adds
    /// `F(k_{R0}) − F(k_{R1})`, which also makes `B` uniform. (The full zero share's `F(k_{R2})` terms, known to both
    /// R1 and R2, would cancel inside `A = c_1 + c_2` and mask nothing.)
    pub(crate) fn reshare_epilogue(&self, b: &mut MapBuilder, value: Reg, how: Reshare, step: u64) {
        let role = role(self.id(), step);
        let c = match (how, role) {
            (Reshare::Plain, _) if self.mutated(crate::mutation::Mutation::ZeroShareDropped) => value,
            (Reshare::Plain, _) | (_, 0) => {
                let alpha = emit_zero(b, ZeroKind::Arithmetic, 0, 1);
                b.add(value, alpha)
            }
            (_, 1) => {
                let z = b.prg(0);
                b.add(value, z)
            }
            (_, _) => {
                let z = b.prg(0);
                b.sub(value, z)
            }
        };
        match (how, role) {
            (Reshare::ExactTruncate(k), _) if self.fused_truncation => {
                // The whole local work of the exact truncation that needs no message (see `super::exact`).
                Party::fused_exact_epilogue(b, c, k, role);
            }
            (Reshare::Plain, _) | (_, 2) => {
                b.output(c);
            }
            (Reshare::ExactTruncate(k), 0) => {
                // B = c + 2^62 (so 0 ≤ B + A < 2^63 as the true sum); message ⌊B/2^k⌋ + 1 − 2^(62−k) − s; a = msb(B).
                emit_r0_message(b, c, k);
            }
            (Reshare::Divide(d), 0) => {
                let q = d.emit(b, c);
                let one = b.constant(1);
                let q1 = b.add(q, one);
                let s = b.prg(2);
                let msg = b.sub(q1, s);
                b.output(msg).output(s);
            }
            (_, _) => {
                let s = b.prg(1);
                b.output(c).output(s);
            }
        }
    }
}

/// The buffers of a kernel launch or a round that yields exactly `N` of them (an internal error otherwise, never
/// a panic).
pub(crate) fn buffers<const N: usize>(v: Vec<Buffer>) -> Result<[Buffer; N]> {
    let found = v.len();
    v.try_into().map_err(|_| Error::Internal(format!("{found} buffers where {N} were expected")))
}

/// The single buffer of a kernel launch or a round that yields exactly one.
pub(crate) fn single(v: Vec<Buffer>) -> Result<Buffer> {
    let [x] = buffers(v)?;
    Ok(x)
}

/// The first of the rides a round brought, taken (an internal error naming `what` when none came, never a panic).
pub(crate) fn first_ride(rides: &mut Vec<Buffer>, what: &str) -> Result<Buffer> {
    if rides.is_empty() {
        return Err(Error::Internal(format!("{what} did not ride along")));
    }
    Ok(rides.remove(0))
}

/// Words of a message of `n` values of which only the low `k` bits travel.
pub fn packed_len(n: usize, k: u32) -> usize {
    cryptgpu_codegen::packed_words(n, k)
}

impl Party {
    /// Pack the low `k` bits of every value of `v` ([`cryptgpu_codegen::values_per_word`] per word; value `j·m + i` in slot `j` of
    /// word `i`, `m` the packed length).
    ///
    /// The bits above the last slot carry fresh private PRF bits (the receiver ignores them), so that no bit of a
    /// message word is constant.
    pub(crate) fn pack_low_bits(&mut self, v: &Buffer, k: u32) -> Result<Buffer> {
        let per = cryptgpu_codegen::values_per_word(k);
        if per == 1 {
            return Ok(self.copy_of(v));
        }
        let m = packed_len(v.len(), k);
        // Slot j packs v[j·m ..][..m]; the last slot may be short: only it is copied and padded (a value count of 1
        // with three slots, the only case where padding reaches an earlier slot, is padded whole).
        let padded_all;
        let v = if v.len() < (per - 1) * m {
            let fill = self.padding(m * per - v.len())?;
            padded_all = self.assemble(&[(v, 0..v.len()), (&fill, 0..fill.len())])?;
            &padded_all
        } else {
            v
        };
        let last_range = (per - 1) * m..v.len();
        let padded_last;
        let last = if last_range.len() == m {
            Source::Range(v, last_range)
        } else {
            // The slots past the last value carry private random bits too.
            let fill = self.padding(m - last_range.len())?;
            padded_last = self.assemble(&[(v, last_range), (&fill, 0..fill.len())])?;
            Source::Buf(&padded_last)
        };
        let mut b = MapBuilder::new("pack_low_bits");
        let mask = b.constant(low_mask(k));
        let mut word = None;
        for j in 0..per {
            let x = b.input(j as u16);
            let lo = b.and(x, mask);
            let placed = if j == 0 { lo } else { b.shl(lo, j as u32 * k) };
            word = Some(match word {
                None => placed,
                Some(w) => b.op(cryptgpu_codegen::Op::Or(w, placed)),
            });
        }
        let mut word = word.ok_or_else(|| Error::Internal("packing into zero slots".into()))?;
        let used = per as u32 * k;
        let mut streams = Vec::new();
        if used < 64 {
            self.padding_draws += 1;
            streams.push(self.stream(KeyWith::Own, Purpose::Padding, self.padding_draws));
            let (r, top) = (b.prg(0), b.constant(!low_mask(used)));
            let pad = b.and(r, top);
            word = b.op(cryptgpu_codegen::Op::Or(word, pad));
        }
        b.output(word);
        let mut inputs: Vec<Source<'_>> = (0..per - 1).map(|j| Source::Range(v, j * m..(j + 1) * m)).collect();
        inputs.push(last);
        single(self.map_sources(&b.build(), &inputs, &[], &streams, m)?)
    }

    /// `n` of this party's private random words (the padding of packed messages, see [`Party::pack_low_bits`]).
    fn padding(&mut self, n: usize) -> Result<Buffer> {
        self.padding_draws += 1;
        let stream = self.stream(KeyWith::Own, Purpose::Padding, self.padding_draws);
        let mut b = MapBuilder::new("pack_padding");
        let r = b.prg(0);
        b.output(r);
        single(self.map(&b.build(), &[], &[], &[stream], n)?)
    }

    /// The `n` values [`Party::pack_low_bits`] packed (their low `k` bits; the rest zero), received from `from`
    /// (recorded in the view as what this party reads, see [`crate::party::ViewEntry::unpacked_bits`]).
    pub(crate) fn unpack_low_bits(&self, w: &Buffer, n: usize, k: u32, from: PartyId) -> Result<Buffer> {
        let per = cryptgpu_codegen::values_per_word(k);
        if per == 1 {
            return Ok(self.copy_of(w));
        }
        let mut b = MapBuilder::new("unpack_low_bits");
        let x = b.packed_input(0, k);
        b.output(x);
        let v = single(self.map(&b.build(), &[w], &[], &[], n)?)?;
        self.log_unpacked(from, k, &v)?;
        Ok(v)
    }

    /// Record in the view what a map that reads `w` through a packed load ([`cryptgpu_codegen::Load::Packed`])
    /// reads: the `n` values [`Party::unpack_low_bits`] would return (nothing is computed unless a view is kept).
    pub(crate) fn note_packed_read(&self, w: &Buffer, n: usize, k: u32, from: PartyId) -> Result<()> {
        if self.records_view() {
            self.unpack_low_bits(w, n, k, from)?;
        }
        Ok(())
    }
}

/// `2^k − 1`.
fn low_mask(k: u32) -> u64 {
    if k >= 64 {
        u64::MAX
    } else {
        (1u64 << k) - 1
    }
}
