//! Zero shares: fresh sharings of zero from the pairwise PRF keys, without communication.
//!
//! Party `i` draws `F(k_i)` (shared with `i−1`) and `F(k_{i+1})` (shared with `i+1`); its piece is
//! `F(k_i) − F(k_{i+1})` (arithmetic) or `F(k_i) ⊕ F(k_{i+1})` (binary). Over the three parties every key's word
//! appears once with each sign, so the pieces sum (or XOR) to zero, while each piece alone is uniform to its holder's
//! peers. Protocols add these to every local product before it leaves a party.

use super::base::{emit_zero, single, ZeroKind};
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::Result;
use cryptgpu_codegen::MapBuilder;

impl Party {
    /// This party's piece of a fresh `n`-element sharing of zero (no communication).
    pub fn zero_share(&mut self, kind: ZeroKind, n: usize) -> Result<Buffer> {
        self.check_size("zero share", n)?;
        self.call(|p| {
            let step = p.next_step();
            let mut b = MapBuilder::new("zero_share");
            let z = emit_zero(&mut b, kind, 0, 1);
            b.output(z);
            let streams =
                [p.stream(KeyWith::Prev, Purpose::ZeroShare, step), p.stream(KeyWith::Next, Purpose::ZeroShare, step)];
            single(p.map(&b.build(), &[], &[], &streams, n)?)
        })
    }
}
