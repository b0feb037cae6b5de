//! The privacy suite can fail: with each deliberate break of [`cryptgpu_runtime::mutation`] switched on, the checks of
//! the protocols it touches must fail (and the protocols must still compute the right results, which the suite's
//! runs confirm by completing). Each test prints which checks caught the break and why.

mod common;

use common::suite::suite;
use cryptgpu_runtime::mutation::Mutation;

/// Run the whole suite under `m`; the names of the checks that failed must include every one of `expected`.
fn caught(m: Mutation, expected: &[&str]) {
    let mut failed = Vec::new();
    for case in suite() {
        if let Err(why) = (case.run)(Some(m)) {
            assert!(!why.contains("the run failed"), "{m:?} broke the protocol itself, not only its privacy: {why}");
            println!("{m:?} caught by `{}`: {why}", case.name);
            failed.push(case.name);
        }
    }
    assert!(!failed.is_empty(), "{m:?}: no privacy check failed: the suite cannot see this break");
    for e in expected {
        assert!(failed.iter().any(|f| f.starts_with(e)), "{m:?}: the `{e}` check did not fail (failed: {failed:?})");
    }
}

#[test]
fn bit_injection_without_its_random_bit_is_caught() {
    caught(Mutation::InjectionBitZero, &["ReLU with", "ReLU over a bounded range", "multiplication by a shared bit"]);
}

#[test]
fn sign_one_hot_codes_sent_unmasked_are_caught() {
    caught(
        Mutation::SignOneHotUnmasked,
        &["DReLU", "ReLU with", "ReLU over a bounded range", "ReLU fused into", "comparisons"],
    );
}

#[test]
fn exact_truncation_reusing_a_mask_is_caught() {
    caught(Mutation::TruncationMaskReuse, &["mul with exact"]);
}

#[test]
fn input_pads_reused_across_calls_are_caught() {
    caught(Mutation::InputStepReuse, &["share"]);
}

#[test]
fn a_dropped_zero_share_is_caught() {
    caught(Mutation::ZeroShareDropped, &["mul_ring"]);
}

#[test]
fn every_mutation_has_a_test() {
    assert_eq!(Mutation::ALL.len(), 5, "a new mutation needs a test here");
}
