//! Binary (XOR) replicated shares over `u64` words, in the bit-plane layout, and the AND protocol.
//!
//! A [`BinShare`] holds `planes` bit planes of `n` elements (`⌈n/64⌉` words each, see
//! `cryptgpu_codegen::BitKernel`): `v = v_0 ⊕ v_1 ⊕ v_2`, party `i` holding `(v_i, v_{i+1})`. XOR and NOT are local;
//! AND is one round: party `i` computes `c_i = x_i∧y_i ⊕ x_i∧y_{i+1} ⊕ x_{i+1}∧y_i` plus a fresh binary zero share
//! (so what it sends is uniform) and sends it to party `i−1`. Several independent ANDs share one round
//! ([`Party::and_many`]); each costs one bit per bit position and element per party.

use super::base::{buffers, emit_zero, single, ZeroKind};
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::{Error, Result};
use cryptgpu_codegen::{Affine, GatherKernel, MapBuilder};

/// One party's pieces of a binary-shared set of bit planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinShare {
    n: usize,
    planes: usize,
    mine: Buffer,
    next: Buffer,
}

impl BinShare {
    pub(crate) fn from_pieces(n: usize, planes: usize, mine: Buffer, next: Buffer) -> BinShare {
        debug_assert_eq!(mine.len(), planes * n.div_ceil(64));
        debug_assert_eq!(next.len(), mine.len());
        BinShare { n, planes, mine, next }
    }
    /// Elements.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Bit planes.
    pub fn planes(&self) -> usize {
        self.planes
    }
    /// Words per plane.
    pub fn words_per_plane(&self) -> usize {
        self.n.div_ceil(64)
    }
    /// Piece `v_i`.
    pub fn mine(&self) -> &Buffer {
        &self.mine
    }
    /// Piece `v_{i+1}`.
    pub fn next(&self) -> &Buffer {
        &self.next
    }
}

fn same_layout(op: &str, a: &BinShare, b: &BinShare) -> Result<()> {
    if (a.n, a.planes) != (b.n, b.planes) {
        return Err(Error::Shape {
            op: op.into(),
            expected: format!("{} planes of {} elements", a.planes, a.n),
            found: format!("{} planes of {} elements", b.planes, b.n),
        });
    }
    Ok(())
}

impl Party {
    /// `a ⊕ b` (local).
    pub fn xor(&mut self, a: &BinShare, b: &BinShare) -> Result<BinShare> {
        same_layout("xor", a, b)?;
        let mut k = MapBuilder::new("bin_xor");
        let (am, an, bm, bn) = (k.input(0), k.input(1), k.input(2), k.input(3));
        let (xm, xn) = (k.xor(am, bm), k.xor(an, bn));
        k.output(xm).output(xn);
        let [mine, next] =
            buffers(self.map(&k.build(), &[&a.mine, &a.next, &b.mine, &b.next], &[], &[], a.mine.len())?)?;
        Ok(BinShare::from_pieces(a.n, a.planes, mine, next))
    }

    /// `¬a` (local: piece 0 is complemented, by party 0 as `mine` and party 2 as `next`).
    pub fn not(&mut self, a: &BinShare) -> Result<BinShare> {
        let mut k = MapBuilder::new("bin_not");
        let (m, x) = (k.input(0), k.input(1));
        let (nm, nx) = (k.op(cryptgpu_codegen::Op::Not(m)), k.op(cryptgpu_codegen::Op::Not(x)));
        let (om, ox) = match self.id() {
            0 => (nm, x),
            2 => (m, nx),
            _ => (m, x),
        };
        k.output(om).output(ox);
        let [mine, next] = buffers(self.map(&k.build(), &[&a.mine, &a.next], &[], &[], a.mine.len())?)?;
        Ok(BinShare::from_pieces(a.n, a.planes, mine, next))
    }

    /// `a ∧ b`: one round.
    pub fn and(&mut self, a: &BinShare, b: &BinShare) -> Result<BinShare> {
        Ok(self.and_many(&[(a, b)])?.remove(0))
    }

    /// Several independent ANDs in one round.
    pub fn and_many(&mut self, pairs: &[(&BinShare, &BinShare)]) -> Result<Vec<BinShare>> {
        for (a, b) in pairs {
            same_layout("and", a, b)?;
        }
        self.call(|p| {
            let mut locals: Vec<Buffer> = Vec::with_capacity(pairs.len());
            for (a, b) in pairs {
                let step = p.next_step(); // one step (fresh zero-share streams) per AND
                locals.push(p.and_local(a, b, step)?);
            }
            let total: usize = locals.iter().map(|b| b.len()).sum();
            let (prev, next) = (p.prev(), p.next());
            let parts: Vec<(&Buffer, std::ops::Range<usize>)> = locals.iter().map(|b| (b, 0..b.len())).collect();
            let msg = p.assemble(&parts)?;
            let got = single(p.round(vec![(prev, msg)], &[(next, total)])?)?;
            let mut out = Vec::with_capacity(pairs.len());
            let mut at = 0;
            for ((a, _), mine) in pairs.iter().zip(locals) {
                let theirs = p.assemble(&[(&got, at..at + mine.len())])?;
                at += mine.len();
                out.push(BinShare::from_pieces(a.n, a.planes, mine, theirs));
            }
            Ok(out)
        })
    }

    /// The local step of an AND at `step`: this party's cross terms plus a fresh binary zero share (a 3-out-of-3 XOR
    /// share of `a ∧ b`). Each step must be used for one AND only.
    pub(crate) fn and_local(&self, a: &BinShare, b: &BinShare, step: u64) -> Result<Buffer> {
        let mut k = MapBuilder::new("bin_and_local");
        let (am, an, bm, bn) = (k.input(0), k.input(1), k.input(2), k.input(3));
        let t0 = k.and(am, bm);
        let t1 = k.and(am, bn);
        let t2 = k.and(an, bm);
        let s = k.xor(t0, t1);
        let s = k.xor(s, t2);
        let z = emit_zero(&mut k, ZeroKind::Binary, 0, 1);
        let c = k.xor(s, z);
        k.output(c);
        let streams = [
            self.stream(KeyWith::Prev, Purpose::ZeroShare, step),
            self.stream(KeyWith::Next, Purpose::ZeroShare, step),
        ];
        single(self.map(&k.build(), &[&a.mine, &a.next, &b.mine, &b.next], &[], &streams, a.mine.len())?)
    }

    /// Planes `offset, offset + stride, …` (`count` of them) of `a` (local gather).
    pub fn select_planes(&mut self, a: &BinShare, offset: usize, stride: usize, count: usize) -> Result<BinShare> {
        if count == 0 || offset + stride * (count - 1) >= a.planes {
            return Err(Error::Invalid(format!(
                "planes {offset} + {stride}·(0..{count}) of a {}-plane share",
                a.planes
            )));
        }
        let w = a.words_per_plane();
        let k = GatherKernel {
            name: "select_planes".into(),
            in_shape: vec![a.planes, w],
            out_shape: vec![count, w],
            reduce_shape: vec![],
            coords: vec![Affine { offset: offset as i64, terms: vec![(0, stride as i64)] }, Affine::axis(1)],
        };
        Ok(BinShare::from_pieces(a.n, count, self.gather(&k, &a.mine)?, self.gather(&k, &a.next)?))
    }

    /// Open `a` to all parties: its planes as words (one round, as [`Party::reveal`]).
    pub fn reveal_bits(&mut self, a: &BinShare) -> Result<Buffer> {
        self.call(|p| {
            let (prev, next) = (p.prev(), p.next());
            let got = single(p.round(vec![(prev, a.next.clone())], &[(next, a.next.len())])?)?;
            let mut k = MapBuilder::new("reveal_bits");
            let (m, x, g) = (k.input(0), k.input(1), k.input(2));
            let t = k.xor(m, x);
            let v = k.xor(t, g);
            k.output(v);
            single(p.map(&k.build(), &[&a.mine, &a.next, &got], &[], &[], got.len())?)
        })
    }

    /// Stack the planes of several shares of the same elements (local).
    pub fn stack_planes(&mut self, parts: &[&BinShare]) -> Result<BinShare> {
        let n = parts.first().map_or(0, |p| p.n);
        if parts.iter().any(|p| p.n != n) {
            return Err(Error::Invalid("stacking planes of different element counts".into()));
        }
        let planes = parts.iter().map(|p| p.planes).sum();
        let mine: Vec<(&Buffer, std::ops::Range<usize>)> = parts.iter().map(|p| (&p.mine, 0..p.mine.len())).collect();
        let next: Vec<(&Buffer, std::ops::Range<usize>)> = parts.iter().map(|p| (&p.next, 0..p.next.len())).collect();
        Ok(BinShare::from_pieces(n, planes, self.assemble(&mine)?, self.assemble(&next)?))
    }
}
