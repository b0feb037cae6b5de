//! Snapshots of emitted CUDA for a few representative kernels, so that a change to the emitter shows in review.
//! Update with `INSTA_UPDATE=always cargo test -p cryptgpu-codegen --test snapshots_cuda` and review the diff.

use cryptgpu_codegen::cuda::{catalogue, emit, GemmPlan};
use cryptgpu_codegen::{GatherKernel, Kernel};

fn source(kernel: Kernel, plan: GemmPlan) -> String {
    emit(&kernel, plan).expect("emits").source
}

#[test]
fn map_with_every_op() {
    insta::assert_snapshot!(source(Kernel::Map(catalogue::every_op_map()), GemmPlan::Native64));
}

#[test]
fn im2col_gather() {
    let k = GatherKernel::im2col("conv_im2col", [8, 64, 32, 32], [3, 3], 1, 1).unwrap();
    insta::assert_snapshot!(source(Kernel::Gather(k), GemmPlan::Native64));
}

#[test]
fn gemm_plans() {
    let gemms: Vec<Kernel> = catalogue::kernels()
        .unwrap()
        .into_iter()
        .filter_map(|(k, _)| matches!(&k, Kernel::Gemm(g) if g.m == 17).then_some(k))
        .collect();
    let k = gemms.first().expect("a 17-row GEMM in the catalogue").clone();
    insta::assert_snapshot!("gemm_native64", source(k.clone(), GemmPlan::Native64));
    insta::assert_snapshot!("gemm_f64limbs16", source(k.clone(), GemmPlan::F64Limbs16));
    insta::assert_snapshot!("gemm_int8tensorcore", source(k, GemmPlan::Int8TensorCore));
}
