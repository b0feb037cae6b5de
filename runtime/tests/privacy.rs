//! Privacy: no party's view depends on the secret. Each protocol of the suite ([`common::suite`]) is run many times
//! with fresh keys on two secrets, and every party's view — each received message piece alone, its combinations with
//! everything else the party sees or holds, and a reconstruction probe — is checked ([`common::view`]). The
//! mutation tests (`mutations.rs`) show that each check fails when a protocol is deliberately broken.

mod common;

use common::suite::suite;

fn run(name: &str) {
    let case = suite().into_iter().find(|c| c.name.starts_with(name)).expect("a suite case");
    if let Err(e) = (case.run)(None) {
        panic!("{e}");
    }
}

#[test]
fn input_sharing_is_private() {
    run("share");
}

#[test]
fn ring_mul_is_private() {
    run("mul_ring");
}

#[test]
fn mul_with_exact_truncation_is_private() {
    run("mul with exact");
}

#[test]
fn mul_with_probabilistic_truncation_is_private() {
    run("mul with probabilistic");
}

#[test]
fn matmul_is_private() {
    run("matmul");
}

#[test]
fn conv2d_is_private() {
    run("conv2d");
}

#[test]
fn conv2d_backward_is_private() {
    run("conv2d backward");
}

#[test]
fn truncation_division_and_average_pooling_are_private() {
    run("exact truncation");
}

#[test]
fn drelu_and_and_are_private() {
    run("DReLU");
}

#[test]
fn relu_is_private() {
    run("ReLU");
}

#[test]
fn bounded_relu_and_its_backward_are_private() {
    run("ReLU over a bounded range");
}

#[test]
fn relu_fused_into_a_products_truncation_is_private() {
    run("ReLU fused into");
}

#[test]
fn mul_bit_is_private() {
    run("multiplication by a shared bit");
}

#[test]
fn max_and_argmax_are_private() {
    run("max and argmax");
}

#[test]
fn max_pooling_and_its_backward_are_private() {
    run("max pooling");
}

#[test]
fn comparisons_are_private() {
    run("comparisons");
}

#[test]
fn exp_reciprocal_and_log_are_private() {
    run("exp, reciprocal");
}

#[test]
fn softmax_and_rsqrt_are_private() {
    run("softmax");
}

#[test]
fn every_suite_case_has_a_test() {
    let names = [
        "share",
        "mul_ring",
        "mul with exact",
        "mul with probabilistic",
        "matmul",
        "conv2d",
        "conv2d backward",
        "exact truncation",
        "DReLU",
        "ReLU",
        "multiplication by a shared bit",
        "max and argmax",
        "max pooling",
        "softmax",
        "comparisons",
        "exp, reciprocal",
    ];
    for c in suite() {
        assert!(names.iter().any(|n| c.name.starts_with(n)), "suite case `{}` has no test", c.name);
    }
}
