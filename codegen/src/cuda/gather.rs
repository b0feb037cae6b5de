//! Gathers: one output element per loop iteration; its coordinates, then a loop over the window summing the
//! in-bounds inputs. Shapes are baked into the text (a gather is specific to its layer).

use super::{ident, param_list, prelude::PRELUDE, Arg, CudaKernel, Launch};
use crate::{GatherKernel, Result};
use std::fmt::Write;

pub(super) fn emit(k: &GatherKernel) -> Result<CudaKernel> {
    k.validate()?;
    let entry = ident(&k.name);
    let args = vec![Arg::Input(0), Arg::Output(0)];
    let out_rank = k.out_shape.len();
    let windows: usize = k.reduce_shape.iter().product();
    let mut s = String::from(PRELUDE);
    let _ = writeln!(s, "\nextern \"C\" __global__ void {entry}({}) {{", param_list(&args));
    let _ = writeln!(
        s,
        "    for (u64 o = (u64)blockIdx.x * blockDim.x + threadIdx.x; o < {}ull; o += (u64)gridDim.x * blockDim.x) {{",
        k.out_len()
    );
    s.push_str("        u64 t = o;\n");
    for a in (0..out_rank).rev() {
        let _ = writeln!(s, "        const i64 c{a} = (i64)(t % {}ull); t /= {}ull;", k.out_shape[a], k.out_shape[a]);
    }
    s.push_str("        u64 acc = 0;\n");
    let _ = writeln!(s, "        for (u64 w = 0; w < {windows}ull; w++) {{");
    if !k.reduce_shape.is_empty() {
        s.push_str("            u64 tw = w;\n");
    }
    for (j, &size) in k.reduce_shape.iter().enumerate().rev() {
        let _ = writeln!(s, "            const i64 c{} = (i64)(tw % {size}ull); tw /= {size}ull;", out_rank + j);
    }
    s.push_str("            u64 idx = 0;\n");
    for (d, c) in k.coords.iter().enumerate() {
        let mut e = format!("{}ll", c.offset);
        for &(axis, coeff) in &c.terms {
            let _ = write!(e, " + ({coeff}ll) * c{axis}");
        }
        let size = k.in_shape[d];
        let _ = writeln!(s, "            const i64 d{d} = {e};");
        let _ = writeln!(s, "            if (d{d} < 0 || d{d} >= {size}ll) continue;");
        let _ = writeln!(s, "            idx = idx * {size}ull + (u64)d{d};");
    }
    s.push_str("            acc += in0[idx];\n        }\n        out0[o] = acc;\n    }\n}\n");
    Ok(CudaKernel { entry, source: s, args, launch: Launch::Elements { elements: Some(k.out_len()), threads: 256 } })
}
