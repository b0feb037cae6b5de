//! The range-analysis and accuracy commands refuse impossible sizes and bad margins with a clear error (exit code
//! 1, a message naming the limit or the value): no allocation abort, no panic.

use std::process::Command;

fn cryptgpu(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu")).args(args).output().expect("run");
    // `code()` is None when a signal (SIGABRT of a failed allocation) ended the process; a panic exits with 101.
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn accuracy_with_a_huge_batch_is_an_error() {
    let (code, stderr) = cryptgpu(&["accuracy", "--batch", "18446744073709551615"]);
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains("overflows usize"), "{stderr}");
    let (code, stderr) = cryptgpu(&["accuracy", "--batch", "100000000"]);
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains("max_elements") && stderr.contains("batch of 100000000"), "{stderr}");
}

#[test]
fn precision_with_a_huge_calibration_is_an_error() {
    for n in ["18446744073709551615", "100000000"] {
        let (code, stderr) = cryptgpu(&["precision", "--model", "alexnet", "--calibrate", n]);
        assert_eq!(code, Some(1), "--calibrate {n}: stderr: {stderr}");
        assert!(stderr.contains("calibration samples") && stderr.contains("limit"), "{stderr}");
    }
}

#[test]
fn precision_with_a_bad_margin_is_an_error() {
    for margin in ["0.5", "inf", "NaN"] {
        let (code, stderr) = cryptgpu(&["precision", "--model", "lenet", "--margin", margin]);
        assert_eq!(code, Some(1), "--margin {margin}: stderr: {stderr}");
        assert!(stderr.contains("calibration margin") && stderr.contains("finite factor ≥ 1"), "{stderr}");
    }
}
