//! Elementwise maps: a straight-line program over u64 registers, evaluated independently for every element.
//!
//! Every value is an element of Z_2^64; arithmetic wraps. A map reads element `e` of each input buffer, scalar
//! launch parameters, and word `e` of PRG streams (a counter-based PRF: word `e` depends only on the stream's key,
//! nonce and `e`, so any backend can compute any element independently). Used in a GEMM epilogue, a map can also
//! read the accumulator and broadcast per-row or per-column vectors; a standalone map can read an input whose values
//! travel as packed low bits ([`Load::Packed`]), unpacking them as it reads.

use crate::{Error, Result};

/// A register: the result of instruction number `.0` of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(pub u32);

/// How an input buffer is indexed for element `e` (of an `m × n` output in a GEMM epilogue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Load {
    /// `buf[e]`: same length as the output.
    Elem,
    /// `buf[e / n]`: one value per output row (GEMM epilogue only).
    Row,
    /// `buf[e % n]`: one value per output column (GEMM epilogue only).
    Col,
    /// The low `bits` bits of value `e` of `n` values packed [`values_per_word`]`(bits)` to a word, value `j·m + i`
    /// in bits `j·bits ..` of word `i` (`m = `[`packed_words`]`(n, bits)` words; maps only). With one value per word
    /// (`bits > 32`) the word is read whole.
    Packed {
        /// Bits per value (at most 64).
        bits: u8,
    },
}

/// Values per word when only their low `bits` bits are kept: 3 for `bits ≤ 21`, 2 for `bits ≤ 32`, else 1.
pub fn values_per_word(bits: u32) -> usize {
    match bits {
        0..=21 => 3,
        22..=32 => 2,
        _ => 1,
    }
}

/// Words that hold `n` values of `bits` bits packed [`values_per_word`] to a word.
pub fn packed_words(n: usize, bits: u32) -> usize {
    n.div_ceil(values_per_word(bits))
}

/// Value `e` of `n` packed values (see [`Load::Packed`]), from word `e mod m`, slot `⌊e/m⌋`.
pub fn packed_value(words: &[u64], n: usize, bits: u32, e: usize) -> u64 {
    let per = values_per_word(bits);
    let m = packed_words(n, bits);
    let w = words[e % m];
    if per == 1 {
        w
    } else {
        (w >> ((e / m) as u32 * bits)) & ((1u64 << bits) - 1)
    }
}

/// One instruction; its result is the register with its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Input buffer `buf`, indexed as `load` says.
    Input {
        /// Input buffer number.
        buf: u16,
        /// Indexing mode.
        load: Load,
    },
    /// Scalar launch parameter number `.0`.
    Param(u16),
    /// Compile-time constant.
    Const(u64),
    /// Word `e` of PRG stream number `.0` of the launch.
    Prg(u16),
    /// The GEMM accumulator (GEMM epilogue only).
    Acc,
    /// Two's complement negation.
    Neg(Reg),
    /// Bitwise not.
    Not(Reg),
    /// Wrapping addition.
    Add(Reg, Reg),
    /// Wrapping subtraction.
    Sub(Reg, Reg),
    /// Wrapping multiplication.
    Mul(Reg, Reg),
    /// Bitwise and.
    And(Reg, Reg),
    /// Bitwise or.
    Or(Reg, Reg),
    /// Bitwise exclusive or.
    Xor(Reg, Reg),
    /// Shift left by a constant (< 64).
    Shl(Reg, u32),
    /// Arithmetic shift right by a constant (< 64): floor division of the signed value by 2^k.
    Sar(Reg, u32),
    /// Logical shift right by a constant (< 64).
    Shr(Reg, u32),
    /// Floor division of the signed value of the first register by the second, read as a signed value that must be
    /// positive (a launch parameter checked by the caller).
    FloorDiv(Reg, Reg),
}

impl Op {
    /// Registers this instruction reads.
    pub fn operands(&self) -> Vec<Reg> {
        match *self {
            Op::Input { .. } | Op::Param(_) | Op::Const(_) | Op::Prg(_) | Op::Acc => vec![],
            Op::Neg(a) | Op::Not(a) | Op::Shl(a, _) | Op::Sar(a, _) | Op::Shr(a, _) => vec![a],
            Op::Add(a, b)
            | Op::Sub(a, b)
            | Op::Mul(a, b)
            | Op::And(a, b)
            | Op::Or(a, b)
            | Op::Xor(a, b)
            | Op::FloorDiv(a, b) => vec![a, b],
        }
    }
}

/// An elementwise kernel: `outputs[j][e] = program(e)[outputs[j]]` for every element `e`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapKernel {
    /// Name (a C identifier).
    pub name: String,
    /// Number of input buffers.
    pub inputs: u16,
    /// Number of scalar parameters.
    pub params: u16,
    /// Number of PRG streams.
    pub prg_streams: u16,
    /// The program, in SSA form: instruction `i` defines `Reg(i)`.
    pub insts: Vec<Op>,
    /// Registers stored to the output buffers, in order.
    pub outputs: Vec<Reg>,
}

impl MapKernel {
    /// Check that every register is defined before use, every input/param/stream index is declared, shifts are
    /// in range, and (unless `epilogue`) no GEMM-only instruction is used.
    pub fn validate(&self, epilogue: bool) -> Result<()> {
        let bad = |reason: String| Err(Error::Invalid { kernel: self.name.clone(), reason });
        if self.outputs.is_empty() {
            return bad("a map needs at least one output".into());
        }
        for (i, op) in self.insts.iter().enumerate() {
            for r in op.operands() {
                if r.0 as usize >= i {
                    return bad(format!("instruction {i} reads register {} before it is defined", r.0));
                }
            }
            match *op {
                Op::Input { buf, load } => {
                    if buf >= self.inputs {
                        return bad(format!("instruction {i} reads input {buf} of {}", self.inputs));
                    }
                    match load {
                        Load::Row | Load::Col if !epilogue => {
                            return bad(format!("instruction {i}: row/column loads exist only in GEMM epilogues"));
                        }
                        Load::Packed { .. } if epilogue => {
                            return bad(format!("instruction {i}: packed loads exist only in standalone maps"));
                        }
                        Load::Packed { bits } if bits > 64 => {
                            return bad(format!("instruction {i}: packed values of {bits} > 64 bits"));
                        }
                        _ => {}
                    }
                    if let Some(other) = self.insts[..i].iter().find_map(|op| match *op {
                        Op::Input { buf: b, load: l } if b == buf && l != load => Some(l),
                        _ => None,
                    }) {
                        return bad(format!(
                            "instruction {i} reads input {buf} as {load:?}, an earlier one as {other:?}"
                        ));
                    }
                }
                Op::Param(p) if p >= self.params => {
                    return bad(format!("instruction {i} reads parameter {p} of {}", self.params));
                }
                Op::Prg(s) if s >= self.prg_streams => {
                    return bad(format!("instruction {i} draws from stream {s} of {}", self.prg_streams));
                }
                Op::Acc if !epilogue => {
                    return bad(format!("instruction {i}: the accumulator exists only in GEMM epilogues"));
                }
                Op::Shl(_, k) | Op::Sar(_, k) | Op::Shr(_, k) if k >= 64 => {
                    return bad(format!("instruction {i} shifts by {k} ≥ 64"));
                }
                _ => {}
            }
        }
        if let Some(r) = self.outputs.iter().find(|r| r.0 as usize >= self.insts.len()) {
            return bad(format!("output register {} is not defined", r.0));
        }
        Ok(())
    }

    /// Elements input `buf` must have when the map runs over `n` elements (`None` when no instruction reads it).
    pub fn input_len(&self, buf: u16, n: usize) -> Option<usize> {
        self.insts.iter().find_map(|op| match *op {
            Op::Input { buf: b, load } if b == buf => Some(match load {
                Load::Packed { bits } => packed_words(n, bits as u32),
                _ => n,
            }),
            _ => None,
        })
    }

    /// True when some instruction reads the GEMM accumulator.
    pub fn reads_acc(&self) -> bool {
        self.insts.contains(&Op::Acc)
    }
}

/// Builds a [`MapKernel`] one instruction at a time; declarations grow as they are used.
#[derive(Debug, Clone)]
pub struct MapBuilder {
    kernel: MapKernel,
}

impl MapBuilder {
    /// Start an empty kernel called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MapBuilder {
            kernel: MapKernel {
                name: name.into(),
                inputs: 0,
                params: 0,
                prg_streams: 0,
                insts: Vec::new(),
                outputs: Vec::new(),
            },
        }
    }

    /// Append an instruction and return its register.
    pub fn op(&mut self, op: Op) -> Reg {
        match op {
            Op::Input { buf, .. } => self.kernel.inputs = self.kernel.inputs.max(buf + 1),
            Op::Param(p) => self.kernel.params = self.kernel.params.max(p + 1),
            Op::Prg(s) => self.kernel.prg_streams = self.kernel.prg_streams.max(s + 1),
            _ => {}
        }
        self.kernel.insts.push(op);
        Reg(self.kernel.insts.len() as u32 - 1)
    }

    /// Element `e` of input buffer `buf`.
    pub fn input(&mut self, buf: u16) -> Reg {
        self.op(Op::Input { buf, load: Load::Elem })
    }
    /// Value `e` of input buffer `buf`, which holds the values' low `bits` bits packed (see [`Load::Packed`]).
    pub fn packed_input(&mut self, buf: u16, bits: u32) -> Reg {
        let bits = u8::try_from(bits).unwrap_or(u8::MAX);
        self.op(Op::Input { buf, load: Load::Packed { bits } })
    }
    /// Scalar parameter `p`.
    pub fn param(&mut self, p: u16) -> Reg {
        self.op(Op::Param(p))
    }
    /// Word `e` of PRG stream `s`.
    pub fn prg(&mut self, s: u16) -> Reg {
        self.op(Op::Prg(s))
    }
    /// A constant.
    pub fn constant(&mut self, v: u64) -> Reg {
        self.op(Op::Const(v))
    }
    /// The GEMM accumulator (epilogues only).
    pub fn acc(&mut self) -> Reg {
        self.op(Op::Acc)
    }
    /// `a + b`.
    pub fn add(&mut self, a: Reg, b: Reg) -> Reg {
        self.op(Op::Add(a, b))
    }
    /// `a - b`.
    pub fn sub(&mut self, a: Reg, b: Reg) -> Reg {
        self.op(Op::Sub(a, b))
    }
    /// `a * b`.
    pub fn mul(&mut self, a: Reg, b: Reg) -> Reg {
        self.op(Op::Mul(a, b))
    }
    /// `-a`.
    pub fn neg(&mut self, a: Reg) -> Reg {
        self.op(Op::Neg(a))
    }
    /// `a ^ b`.
    pub fn xor(&mut self, a: Reg, b: Reg) -> Reg {
        self.op(Op::Xor(a, b))
    }
    /// `a & b`.
    pub fn and(&mut self, a: Reg, b: Reg) -> Reg {
        self.op(Op::And(a, b))
    }
    /// `a << k`.
    pub fn shl(&mut self, a: Reg, k: u32) -> Reg {
        self.op(Op::Shl(a, k))
    }
    /// Arithmetic `a >> k`.
    pub fn sar(&mut self, a: Reg, k: u32) -> Reg {
        self.op(Op::Sar(a, k))
    }
    /// Signed floor division `a / d` (d positive).
    pub fn floor_div(&mut self, a: Reg, d: Reg) -> Reg {
        self.op(Op::FloorDiv(a, d))
    }
    /// Mark `r` as the next output.
    pub fn output(&mut self, r: Reg) -> &mut Self {
        self.kernel.outputs.push(r);
        self
    }
    /// Finish (without validation; backends validate before launch).
    pub fn build(self) -> MapKernel {
        self.kernel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_declares_what_it_uses() {
        let mut b = MapBuilder::new("axpy");
        let x = b.input(1);
        let a = b.param(0);
        let r = b.prg(2);
        let ax = b.mul(a, x);
        let y = b.add(ax, r);
        b.output(y);
        let k = b.build();
        assert_eq!((k.inputs, k.params, k.prg_streams), (2, 1, 3));
        k.validate(false).unwrap();
    }

    #[test]
    fn validation_rejects_malformed_programs() {
        let k = MapKernel {
            name: "bad".into(),
            inputs: 1,
            params: 0,
            prg_streams: 0,
            insts: vec![Op::Add(Reg(0), Reg(0))],
            outputs: vec![Reg(0)],
        };
        let err = k.validate(false).unwrap_err().to_string();
        assert!(err.contains("before it is defined"), "{err}");
        let mut b = MapBuilder::new("acc_outside_gemm");
        let a = b.acc();
        b.output(a);
        assert!(b.build().validate(false).unwrap_err().to_string().contains("GEMM epilogues"));
        let mut b = MapBuilder::new("shift");
        let x = b.input(0);
        let y = b.shl(x, 64);
        b.output(y);
        assert!(b.build().validate(false).is_err());
    }
}
