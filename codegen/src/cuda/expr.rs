//! The SSA program of a map or GEMM epilogue as C statements.

use crate::{Load, MapKernel, Op};
use std::fmt::Write;

/// How the program reads its surroundings.
pub(crate) struct Ctx<'a> {
    /// The element index expression (`e`).
    pub elem: &'a str,
    /// The row expression for row loads (GEMM epilogues).
    pub row: &'a str,
    /// The column expression for column loads (GEMM epilogues).
    pub col: &'a str,
    /// The accumulator expression (GEMM epilogues).
    pub acc: &'a str,
    /// The element count expression (standalone maps: packed loads).
    pub len: &'a str,
    /// Offset added to input numbers (a GEMM's epilogue inputs follow its A and B blocks).
    pub input_base: usize,
}

/// Append `const u64 rI = …;` for every instruction, then the output stores, indented by `indent`.
pub(crate) fn emit_body(out: &mut String, k: &MapKernel, ctx: &Ctx<'_>, indent: &str) {
    for (i, op) in k.insts.iter().enumerate() {
        let r = |x: crate::Reg| format!("r{}", x.0);
        let rhs = match *op {
            Op::Input { buf, load } => {
                let b = buf as usize + ctx.input_base;
                match load {
                    Load::Elem => format!("in{b}[{}]", ctx.elem),
                    Load::Row => format!("in{b}[{}]", ctx.row),
                    Load::Col => format!("in{b}[{}]", ctx.col),
                    Load::Packed { bits } => {
                        let per = crate::values_per_word(bits as u32) as u64;
                        let (e, n) = (ctx.elem, ctx.len);
                        let m = format!("(({n} + {}ull) / {per}ull)", per - 1);
                        if per == 1 {
                            format!("in{b}[{e}]")
                        } else {
                            let mask = (1u64 << bits) - 1;
                            format!("(in{b}[{e} % {m}] >> (({e} / {m}) * {bits}ull)) & 0x{mask:x}ull")
                        }
                    }
                }
            }
            Op::Param(p) => format!("p{p}"),
            Op::Const(c) => format!("0x{c:x}ull"),
            Op::Prg(s) => format!("cg_prg_word(streams + {}, {})", 11 * s as usize, ctx.elem),
            Op::Acc => ctx.acc.to_string(),
            Op::Neg(a) => format!("(u64)0 - {}", r(a)),
            Op::Not(a) => format!("~{}", r(a)),
            Op::Add(a, b) => format!("{} + {}", r(a), r(b)),
            Op::Sub(a, b) => format!("{} - {}", r(a), r(b)),
            Op::Mul(a, b) => format!("{} * {}", r(a), r(b)),
            Op::And(a, b) => format!("{} & {}", r(a), r(b)),
            Op::Or(a, b) => format!("{} | {}", r(a), r(b)),
            Op::Xor(a, b) => format!("{} ^ {}", r(a), r(b)),
            Op::Shl(a, s) => format!("{} << {s}", r(a)),
            Op::Sar(a, s) => format!("cg_sar({}, {s})", r(a)),
            Op::Shr(a, s) => format!("{} >> {s}", r(a)),
            Op::FloorDiv(a, b) => format!("cg_floor_div({}, {})", r(a), r(b)),
        };
        let _ = writeln!(out, "{indent}const u64 r{i} = {rhs};");
    }
    for (j, reg) in k.outputs.iter().enumerate() {
        let _ = writeln!(out, "{indent}out{j}[{}] = r{};", ctx.elem, reg.0);
    }
}
