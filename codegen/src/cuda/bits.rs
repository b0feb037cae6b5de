//! Bit transposes: one thread per output word (to planes) or per element (from planes); shapes baked in.

use super::{ident, param_list, prelude::PRELUDE, Arg, CudaKernel, Launch};
use crate::{BitKernel, BitOp, Result};
use std::fmt::Write;

pub(super) fn emit(k: &BitKernel) -> Result<CudaKernel> {
    k.validate()?;
    let entry = ident(&k.name);
    let args = vec![Arg::Input(0), Arg::Output(0)];
    let (n, w, planes) = (k.n, k.words_per_plane(), k.planes);
    let mut s = String::from(PRELUDE);
    let _ = writeln!(s, "\nextern \"C\" __global__ void {entry}({}) {{", param_list(&args));
    let _ = match k.op {
        BitOp::ToPlanes => write!(
            s,
            "    for (u64 o = (u64)blockIdx.x * blockDim.x + threadIdx.x; o < {out}ull; o += (u64)gridDim.x * blockDim.x) {{\n\
             \x20       const u64 plane = o / {w}ull, word = o % {w}ull;\n\
             \x20       u64 bits = 0;\n\
             \x20       for (u64 j = 0; j < 64 && word * 64 + j < {n}ull; j++) bits |= ((in0[word * 64 + j] >> plane) & 1ull) << j;\n\
             \x20       out0[o] = bits;\n\
             \x20   }}\n}}\n",
            out = k.out_len()
        ),
        BitOp::FromPlanes => write!(
            s,
            "    for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < {n}ull; e += (u64)gridDim.x * blockDim.x) {{\n\
             \x20       u64 v = 0;\n\
             \x20       for (u64 i = 0; i < {planes}ull; i++) v |= ((in0[i * {w}ull + e / 64] >> (e % 64)) & 1ull) << i;\n\
             \x20       out0[e] = v;\n\
             \x20   }}\n}}\n"
        ),
    };
    Ok(CudaKernel { entry, source: s, args, launch: Launch::Elements { elements: Some(k.out_len()), threads: 256 } })
}
