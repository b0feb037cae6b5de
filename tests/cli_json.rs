//! `--json` on `train` and `accuracy`: stdout is one JSON object per line with the fields README.md documents, and
//! nothing else (no table, no progress bar on a captured stderr). Needs `data/mnist` (`./scripts/test.sh` fetches it).

use std::process::Command;

/// Runs the CLI; the records on stdout (every line must parse) and stderr.
fn records(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run the CLI");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let lines = stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")));
    (lines.collect(), stderr)
}

fn has_fields(r: &serde_json::Value, fields: &[&str]) {
    for f in fields {
        assert!(r.get(f).is_some(), "field `{f}` missing in {r}");
    }
}

#[test]
fn train_json_has_one_record_per_step_then_the_run() {
    let (rs, stderr) = records(&["train", "--steps", "2", "--batch", "4", "--eval", "20", "--json"]);
    assert!(!stderr.contains("step 1/2"), "progress noise on a captured stderr: {stderr}");
    assert_eq!(rs.len(), 3, "{rs:?}");
    for (i, r) in rs[..2].iter().enumerate() {
        assert_eq!((r["record"].as_str(), r["step"].as_u64()), (Some("train_step"), Some(i as u64 + 1)), "{r}");
        has_fields(r, &["private_loss", "plaintext_loss"]);
        let (p, q) = (r["private_loss"].as_f64().unwrap(), r["plaintext_loss"].as_f64().unwrap());
        assert!((p - q).abs() < 2e-2 * q.max(1.0), "step {}: private loss {p} vs plaintext {q}", i + 1);
    }
    let run = &rs[2];
    assert_eq!(run["record"], "train");
    has_fields(
        run,
        &[
            "model",
            "dataset",
            "steps",
            "batch",
            "lr",
            "momentum",
            "eval_images",
            "private_accuracy",
            "plaintext_accuracy",
            "final_private_loss",
            "final_plaintext_loss",
            "rounds",
            "bytes",
            "wall_s",
            "loss_csv",
            "saved",
        ],
    );
    assert_eq!(
        (run["steps"].as_u64(), run["batch"].as_u64(), run["eval_images"].as_u64()),
        (Some(2), Some(4), Some(20))
    );
    assert!(run["rounds"].as_u64().unwrap() > 0 && run["bytes"].as_u64().unwrap() > 0, "{run}");
}

#[test]
fn accuracy_json_has_one_record_per_precision() {
    let (rs, _) = records(&["accuracy", "--model", "lenet", "--batch", "2", "--frac-bits", "16,20", "--json"]);
    assert_eq!(rs.len(), 2, "{rs:?}");
    for (r, t) in rs.iter().zip([16, 20]) {
        assert_eq!((r["record"].as_str(), r["frac_bits"].as_u64()), (Some("accuracy"), Some(t)), "{r}");
        has_fields(
            r,
            &["model", "batch", "refused", "mean_relative_error", "argmax_agreement", "rounds", "bytes", "wall_s"],
        );
        assert!(r["refused"].is_null(), "{r}");
        assert!(r["mean_relative_error"].as_f64().unwrap() < 1e-2, "{r}");
    }
}
