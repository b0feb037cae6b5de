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
    /// Per input: `Some(j)` when it is output `j` as it was before the launch (see
    /// [`crate::backend::Source::Prior`]); its entry in `inputs` is then unused. Empty: no such input.
    pub priors: &'a [Option<usize>],
}

impl Operands<'_> {
    /// The output whose prior contents input `buf` reads, if any.
    fn prior(&self, buf: u16) -> Option<usize> {
        self.priors.get(buf as usize).copied().flatten()
    }
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
            {
                // Inputs that are outputs' prior contents read this chunk of them before anything is written.
                let prior_chunks: Vec<&[u64]> =
                    if ops.priors.is_empty() { Vec::new() } else { outs.iter().map(|o| &**o).collect() };
                eval_chunk(k, ops, &prior_chunks, start, len, regs);
            }
            for (out, &r) in outs.iter_mut().zip(&k.outputs) {
                out.copy_from_slice(read(k, ops, regs, r, start, len));
            }
        })
    });
}

fn eval_chunk(k: &MapKernel, ops: &Operands<'_>, priors: &[&[u64]], start: usize, len: usize, regs: &mut [u64]) {
    for (i, op) in k.insts.iter().enumerate() {
        if in_place(op, ops) {
            continue;
        }
        let (done, rest) = regs.split_at_mut(i * CHUNK);
        let out = &mut rest[..len];
        let reg = |r: cryptgpu_codegen::Reg| read(k, ops, done, r, start, len);
        match *op {
            Op::Input { buf, load } => {
                let b = ops.inputs[buf as usize];
                match load {
                    Load::Elem => match ops.prior(buf) {
                        Some(j) => out.copy_from_slice(&priors[j][..len]),
                        None => unreachable!("read in place"),
                    },
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

/// Element-indexed inputs (but outputs' prior contents, copied first) and the accumulator are read in place, not
/// copied into registers.
fn in_place(op: &Op, ops: &Operands<'_>) -> bool {
    match *op {
        Op::Input { buf, load: Load::Elem } => ops.prior(buf).is_none(),
        Op::Acc => true,
        _ => false,
    }
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
        Op::Input { buf, load: Load::Elem } if ops.prior(buf).is_none() => {
            &ops.inputs[buf as usize][start..start + len]
        }
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
                let ops = Operands {
                    inputs: &[&words],
                    params: &[],
                    streams: &[],
                    acc: None,
                    n_cols: 1,
                    elements: 0,
                    priors: &[],
                };
                run(&k, &ops, &mut [&mut out]);
                assert_eq!(out, values, "bits {bits}, n {n}");
                for (e, &v) in values.iter().enumerate() {
                    assert_eq!(packed_value(&words, n, bits, e), v, "bits {bits}, n {n}, e {e}");
                }
            }
        }
    }

    /// The CPU backend with the trait's default `run_map_updating` (copies the prior outputs first).
    struct Copying;
    impl crate::backend::Backend for Copying {
        fn name(&self) -> &'static str {
            "copying"
        }
        fn run_map(
            &self,
            c: crate::backend::Checked,
            k: &MapKernel,
            i: &[&crate::Buffer],
            p: &[u64],
            s: &[Stream],
            o: &mut [&mut crate::Buffer],
        ) -> crate::Result<()> {
            crate::backend::cpu::CpuBackend.run_map(c, k, i, p, s, o)
        }
        fn run_gemm(
            &self,
            c: crate::backend::Checked,
            k: &cryptgpu_codegen::GemmKernel,
            i: &[&crate::Buffer],
            p: &[u64],
            s: &[Stream],
            o: &mut [&mut crate::Buffer],
        ) -> crate::Result<()> {
            crate::backend::cpu::CpuBackend.run_gemm(c, k, i, p, s, o)
        }
        fn run_gather(
            &self,
            c: crate::backend::Checked,
            k: &cryptgpu_codegen::GatherKernel,
            i: &crate::Buffer,
            o: &mut crate::Buffer,
        ) -> crate::Result<()> {
            crate::backend::cpu::CpuBackend.run_gather(c, k, i, o)
        }
        fn run_bits(
            &self,
            c: crate::backend::Checked,
            k: &cryptgpu_codegen::BitKernel,
            i: &crate::Buffer,
            o: &mut crate::Buffer,
        ) -> crate::Result<()> {
            crate::backend::cpu::CpuBackend.run_bits(c, k, i, o)
        }
    }

    #[test]
    fn updating_in_place_matches_copying_the_prior_outputs_first() {
        use crate::backend::{Backend, Source};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // out0 = prior1 + x, out1 = prior0 · prior1 − x, out2 = prior2 ⊕ prior0: every output reads another's prior.
        let mut b = MapBuilder::new("update");
        let (p0, p1, x, p2) = (b.input(0), b.input(1), b.input(2), b.input(3));
        let o0 = b.add(p1, x);
        let m = b.mul(p0, p1);
        let o1 = b.sub(m, x);
        let o2 = b.xor(p2, p0);
        b.output(o0).output(o1).output(o2);
        let k = b.build();
        for n in [1usize, 1000, 1024, 5000] {
            let x: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
            let start: Vec<Vec<u64>> = (0..3).map(|_| (0..n).map(|_| rng.gen()).collect()).collect();
            // x as a range of a longer buffer (the words around it must not be read).
            let wide = crate::Buffer::from([vec![7; 3], x.clone(), vec![9; 5]].concat());
            let x = crate::Buffer::from(x);
            for xs in [Source::Buf(&x), Source::Range(&wide, 3..3 + n)] {
                let ins = [Source::Prior(0), Source::Prior(1), xs, Source::Prior(2)];
                let run = |backend: &dyn Backend| {
                    let mut outs: Vec<crate::Buffer> = start.iter().map(|v| v.clone().into()).collect();
                    let mut refs: Vec<&mut crate::Buffer> = outs.iter_mut().collect();
                    backend.map_updating(&k, &ins, &[], &[], &mut refs).unwrap();
                    outs.into_iter().map(|o| o.into_host().unwrap()).collect::<Vec<_>>()
                };
                let counting = crate::backend::counting::CountingBackend::new();
                let (in_place, copied) = (run(&crate::backend::cpu::CpuBackend), run(&Copying));
                assert_eq!(in_place, copied, "n {n}");
                assert_eq!(run(&counting), in_place, "n {n}, on the counting backend's device");
                let want0: Vec<u64> = (0..n).map(|e| start[1][e].wrapping_add(x[e])).collect();
                assert_eq!(in_place[0], want0);
            }
        }
        // A prior that names no output, or is read packed, is refused before anything runs.
        let mut out = crate::Buffer::from(vec![0u64; 8]);
        let zeros = crate::Buffer::from(vec![0u64; 8]);
        let bad = [Source::Prior(5), Source::Prior(1), Source::Buf(&zeros), Source::Prior(2)];
        let err = crate::backend::cpu::CpuBackend.map_updating(&k, &bad, &[], &[], &mut [&mut out]).unwrap_err();
        assert!(err.to_string().contains("prior contents"), "{err}");
        let mut pb = MapBuilder::new("packed_prior");
        let v = pb.packed_input(0, 20);
        pb.output(v);
        let err = crate::backend::cpu::CpuBackend
            .map_updating(&pb.build(), &[Source::Prior(0)], &[], &[], &mut [&mut out])
            .unwrap_err();
        assert!(err.to_string().contains("read packed"), "{err}");
    }
}
