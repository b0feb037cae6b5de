//! The main job on the embedded default (three parties as threads of this process, CPU backend, t = 20):
//!
//! 1. **private inference** — party 1 owns trained LeNet weights (`weights/lenet_mnist.safetensors`, themselves
//!    the result of one epoch of *private* training: see BENCHMARKS.md), party 0 owns MNIST test images; party 0
//!    learns the logits and nothing else is opened. Prints accuracy, agreement with plaintext inference of the same
//!    weights, time, rounds and bytes.
//! 2. **a short private training run** — LeNet from a Kaiming initialisation, SGD with momentum on MNIST training
//!    batches owned by party 0, beside plaintext training from the same initialisation and batches. Prints both loss
//!    curves' ends, both models' test accuracy, their agreement, time, rounds and bytes.
//!
//! `./scripts/run.sh` fetches MNIST and runs this; or `cargo run --release --example lenet_mnist -- --help`.

use clap::Parser;
use cryptgpu::data::{Dataset, Split};
use cryptgpu::dsl::{reference, weights, Params, Tensor};
use cryptgpu::lenet_mnist::{self as job, JobError};
use cryptgpu::runtime::training::TrainConfig;
use cryptgpu::workloads;
use rand::SeedableRng;
use std::path::PathBuf;

/// Private LeNet inference and training on MNIST among three in-process parties.
#[derive(Parser)]
struct Args {
    /// MNIST directory (`scripts/fetch-data.sh` fills it).
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    /// Trained LeNet weights (safetensors, PyTorch names).
    #[arg(long, default_value = "weights/lenet_mnist.safetensors")]
    weights: PathBuf,
    /// Test images to classify privately.
    #[arg(long, default_value_t = 1000)]
    images: usize,
    /// Images per private inference run.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Private SGD steps of the training run (0 skips it).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    train_batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
}

fn main() -> Result<(), JobError> {
    let args = Args::parse();
    let graph = job::lenet()?;
    let test_set = Dataset::mnist(&args.data, Split::Test)?;
    let session = job::default_session()?;
    let mb = |bytes: u64| bytes as f64 / 1e6;

    // 1. Private inference with trained weights.
    let trained = weights::load(&graph, &args.weights).map_err(|e| {
        format!("{e}\n(the weights ship in the repository; to make them again: cargo run --release -- train --steps 0 --batch 128 --save {})", args.weights.display())
    })?;
    let images = test_set.subset(0..args.images.min(test_set.len()));
    println!(
        "1. private inference: LeNet ({}) owned by party {}, {} MNIST test images owned by party {}, logits to party {}",
        args.weights.display(),
        job::MODEL_OWNER,
        images.len(),
        job::DATA_OWNER,
        job::DATA_OWNER
    );
    let r = job::private_inference(&session, &graph, &trained, &images, args.batch)?;
    let pct = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
    println!(
        "   accuracy            : private {:.2}%, plaintext (same weights) {:.2}%",
        pct(r.private_correct, r.images),
        pct(r.plain_correct, r.images)
    );
    println!(
        "   plaintext agreement : same class on {}/{} images, mean relative error of the logits {:.2e}",
        r.agree, r.images, r.mean_relative_error
    );
    println!(
        "   cost                : {:.2} s wall ({:.1} ms per image), {} rounds, {:.1} MB sent by all parties ({:.2} MB per image)",
        r.wall.as_secs_f64(),
        1e3 * r.wall.as_secs_f64() / r.images.max(1) as f64,
        r.rounds,
        mb(r.total.total_bytes()),
        mb(r.total.total_bytes()) / r.images.max(1) as f64
    );

    // 2. A short private training run beside plaintext training.
    if args.steps == 0 {
        return Ok(());
    }
    let init = Params::kaiming(&graph, &mut rand::rngs::StdRng::seed_from_u64(1));
    let train_set = Dataset::mnist(&args.data, Split::Train)?.shuffled(1);
    println!(
        "\n2. private training: {} SGD steps of {} MNIST training images (party 0's), lr {}, momentum {}, from a Kaiming init (party 1's)",
        args.steps, args.train_batch, args.lr, args.momentum
    );
    let config = TrainConfig::new(args.lr).with_momentum(args.momentum);
    let t = job::private_training(&session, &graph, &init, &train_set, args.steps, args.train_batch, config)?;
    let (first, last) = (0, t.private_losses.len().saturating_sub(1));
    println!(
        "   loss                : private {:.4} → {:.4}, plaintext {:.4} → {:.4} (step 1 → {})",
        t.private_losses[first],
        t.private_losses[last],
        t.plain_losses[first],
        t.plain_losses[last],
        last + 1
    );
    let eval = images;
    let x = Tensor::from_vec(&eval.images.shape, eval.images.data.clone())?;
    let (lp, lq) = (reference::infer(&graph, &t.private_params, &x)?, reference::infer(&graph, &t.plain_params, &x)?);
    let k = lq.shape()[1];
    let predict = |l: &Tensor, i: usize| workloads::argmax(&l.data()[i * k..][..k]);
    let count = |f: &dyn Fn(usize) -> bool| (0..eval.len()).filter(|&i| f(i)).count();
    let label = |i: usize| eval.labels[i] as usize;
    println!(
        "   test accuracy       : private-trained {:.2}%, plaintext-trained {:.2}% on {} test images",
        pct(count(&|i| predict(&lp, i) == label(i)), eval.len()),
        pct(count(&|i| predict(&lq, i) == label(i)), eval.len()),
        eval.len()
    );
    println!(
        "   plaintext agreement : the two trained models predict the same class on {}/{} test images",
        count(&|i| predict(&lp, i) == predict(&lq, i)),
        eval.len()
    );
    println!(
        "   cost                : {:.2} s wall ({:.2} s per step), {} rounds, {:.1} MB sent by all parties",
        t.wall.as_secs_f64(),
        t.wall.as_secs_f64() / args.steps as f64,
        t.rounds,
        mb(t.bytes)
    );
    Ok(())
}
