//! Map interpreter: evaluates the SSA program one instruction at a time over chunks of elements, so each
//! instruction is a tight loop the compiler vectorises; chunks run in parallel.

use crate::prg::Stream;
use cryptgpu_codegen::{Load, MapKernel, Op};
use rayon::prelude::*;

/// Elements per chunk: registers of a chunk stay in L1/L2.
const CHUNK: usize = 1024;

thread_local! {
    /// This thread's registers, kept across chunks and launches (allocated once per thread and program size).
    static REGS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Everything a map reads.
pub(super) struct Operands<'a> {
    pub inputs: &'a [&'a [u64]],
    pub params: &'a [u64],
    pub streams: &'a [Stream],
    /// The GEMM accumulator, for epilogues.
    pub acc: Option<&'a [u64]>,
    /// Columns of the GEMM output (row/column loads).
    pub n_cols: usize,
    /// Elements of the launch (packed loads; set by [`run`]).
    pub elements: usize,
}

/// Fill `out` with values `start ..` of `n` packed ones (see [`Load::Packed`]): word `e mod m`, slot `⌊e/m⌋`, one
/// contiguous run of words per slot the chunk touches.
fn unpack_into(out: &mut [u64], words: &[u64], n: usize, bits: u32, start: usize) {
    let per = cryptgpu_codegen::values_per_word(bits);
    let m = cryptgpu_codegen::packed_words(n, bits);
    let mut e = start;
    let mut rest = out;
    while !rest.is_empty() {
        let (slot, i) = (e / m, e % m);
        let take = rest.len().min(m - i);
        let (now, later) = rest.split_at_mut(take);
        let src = &words[i..i + take];
        if per == 1 {
            now.copy_from_slice(src);
        } else {
            let (shift, mask) = (slot as u32 * bits, (1u64 << bits) - 1);
            now.iter_mut().zip(src).for_each(|(o, &w)| *o = (w >> shift) & mask);
        }
        rest = later;
        e += take;
    }
}

/// Run `k` (already validated) writing every output.
pub(super) fn run(k: &MapKernel, ops: &Operands<'_>, outputs: &mut [&mut [u64]]) {
    let n = outputs.first().map_or(0, |o| o.len());
    if n == 0 {
        return;
    }
    // Split every output into chunks, then hand chunk j of every output to one task.
    let mut per_chunk: Vec<Vec<&mut [u64]>> =
        (0..n.div_ceil(CHUNK)).map(|_| Vec::with_capacity(outputs.len())).collect();
    for out in outputs.iter_mut() {
        for (j, c) in out.chunks_mut(CHUNK).enumerate() {
            per_chunk[j].push(c);
        }
    }
    let ops = &Operands { elements: n, ..*ops };
    per_chunk.into_par_iter().enumerate().for_each(|(j, mut outs)| {
        REGS.with_borrow_mut(|regs| {
            let need = k.insts.len() * CHUNK;
            if regs.len() < need {
                regs.resize(need, 0);
            }
            let start = j * CHUNK;
            let len = outs[0].len();
            eval_chunk(k, ops, start, len, regs);
            for (out, &r) in outs.iter_mut().zip(&k.outputs) {
                out.copy_from_slice(read(k, ops, regs, r, start, len));
            }
        })
    });
}

fn eval_chunk(k: &MapKernel, ops: &Operands<'_>, start: usize, len: usize, regs: &mut [u64]) {
    for (i, op) in k.insts.iter().enumerate() {
        if in_place(op) {
            continue;
        }
        let (done, rest) = regs.split_at_mut(i * CHUNK);
        let out = &mut rest[..len];
        let reg = |r: cryptgpu_codegen::Reg| read(k, ops, done, r, start, len);
        match *op {
            Op::Input { buf, load } => {
                let b = ops.inputs[buf as usize];
                match load {
                    Load::Elem => unreachable!("aliased"),
                    Load::Row => out.iter_mut().enumerate().for_each(|(e, o)| *o = b[(start + e) / ops.n_cols]),
                    Load::Col => out.iter_mut().enumerate().for_each(|(e, o)| *o = b[(start + e) % ops.n_cols]),
                    Load::Packed { bits } => unpack_into(out, b, ops.elements, bits as u32, start),
                }
            }
            Op::Acc => unreachable!("aliased"),
            Op::Param(p) => out.fill(ops.params[p as usize]),
            Op::Const(c) => out.fill(c),
            Op::Prg(s) => ops.streams[s as usize].fill(start as u64, out),
            Op::Neg(a) => unary(out, reg(a), |x| x.wrapping_neg()),
            Op::Not(a) => unary(out, reg(a), |x| !x),
            Op::Shl(a, s) => unary(out, reg(a), |x| x << s),
            Op::Sar(a, s) => unary(out, reg(a), |x| ((x as i64) >> s) as u64),
            Op::Shr(a, s) => unary(out, reg(a), |x| x >> s),
            Op::Add(a, b) => binary(out, reg(a), reg(b), u64::wrapping_add),
            Op::Sub(a, b) => binary(out, reg(a), reg(b), u64::wrapping_sub),
            Op::Mul(a, b) => binary(out, reg(a), reg(b), u64::wrapping_mul),
            Op::And(a, b) => binary(out, reg(a), reg(b), |x, y| x & y),
            Op::Or(a, b) => binary(out, reg(a), reg(b), |x, y| x | y),
            Op::Xor(a, b) => binary(out, reg(a), reg(b), |x, y| x ^ y),
            Op::FloorDiv(a, b) => binary(out, reg(a), reg(b), |x, d| (x as i64).div_euclid(d as i64) as u64),
        }
    }
}

/// Element-indexed inputs and the accumulator are read in place, not copied into registers.
fn in_place(op: &Op) -> bool {
    matches!(op, Op::Input { load: Load::Elem, .. } | Op::Acc)
}

/// Chunk `len` of register `r`, wherever it lives (`regs` holds at least the registers before `r`).
fn read<'a>(
    k: &MapKernel,
    ops: &'a Operands<'_>,
    regs: &'a [u64],
    r: cryptgpu_codegen::Reg,
    start: usize,
    len: usize,
) -> &'a [u64] {
    match k.insts[r.0 as usize] {
        Op::Input { buf, load: Load::Elem } => &ops.inputs[buf as usize][start..start + len],
        Op::Acc => &ops.acc.expect("validated: epilogue has an accumulator")[start..start + len],
        _ => &regs[r.0 as usize * CHUNK..][..len],
    }
}

#[inline(always)]
fn unary(out: &mut [u64], a: &[u64], f: impl Fn(u64) -> u64) {
    out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x));
}

#[inline(always)]
fn binary(out: &mut [u64], a: &[u64], b: &[u64], f: impl Fn(u64, u64) -> u64) {
    out.iter_mut().zip(a).zip(b).for_each(|((o, &x), &y)| *o = f(x, y));
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptgpu_codegen::{packed_value, packed_words, values_per_word, MapBuilder};
    use rand::{Rng, SeedableRng};

    /// Pack `values` as [`Load::Packed`] documents it: value `j·m + i` in bits `j·bits ..` of word `i`.
    fn pack(values: &[u64], bits: u32) -> Vec<u64> {
        let (per, m) = (values_per_word(bits), packed_words(values.len(), bits));
        let mut words = vec![0u64; m];
        for (e, &v) in values.iter().enumerate() {
            let shift = (e / m.max(1)) as u32 * bits;
            words[e % m] |= if per == 1 { v } else { v << shift };
        }
        words
    }

    #[test]
    fn packed_loads_read_every_value_back_at_every_width_and_chunk_boundary() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for bits in [0u32, 1, 20, 21, 22, 31, 32, 33, 62, 64] {
            for n in (0..=13).chain([1023, 1024, 1025, 3 * 1024 + 1, 5000]) {
                let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
                let values: Vec<u64> = (0..n).map(|_| rng.gen::<u64>() & mask).collect();
                let words = pack(&values, bits);
                let mut b = MapBuilder::new("read_packed");
                let x = b.packed_input(0, bits);
                b.output(x);
                let k = b.build();
                let mut out = vec![u64::MAX; n];
                let ops = Operands { inputs: &[&words], params: &[], streams: &[], acc: None, n_cols: 1, elements: 0 };
                run(&k, &ops, &mut [&mut out]);
                assert_eq!(out, values, "bits {bits}, n {n}");
                for (e, &v) in values.iter().enumerate() {
                    assert_eq!(packed_value(&words, n, bits, e), v, "bits {bits}, n {n}, e {e}");
                }
            }
        }
    }
}
