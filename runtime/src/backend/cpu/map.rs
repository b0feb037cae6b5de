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
