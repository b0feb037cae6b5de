//! The README's main job (`examples/lenet_mnist.rs` through `cryptgpu::lenet_mnist`) on a few real MNIST images:
//! private inference agrees with plaintext inference of the same weights, and a short private training run follows
//! plaintext training from the same start. Needs `data/mnist` (`./scripts/test.sh` fetches it).

use cryptgpu::data::{Dataset, Split};
use cryptgpu::dsl::Params;
use cryptgpu::lenet_mnist as job;
use cryptgpu::runtime::training::TrainConfig;
use rand::SeedableRng;

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

#[test]
fn shipped_weights_classify_mnist_privately_as_in_plaintext() {
    let graph = job::lenet().unwrap();
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lenet_mnist.safetensors");
    let params = cryptgpu::dsl::weights::load(&graph, &weights).unwrap();
    let test = Dataset::mnist(data_dir(), Split::Test).unwrap();
    let seed: u64 = rand::random();
    let start = (seed % 9_950) as usize;
    let images = test.subset(start..start + 50);
    let r = job::private_inference(&job::default_session().unwrap(), &graph, &params, &images, 25).unwrap();
    assert_eq!(r.images, 50);
    assert_eq!(r.agree, 50, "images {start}..{}: private and plaintext classes differ", start + 50);
    assert!(r.mean_relative_error < 1e-4, "mean relative error {:.3e}", r.mean_relative_error);
    assert_eq!(r.private_correct, r.plain_correct);
    // Trained weights, not a random model: at least 44 of 50 right (the model's test accuracy is about 98%).
    assert!(r.private_correct >= 44, "images {start}..: only {} of 50 right", r.private_correct);
    // Two runs of 25 images: each is share weights + share input + the layers + reveal.
    let one = job::private_inference(&job::default_session().unwrap(), &graph, &params, &images.subset(0..25), 25);
    assert_eq!(r.rounds, 2 * one.unwrap().rounds);
}

#[test]
fn short_private_training_follows_plaintext_training() {
    let graph = job::lenet().unwrap();
    let init = Params::kaiming(&graph, &mut rand::rngs::StdRng::seed_from_u64(rand::random()));
    let train = Dataset::mnist(data_dir(), Split::Train).unwrap().shuffled(rand::random());
    let config = TrainConfig::new(0.05).with_momentum(0.5);
    let r = job::private_training(&job::default_session().unwrap(), &graph, &init, &train, 3, 32, config).unwrap();
    assert_eq!((r.private_losses.len(), r.plain_losses.len()), (3, 3));
    for (s, (p, q)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
        // The private logarithm of a probability off by ε ≈ 10⁻³ is off by ≈ ε/p: it grows with the loss.
        assert!((p - q).abs() < 2e-2 * q.max(1.0), "step {}: private loss {p} vs plaintext {q}", s + 1);
    }
    // The model moved the way plaintext training moved it: the private − plaintext distance over all parameters is
    // a small fraction of the plaintext update. (Per tensor, the first convolution's bias is the most sensitive: its
    // gradient sums 9216 positions of the private softmax's ≈10⁻³ error per probability, up to ≈9% of its update.)
    let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let (mut off, mut update) = (0.0, 0.0);
    for (name, w) in r.private_params.iter() {
        let (v, w0) = (r.plain_params.require(name).unwrap(), init.require(name).unwrap());
        let (o, u) = (sq(w.data(), v.data()), sq(v.data(), w0.data()));
        eprintln!("{name}: {:.3e} off a plaintext update of {:.3e}", o.sqrt(), u.sqrt());
        (off, update) = (off + o, update + u);
    }
    let ratio = (off / update).sqrt();
    assert!(
        ratio <= 0.05,
        "private weights {:.2}% of the plaintext update away from plaintext training",
        100.0 * ratio
    );
    assert!(r.rounds > 0 && r.bytes > 0);
}
