//! Maps: a grid-stride loop over the elements, the SSA program in its body.

use super::expr::{emit_body, Ctx};
use super::{ident, param_list, prelude::PRELUDE, Arg, CudaKernel, Launch};
use crate::{MapKernel, Result};
use std::fmt::Write;

pub(super) fn emit(k: &MapKernel) -> Result<CudaKernel> {
    k.validate(false)?;
    let entry = ident(&k.name);
    let mut args = vec![Arg::Len];
    args.extend((0..k.inputs as usize).map(Arg::Input));
    args.extend((0..k.outputs.len()).map(Arg::Output));
    args.extend((0..k.params as usize).map(Arg::Param));
    args.push(Arg::Streams);
    let mut s = String::from(PRELUDE);
    let _ = writeln!(s, "\nextern \"C\" __global__ void {entry}({}) {{", param_list(&args));
    s.push_str(
        "    for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (u64)gridDim.x * blockDim.x) {\n",
    );
    emit_body(&mut s, k, &Ctx { elem: "e", row: "", col: "", acc: "", len: "n", input_base: 0 }, "        ");
    s.push_str("    }\n}\n");
    Ok(CudaKernel { entry, source: s, args, launch: Launch::Elements { elements: None, threads: 256 } })
}
