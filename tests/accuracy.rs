//! Private vs plaintext inference on the shipped models (the accuracy requirement): at t = 20 the relative
//! error of the logits (‖private − plaintext‖₂ / ‖plaintext‖₂ per sample, averaged over the batch) is at most 0.02%
//! and the argmax agrees on every sample whose plaintext top-two margin is wider than the sample's own error (a
//! margin narrower than the fixed-point noise cannot be decided by any t = 20 computation; with fresh random weights
//! that happens about once in a thousand samples, and the test says so instead of failing). AlexNet runs in the suite; ResNet-50
//! (about 10 s of three-party work on 2 cores) with `cargo test --release --test accuracy -- --ignored`.

use cryptgpu::dsl::{models, reference, Graph, Params, Tensor};
use cryptgpu::runtime::executor::{Executor, RangeCheck, Roles};
use cryptgpu::workloads::{argmax, relative_error};
use cryptgpu::{Config, Session};
use rand::{Rng, SeedableRng};

/// Per sample: relative error of the logits, whether the argmax agrees, and whether the plaintext top-two margin is
/// wider than twice the absolute error (so that the private argmax is decided).
fn relative_errors(graph: &Graph, batch: usize, seed: u64) -> Vec<(f64, bool, bool)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let params = Params::kaiming(graph, &mut rng);
    let mut shape = vec![batch];
    shape.extend_from_slice(graph.input_shape());
    let n: usize = shape.iter().product();
    let input = Tensor::from_vec(&shape, (0..n).map(|_| rng.gen_range(-1.0..=1.0)).collect()).unwrap();
    let plain = reference::infer(graph, &params, &input).unwrap();
    let session = Session::new(Config::default()).unwrap();
    // Worst-case intervals refuse AlexNet and ResNet-50 at t = 20 (`cryptgpu precision`): the model owner checks
    // calibrated magnitudes on random inputs within the bound instead. AlexNet's 3×3 and ResNet-50's 7×7 average
    // pools divide by 9 and 49, which is probabilistic even in the exact mode (predicted ~2e-9 per AlexNet sample,
    // ~3e-6 per ResNet-50 sample, above the default 1e-9 per run): the test accepts up to 1e-4 per run, and a
    // failure would show as a large error below.
    let result = Executor::new(graph.clone(), Roles { model_owner: 1, data_owner: 0, receiver: 2 })
        .unwrap()
        .with_range_check(RangeCheck::Calibrated { samples: 2, margin: 4.0 })
        .allow_truncation_failures(1e-4)
        .infer(&session, &params, &input)
        .unwrap();
    let private = result.logits(2).expect("party 2 receives the logits");
    let classes = plain.shape()[1];
    (0..batch)
        .map(|i| {
            let (p, q) = (&private.data()[i * classes..][..classes], &plain.data()[i * classes..][..classes]);
            let rel = relative_error(p, q);
            let diff = rel * q.iter().map(|b| b * b).sum::<f64>().sqrt();
            let top = argmax(q);
            let second = q.iter().enumerate().filter(|(j, _)| *j != top).map(|(_, x)| *x).fold(f64::MIN, f64::max);
            (rel, argmax(p) == top, q[top] - second > 2.0 * diff)
        })
        .collect()
}

fn assert_accurate(graph: &Graph, batch: usize, seed: u64) {
    let samples = relative_errors(graph, batch, seed);
    let mean = samples.iter().map(|s| s.0).sum::<f64>() / batch as f64;
    assert!(mean <= 2e-4, "{} (seed {seed}): mean relative error {mean:.3e} > 0.02%: {samples:?}", graph.name());
    for (i, (rel, same, decided)) in samples.into_iter().enumerate() {
        if decided {
            assert!(same, "{} (seed {seed}): sample {i} argmax differs (relative error {rel:.3e})", graph.name());
        } else {
            eprintln!(
                "{} (seed {seed}): sample {i}: plaintext top-two margin below the error; argmax not checked",
                graph.name()
            );
        }
    }
}

#[test]
fn alexnet_private_logits_are_within_two_hundredths_of_a_percent() {
    assert_accurate(&models::alexnet_cifar10(models::Pooling::Avg).unwrap(), 4, rand::random());
}

#[test]
fn lenet_with_max_pooling_private_logits_are_within_two_hundredths_of_a_percent() {
    assert_accurate(&models::lenet(models::Pooling::Max).unwrap(), 3, rand::random());
}

#[test]
#[ignore = "about 10 s of three-party work and 20 s of f64 calibration on 2 cores: run with --release -- --ignored"]
fn resnet50_private_logits_are_within_two_hundredths_of_a_percent() {
    assert_accurate(&models::resnet50(models::Stem::AvgPool).unwrap(), 1, rand::random());
}
