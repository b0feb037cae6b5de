//! The cost model: what each kernel moves and computes, by unit, and the time it should take on a given GPU.
//!
//! # Formulas
//!
//! For a kernel over `E` elements (maps, gathers) or an `m × n` output with inner dimension `K` (GEMMs):
//!
//! * **bytes moved** (device memory): maps `8·E·(inputs + outputs)`; gathers `8·(E + E·w)` for a window of `w`
//!   reads; GEMMs `8·(m·K·⌈n/T⌉ + K·n·⌈m/T⌉) + 8·m·n·(epilogue inputs + outputs)` for output tiles of `T × T`
//!   (each tile reads its A rows and B columns once from memory).
//! * **integer ALU ops** (32-bit, the unit GPUs have): a 64-bit add, subtract, bitwise op or shift is 2, a 64-bit
//!   multiply 4 (three 32-bit multiply-adds and a carry add), a signed floor division 40, a PRF word 1 400 (one
//!   AES-128 block, as the prelude emits it: 200 S-box lookups at 4 ops each (byte extract, load, shift, or) for
//!   the ten rounds and the on-the-fly key schedule, 36 MixColumns at 14 ops, about 100 round-key XORs); a gather costs 10 per coordinate
//!   and window position; a native GEMM 6 per multiply-accumulate (multiply 4, add 2); limb plans 2 per element
//!   and limb to split the operands, per tile.
//! * **FP64 ops**: the float64-limb GEMM does 10 fused multiply-adds per multiply-accumulate.
//! * **tensor-core ops**: the int8 GEMM does 36 u8 multiply-accumulates per ring multiply-accumulate.
//! * **bit transposes**: `8·(in + out)` bytes and 6 integer ops (3 on 64-bit words) per bit moved.
//!
//! **Time** of a kernel on a [`Device`] is a roofline: the largest of bytes ÷ memory bandwidth and each unit's ops
//! ÷ its peak rate, plus a launch overhead. A stage is the sum of its kernels; a protocol round adds the link's
//! latency and the bytes sent ÷ the link's bandwidth (the parties send in parallel, so the largest sender counts).
//! Peak rates are datasheet figures, so predictions are lower bounds; they rank plans and locate bottlenecks.

use crate::cuda::GemmPlan;
use crate::{GatherKernel, GemmKernel, Kernel, MapKernel, Op};

/// Peak rates of a GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    /// Name for reports.
    pub name: &'static str,
    /// Device-memory bandwidth, bytes per second.
    pub memory_bandwidth: f64,
    /// 32-bit integer ALU operations per second.
    pub int32_ops: f64,
    /// Float64 fused multiply-adds per second (non-tensor).
    pub fp64_fma: f64,
    /// u8 tensor-core multiply-accumulates per second (dense).
    pub int8_tensor_mac: f64,
    /// Fixed cost of one kernel launch, seconds.
    pub launch_overhead: f64,
}

/// NVIDIA H100 SXM5 (datasheet): 3.35 TB/s HBM3; 132 SMs × 64 INT32 lanes × 1.98 GHz; FP64 34 TFLOPS (17 T FMA/s);
/// INT8 tensor 1 979 TOPS dense (≈ 990 T MAC/s).
pub const H100_SXM: Device = Device {
    name: "H100 SXM",
    memory_bandwidth: 3.35e12,
    int32_ops: 132.0 * 64.0 * 1.98e9,
    fp64_fma: 17.0e12,
    int8_tensor_mac: 989.5e12,
    launch_overhead: 3e-6,
};

/// NVIDIA H200 SXM (datasheet): the H100 SXM's compute with 4.8 TB/s HBM3e.
pub const H200_SXM: Device = Device { name: "H200 SXM", memory_bandwidth: 4.8e12, ..H100_SXM };

/// The datasheet model closest to a device named `name` as its driver reports it: the H200 for an H200, else the
/// H100 SXM (a reference point, not that device's figures).
pub fn device_like(name: &str) -> Device {
    if name.contains("H200") {
        H200_SXM
    } else {
        H100_SXM
    }
}

/// A connection between two parties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Bytes per second.
    pub bandwidth: f64,
    /// One-way latency, seconds.
    pub latency: f64,
}

impl Link {
    /// A 10 Gbit/s LAN with 0.1 ms latency (the anchors' LAN setting is of this order).
    pub const LAN_10G: Link = Link { bandwidth: 1.25e9, latency: 1e-4 };

    /// Time of `rounds` rounds in which the busiest party sends `bytes`.
    pub fn time(&self, rounds: u64, bytes: u64) -> f64 {
        rounds as f64 * self.latency + bytes as f64 / self.bandwidth
    }
}

/// What a kernel launch moves and computes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KernelCost {
    /// Bytes read and written in device memory.
    pub bytes: f64,
    /// 32-bit integer ALU operations.
    pub int_ops: f64,
    /// Float64 fused multiply-adds.
    pub fp64_fma: f64,
    /// u8 tensor-core multiply-accumulates.
    pub tensor_mac: f64,
}

impl std::ops::Add for KernelCost {
    type Output = KernelCost;
    fn add(self, o: KernelCost) -> KernelCost {
        KernelCost {
            bytes: self.bytes + o.bytes,
            int_ops: self.int_ops + o.int_ops,
            fp64_fma: self.fp64_fma + o.fp64_fma,
            tensor_mac: self.tensor_mac + o.tensor_mac,
        }
    }
}

impl KernelCost {
    /// Roofline time on `d` (one launch).
    pub fn time(&self, d: &Device) -> f64 {
        let t = [
            self.bytes / d.memory_bandwidth,
            self.int_ops / d.int32_ops,
            self.fp64_fma / d.fp64_fma,
            self.tensor_mac / d.int8_tensor_mac,
        ];
        t.into_iter().fold(0.0, f64::max) + d.launch_overhead
    }

    /// The unit that bounds the time on `d`.
    pub fn bound(&self, d: &Device) -> &'static str {
        let t = [
            (self.bytes / d.memory_bandwidth, "memory"),
            (self.int_ops / d.int32_ops, "int32"),
            (self.fp64_fma / d.fp64_fma, "fp64"),
            (self.tensor_mac / d.int8_tensor_mac, "tensor"),
        ];
        t.into_iter().fold((0.0, "launch"), |a, b| if b.0 > a.0 { b } else { a }).1
    }
}

/// 32-bit ALU operations of one PRF word (one AES-128 block of the emitted counter mode; see the module docs).
pub const PRF_WORD_OPS: f64 = 1400.0;

/// 32-bit ALU operations of one evaluation of a map program (per element).
fn program_ops(k: &MapKernel) -> f64 {
    k.insts
        .iter()
        .map(|op| match op {
            Op::Input { .. } | Op::Param(_) | Op::Const(_) | Op::Acc => 0.0,
            Op::Prg(_) => PRF_WORD_OPS,
            Op::Mul(..) => 4.0,
            Op::FloorDiv(..) => 40.0,
            _ => 2.0,
        })
        .sum()
}

/// Cost of a map over `elements`.
pub fn map_cost(k: &MapKernel, elements: usize) -> KernelCost {
    let e = elements as f64;
    KernelCost {
        bytes: 8.0 * e * (k.inputs as usize + k.outputs.len()) as f64,
        int_ops: e * program_ops(k),
        ..KernelCost::default()
    }
}

/// Cost of a gather.
pub fn gather_cost(k: &GatherKernel) -> KernelCost {
    let (out, w) = (k.out_len() as f64, k.reduce_shape.iter().product::<usize>() as f64);
    KernelCost {
        bytes: 8.0 * (out + out * w),
        int_ops: out * (10.0 * k.out_shape.len() as f64 + 10.0 * w * k.in_shape.len() as f64),
        ..KernelCost::default()
    }
}

/// Cost of a bit transpose: every output word gathers 64 bits (3 ops each: shift, mask, or).
pub fn bits_cost(k: &crate::BitKernel) -> KernelCost {
    let bits = 64.0 * k.planes as f64 * k.words_per_plane() as f64;
    KernelCost { bytes: 8.0 * (k.in_len() + k.out_len()) as f64, int_ops: 6.0 * bits, ..KernelCost::default() }
}

/// Cost of a GEMM under `plan`.
pub fn gemm_cost(k: &GemmKernel, plan: GemmPlan) -> KernelCost {
    let (m, n, kk) = (k.m as f64, k.n as f64, k.k() as f64);
    let macs = m * n * kk;
    let tile = match plan {
        GemmPlan::Native64 => 64.0,
        GemmPlan::F64Limbs16 | GemmPlan::Int8TensorCore => 32.0,
    };
    let io = 8.0 * (m * kk * (n / tile).ceil() + kk * n * (m / tile).ceil());
    let epi = map_cost(&k.epilogue, k.m * k.n);
    let split = |limbs: f64| 2.0 * limbs * (m * kk * (n / tile).ceil() + kk * n * (m / tile).ceil());
    let body = match plan {
        GemmPlan::Native64 => KernelCost { int_ops: 6.0 * macs, ..KernelCost::default() },
        GemmPlan::F64Limbs16 => KernelCost { fp64_fma: 10.0 * macs, int_ops: split(4.0), ..KernelCost::default() },
        GemmPlan::Int8TensorCore => {
            KernelCost { tensor_mac: 36.0 * macs, int_ops: split(8.0), ..KernelCost::default() }
        }
    };
    KernelCost { bytes: io + epi.bytes, ..body } + KernelCost { int_ops: epi.int_ops, ..KernelCost::default() }
}

/// Cost of any kernel (`elements` is the launch's element count for maps).
pub fn kernel_cost(k: &Kernel, plan: GemmPlan, elements: usize) -> KernelCost {
    match k {
        Kernel::Map(m) => map_cost(m, elements),
        Kernel::Gather(g) => gather_cost(g),
        Kernel::Gemm(g) => gemm_cost(g, plan),
        Kernel::Bits(b) => bits_cost(b),
    }
}

/// The fastest exact plan for a GEMM on `d` by the model.
pub fn best_plan(k: &GemmKernel, d: &Device) -> GemmPlan {
    GemmPlan::ALL
        .into_iter()
        .filter(|p| p.check(&k.name, k.k()).is_ok())
        .min_by(|a, b| gemm_cost(k, *a).time(d).total_cmp(&gemm_cost(k, *b).time(d)))
        .unwrap_or(GemmPlan::Native64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MapBuilder;

    fn gemm(m: usize, n: usize, k: usize) -> GemmKernel {
        let mut b = MapBuilder::new("e");
        let a = b.acc();
        b.output(a);
        GemmKernel { name: "g".into(), m, n, k_blocks: vec![k], epilogue: b.build() }
    }

    #[test]
    fn roofline_picks_the_binding_unit() {
        // 1024³ native: 6·2^30 int ops / 16.7 T/s ≈ 0.39 ms, well above its memory time.
        let c = gemm_cost(&gemm(1024, 1024, 1024), GemmPlan::Native64);
        assert_eq!(c.bound(&H100_SXM), "int32");
        let t = c.time(&H100_SXM);
        assert!((3.5e-4..4.5e-4).contains(&t), "{t}");
        // A map of 1M elements with no PRF is memory bound: 3 buffers × 8 MB / 3.35 TB/s ≈ 7.5 µs (+ launch).
        let mut b = MapBuilder::new("add");
        let (x, y) = (b.input(0), b.input(1));
        let s = b.add(x, y);
        b.output(s);
        let m = map_cost(&b.build(), 1 << 20);
        assert_eq!(m.bound(&H100_SXM), "memory");
        assert!((m.time(&H100_SXM) - (3.0 * 8.0 * (1 << 20) as f64 / 3.35e12 + 3e-6)).abs() < 1e-9);
    }

    #[test]
    fn tensor_cores_win_large_products_and_plans_respect_exactness() {
        assert_eq!(best_plan(&gemm(1024, 1024, 1024), &H100_SXM), GemmPlan::Int8TensorCore);
        // beyond 2^21 the float64 plan is not exact and is never chosen
        let big = gemm(16, 16, (1 << 21) + 1);
        assert!(GemmPlan::F64Limbs16.check("g", big.k()).is_err());
        assert_ne!(best_plan(&big, &H100_SXM), GemmPlan::F64Limbs16);
        assert!((Link::LAN_10G.time(2, 1_250_000) - (2e-4 + 1e-3)).abs() < 1e-12);
    }
}
