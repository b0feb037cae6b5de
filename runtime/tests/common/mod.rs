//! Helpers shared by the runtime's integration tests: sessions, plaintext references, and checks of the
//! probabilistic truncation's result.
#![allow(dead_code)]

pub mod recorded;

use cryptgpu_runtime::transport::{memory, ReceivedLog, Recording, Transport};
use cryptgpu_runtime::{Config, Session};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A fresh session with fresh keys.
pub fn session() -> Session {
    Session::new(Config::default()).expect("session")
}

/// A session whose transports record what each party receives.
pub fn recording_session() -> (Session, [ReceivedLog; 3]) {
    let abort = Arc::new(AtomicBool::new(false));
    let mut logs = Vec::new();
    let nets = memory::connect(Config::default().timeout, abort.clone()).map(|t| {
        let (r, log) = Recording::new(t);
        logs.push(log);
        Box::new(r) as Box<dyn Transport>
    });
    let s = Session::with_transports(Config::default(), nets, abort).expect("session");
    (s, logs.try_into().unwrap())
}

/// Signed floor division of an exact i128 by 2^t.
pub fn floor_shift(z: i128, t: u32) -> i128 {
    z >> t
}

/// Outcome of comparing a result with the exact quotient `q_exact = ⌊z/d⌋`.
#[derive(Debug, Default)]
pub struct Tally {
    pub exact: usize,
    pub wraps: usize,
}

/// Check every element: the result must be `⌊z/d⌋` or `⌊z/d⌋ + 1` (within one ulp of z/d) — or a wrap failure
/// of the probabilistic split, off by about ±2^64/d. Returns the tally; panics on anything else.
pub fn check_quotients(got: &[u64], floor: &[i128], d: u128) -> Tally {
    let mut t = Tally::default();
    let wrap = ((1u128 << 64) / d) as i128;
    for (i, (&g, &f)) in got.iter().zip(floor).enumerate() {
        let diff = (g as i64 as i128) - f;
        // compare modulo 2^64
        let diff_mod = (g.wrapping_sub(f as u64)) as i64 as i128;
        if diff == 0 || diff == 1 || diff_mod == 0 || diff_mod == 1 {
            t.exact += 1;
        } else if (diff_mod.abs() - wrap).abs() <= 2 {
            t.wraps += 1;
        } else {
            panic!("element {i}: got {} expected ⌊z/d⌋ = {f} (or +1); diff {diff_mod}", g as i64);
        }
    }
    t
}

/// Round-trip f64 → ring with t = 20 (default).
pub fn enc(v: f64) -> u64 {
    cryptgpu_runtime::FixedPoint::default().encode(v).unwrap()
}

/// Channel widths of [`every_layer_cnn`].
pub struct CnnWidths {
    pub input: usize,
    pub first: usize,
    pub second: usize,
    pub hidden: usize,
    pub classes: usize,
}

/// A small CNN with every layer kind on `[input, 8, 8]` images: conv, batch norm, ReLU, a residual block with an
/// identity shortcut and one with a strided 1×1 conv + batch-norm shortcut, average and max pooling, global average
/// pooling, flatten, linear, dropout.
pub fn every_layer_cnn(w: CnnWidths) -> cryptgpu_dsl::Graph {
    use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, Layer, Linear, Pool2d};
    let CnnWidths { input, first, second, hidden, classes } = w;
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(input, first, 3).padding(1)).layer("bn1", BatchNorm2d::new(first));
    b.layer("relu", Layer::Relu);
    b.residual(
        "block1",
        |m| {
            m.layer("conv1", Conv2d::new(first, first, 3).padding(1).bias(false)).layer("bn1", BatchNorm2d::new(first));
            m.layer("relu1", Layer::Relu).layer("conv2", Conv2d::new(first, first, 3).padding(1));
        },
        |_| {},
        |p| {
            p.layer("relu", Layer::Relu);
        },
    );
    b.residual(
        "block2",
        |m| {
            m.layer("conv1", Conv2d::new(first, second, 3).stride(2).padding(1).bias(false));
            m.layer("bn1", BatchNorm2d::new(second));
        },
        |s| {
            s.sequential("downsample", |d| {
                d.push(Conv2d::new(first, second, 1).stride(2).bias(false)).push(BatchNorm2d::new(second));
            });
        },
        |p| {
            p.layer("relu", Layer::Relu);
        },
    );
    b.layer("avgpool", Layer::AvgPool2d(Pool2d::new(3).stride(1).padding(1)));
    b.layer("maxpool", Layer::MaxPool2d(Pool2d::new(2)));
    b.layer("gap", Layer::GlobalAvgPool).layer("flatten", Layer::Flatten);
    b.layer("fc1", Linear::new(second, hidden)).layer("relu_fc", Layer::Relu).layer("drop", Layer::Dropout { p: 0.5 });
    b.layer("fc2", Linear::new(hidden, classes));
    b.build("EveryLayerCNN", &[input, 8, 8]).expect("graph")
}

/// Kaiming weights with random biases and batch-norm statistics (as the executor tests use).
pub fn random_params(graph: &cryptgpu_dsl::Graph, rng: &mut rand::rngs::StdRng) -> cryptgpu_dsl::Params {
    cryptgpu_dsl::Params::random(graph, rng, 0.2, false)
}

/// A batch of `n` standard-normal inputs of `graph`.
pub fn batch(graph: &cryptgpu_dsl::Graph, n: usize, rng: &mut rand::rngs::StdRng) -> cryptgpu_dsl::Tensor {
    let mut shape = vec![n];
    shape.extend_from_slice(graph.input_shape());
    cryptgpu_dsl::Tensor::randn(&shape, 1.0, rng)
}

pub mod suite;
pub mod view;
