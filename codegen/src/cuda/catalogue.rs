//! Representative kernels of every family, plan and a few shapes: what the verification tests compile with NVRTC
//! and run under the CPU emulation (beside the kernels recorded from real protocol runs).

use super::GemmPlan;
use crate::{BitKernel, BitOp, GatherKernel, GemmKernel, Kernel, Load, MapBuilder, MapKernel, Op, Result};

/// A map that uses every instruction: inputs, a parameter, constants, two PRF streams, every operator.
pub fn every_op_map() -> MapKernel {
    let mut b = MapBuilder::new("every_op_map");
    let (x, y, p, c) = (b.input(0), b.input(1), b.param(0), b.constant(0x0123_4567_89ab_cdef));
    let (s0, s1) = (b.prg(0), b.prg(1));
    let t = [
        b.add(x, y),
        b.sub(x, s0),
        b.mul(y, s1),
        b.xor(x, c),
        b.and(y, c),
        b.op(Op::Or(x, s0)),
        b.neg(y),
        b.op(Op::Not(x)),
        b.shl(x, 13),
        b.sar(y, 20),
        b.op(Op::Shr(x, 63)),
    ];
    let d = b.floor_div(t[1], p);
    let mut acc = d;
    for r in t {
        acc = b.add(acc, r);
    }
    b.output(acc).output(d).output(s1);
    b.build()
}

/// A map that reads packed inputs at each packing width (three, two and one value per word) beside an element input.
pub fn packed_load_map() -> MapKernel {
    let mut b = MapBuilder::new("packed_load_map");
    let x = b.input(0);
    let (p3, p2, p1) = (b.packed_input(1, 20), b.packed_input(2, 30), b.packed_input(3, 40));
    let s = b.add(x, p3);
    let t = b.shl(p2, 7);
    let u = b.xor(s, t);
    b.output(u).output(p1).output(p3);
    b.build()
}

/// A GEMM epilogue that reads the accumulator, a per-row and a per-column vector, a PRF stream and a parameter.
fn epilogue(name: &str) -> MapKernel {
    let mut b = MapBuilder::new(name);
    let acc = b.acc();
    let row = b.op(Op::Input { buf: 0, load: Load::Row });
    let col = b.op(Op::Input { buf: 1, load: Load::Col });
    let s = b.prg(0);
    let d = b.param(0);
    let t0 = b.add(acc, row);
    let t1 = b.sub(t0, col);
    let q = b.floor_div(t1, d);
    let m = b.add(q, s);
    b.output(m).output(t1);
    b.build()
}

/// Every representative kernel with the GEMM plan it is emitted under.
pub fn kernels() -> Result<Vec<(Kernel, GemmPlan)>> {
    let mut out =
        vec![(Kernel::Map(every_op_map()), GemmPlan::Native64), (Kernel::Map(packed_load_map()), GemmPlan::Native64)];
    for (n, c, hw, k, stride, pad) in [(2, 3, 7, 3, 1, 1), (1, 4, 8, 2, 2, 0), (3, 2, 5, 3, 2, 2)] {
        out.push((
            Kernel::Gather(GatherKernel::im2col(
                &format!("im2col_{hw}_{k}_{stride}_{pad}"),
                [n, c, hw, hw],
                [k, k],
                stride,
                pad,
            )?),
            GemmPlan::Native64,
        ));
        out.push((
            Kernel::Gather(GatherKernel::sum_pool(
                &format!("pool_{hw}_{k}_{stride}_{pad}"),
                [n, c, hw, hw],
                [k, k],
                stride,
                pad,
            )?),
            GemmPlan::Native64,
        ));
    }
    for (n, planes) in [(1, 64), (100, 64), (130, 1), (64, 7)] {
        for op in [BitOp::ToPlanes, BitOp::FromPlanes] {
            let name = format!("bits_{op:?}_{n}_{planes}").to_lowercase();
            out.push((Kernel::Bits(BitKernel { name, op, n, planes }), GemmPlan::Native64));
        }
    }
    out.push((Kernel::Gather(GatherKernel::permute("permute_4d", &[2, 3, 4, 5], &[1, 0, 3, 2])?), GemmPlan::Native64));
    for plan in GemmPlan::ALL {
        for (m, n, ks) in [(1, 1, vec![1]), (17, 33, vec![9, 9]), (64, 70, vec![40, 25]), (70, 64, vec![130])] {
            let name = format!("gemm_{plan:?}_{m}x{n}_{}", ks.len()).to_lowercase();
            let epi = epilogue(&format!("{name}_epilogue"));
            out.push((Kernel::Gemm(GemmKernel { name, m, n, k_blocks: ks, epilogue: epi }), plan));
        }
    }
    Ok(out)
}
