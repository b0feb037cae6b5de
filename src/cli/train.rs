//! `cryptgpu train`: private training of LeNet on MNIST or Fashion-MNIST beside plaintext training from the same
//! initialisation and batches, with both models' test accuracy.

use super::{CmdResult, DatasetArg};

/// `cryptgpu train`'s options.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// SGD steps (0 = one full epoch).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Test images to evaluate both trained models on.
    #[arg(long, default_value_t = 1000)]
    eval: usize,
    /// Dataset: MNIST or Fashion-MNIST (same shapes, ten classes).
    #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
    dataset: DatasetArg,
    /// Dataset directory (default: `data/mnist` or `data/fashion-mnist`, which `scripts/fetch-data.sh` fills).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Write the two loss curves here (CSV: step, private, plaintext).
    #[arg(long)]
    loss_csv: Option<std::path::PathBuf>,
    /// Save the privately trained weights (revealed to the model owner only) here as safetensors.
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    /// Print JSON records on stdout (one per step, then one for the run) instead of the text report.
    #[arg(long)]
    json: bool,
    /// Run every layer on its own: no cross-layer fusion (to compare rounds, bytes and results with the default).
    #[arg(long)]
    no_fusion: bool,
}

/// `cryptgpu train`: train privately and in plaintext, then report (text or JSON) and write the optional files.
pub fn run(a: TrainArgs) -> CmdResult {
    use cryptgpu::data::{Dataset, Split};
    use cryptgpu::dsl::Params;
    use cryptgpu::lenet_mnist as job;
    use cryptgpu::runtime::training::TrainConfig;
    use rand::SeedableRng;
    let TrainArgs { steps, batch, lr, momentum, eval, dataset, data, loss_csv, save, json, no_fusion } = a;
    let graph = job::lenet()?;
    let init = Params::kaiming(&graph, &mut rand::rngs::StdRng::seed_from_u64(1));
    let source = dataset.source();
    let dir = data.unwrap_or_else(|| source.default_dir().into());
    let train_set = Dataset::load(source, &dir, Split::Train)?.shuffled(1);
    let test_set = Dataset::load(source, &dir, Split::Test)?;
    let test_set = test_set.subset(0..eval.min(test_set.len()));
    let fusion = cryptgpu::runtime::Fusion::from_bool(!no_fusion);
    let config = TrainConfig::new(lr).with_momentum(momentum).with_fusion(fusion);
    let planned = if steps == 0 { train_set.len() / batch.max(1) } else { steps };
    let bar = cryptgpu::progress::steps(planned as u64);
    let on_step = |s: job::StepProgress| {
        bar.set_position(s.step as u64);
        bar.set_message(cryptgpu::progress::step_message(s.loss, s.bytes));
    };
    let session = job::default_session()?;
    let r = job::private_training_observed(&session, &graph, &init, &train_set, steps, batch, config, &on_step);
    bar.finish_and_clear();
    let r = r?;
    let n = r.private_losses.len();
    let (acc_private, acc_plain) = cryptgpu::progress::during("evaluating both models", || {
        Ok::<_, Box<dyn std::error::Error>>((
            job::plaintext_accuracy(&graph, &r.private_params, &test_set)?,
            job::plaintext_accuracy(&graph, &r.plain_params, &test_set)?,
        ))
    })?;
    if let Some(path) = &loss_csv {
        let mut csv = String::from("step,private,plaintext\n");
        for (i, (s, p)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
            csv.push_str(&format!("{},{s},{p}\n", i + 1));
        }
        std::fs::write(path, csv)?;
    }
    if let Some(path) = &save {
        cryptgpu::dsl::weights::save(&graph, &r.private_params, path)?;
    }
    if json {
        for (i, (s, p)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
            let record =
                serde_json::json!({"record": "train_step", "step": i + 1, "private_loss": s, "plaintext_loss": p});
            println!("{record}");
        }
        let record = serde_json::json!({
            "record": "train",
            "model": graph.name(),
            "dataset": source.to_string(),
            "steps": n,
            "batch": batch,
            "lr": lr,
            "momentum": momentum,
            "eval_images": test_set.len(),
            "private_accuracy": acc_private,
            "plaintext_accuracy": acc_plain,
            "final_private_loss": r.private_losses.last(),
            "final_plaintext_loss": r.plain_losses.last(),
            "rounds": r.rounds,
            "bytes": r.bytes,
            "wall_s": r.wall.as_secs_f64(),
            "loss_csv": loss_csv.as_ref().map(|p| p.display().to_string()),
            "saved": save.as_ref().map(|p| p.display().to_string()),
        });
        println!("{record}");
        return Ok(());
    }
    println!(
        "LeNet (average pooling) on {source}: {n} SGD steps of {batch} images, lr {lr}, momentum {momentum}, same Kaiming init and batches privately and in plaintext"
    );
    println!("\n| step | private loss | plaintext loss |\n|---|---|---|");
    let stride = (n / 10).max(1);
    for (i, (s, p)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
        if i % stride == 0 || i + 1 == n {
            println!("| {} | {s:.4} | {p:.4} |", i + 1);
        }
    }
    println!(
        "\ntest accuracy on {} images: private {:.2}%, plaintext {:.2}% ({:+.2} pp)",
        test_set.len(),
        100.0 * acc_private,
        100.0 * acc_plain,
        100.0 * (acc_private - acc_plain)
    );
    println!(
        "private training: {:.1} s wall ({:.2} s per step), {} rounds, {:.3} GB sent in total",
        r.wall.as_secs_f64(),
        r.wall.as_secs_f64() / n.max(1) as f64,
        r.rounds,
        r.bytes as f64 / 1e9
    );
    if let Some(path) = loss_csv {
        println!("loss curves written to {}", path.display());
    }
    if let Some(path) = save {
        println!("privately trained weights (as revealed to the model owner) written to {}", path.display());
    }
    Ok(())
}
