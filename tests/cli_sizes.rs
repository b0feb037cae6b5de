//! The CLI refuses impossible sizes with an error naming the limit or the overflow: no allocation abort, no
//! segfault (every plaintext allocation of `cryptgpu matmul` comes after the size checks).

use std::process::Command;

fn matmul(size: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu")).args(["matmul", "--size", size]).output().expect("run");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn matmul_over_max_elements_is_an_error() {
    let (code, stderr) = matmul("65536");
    // `code()` is None when a signal (SIGABRT of a failed allocation, SIGSEGV) ended the process.
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains("4294967296 elements") && stderr.contains("max_elements"), "{stderr}");
}

#[test]
fn matmul_whose_element_count_overflows_is_an_error() {
    let (code, stderr) = matmul("4294967296");
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains("overflows usize"), "{stderr}");
}
