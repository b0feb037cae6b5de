//! `cryptgpu bench-spu` without SPU: a fake "python" (a shell script) answers the import check and emulates
//! `bench_spu.py`'s command line, logging each call and printing a `RESULT` line with a known `mpc_s` per workload
//! and call. The tests check that the ratios come from both sides, that the passes alternate which side runs
//! first, and that a Python without SPU (or none at all) is a clear error naming `--python` and `$SPU_PYTHON`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-{name}-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A fake Python with SPU: `-c …` prints a version; `SCRIPT --workload W …` appends its arguments to
/// `$FAKE_SPU_LOG` and prints `mpc_s` = relu 3.0 then 5.0, lenet 0.5 then 0.7 (first and second call).
const FAKE_PYTHON: &str = r#"#!/bin/sh
if [ "$1" = "-c" ]; then echo 0.9.5-fake; exit 0; fi
shift
echo "$*" >> "$FAKE_SPU_LOG"
w=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--workload" ]; then w="$2"; fi
  shift
done
n=$(grep -c -- "--workload $w " "$FAKE_SPU_LOG")
case "$w:$n" in
  relu:1) s=3.0 ;; relu:2) s=5.0 ;;
  lenet:1) s=0.5 ;; lenet:2) s=0.7 ;;
  *) echo "unexpected call $w $n" >&2; exit 3 ;;
esac
echo "some logging"
echo "RESULT {\"system\": \"SPU\", \"mpc_s\": $s}"
"#;

fn bench_spu(dir: &Path, python: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cryptgpu"));
    cmd.arg("bench-spu").args(args).env_remove("SPU_PYTHON").env("FAKE_SPU_LOG", dir.join("calls.log"));
    cmd.arg("--script").arg(script(dir, "bench_spu.py", "# the fake python never reads this\n"));
    if let Some(p) = python {
        cmd.arg("--python").arg(p);
    }
    cmd.output().expect("run cryptgpu")
}

fn json_records(out: &Output) -> Vec<serde_json::Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn ratios_come_from_both_sides_and_passes_alternate() {
    let dir = temp_dir("bench-spu");
    let python = script(&dir, "python", FAKE_PYTHON);
    let out = bench_spu(&dir, Some(&python), &["--only", "relu,lenet1", "--reps", "1", "--passes", "2", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench-spu failed: {stderr}");

    // SPU was called once per workload and pass, with the workload's size, our --reps and the one-process mode.
    let calls = std::fs::read_to_string(dir.join("calls.log")).expect("the fake was called");
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for (call, want) in calls.iter().zip(["relu --m 1048576", "lenet --batch 1", "relu --m 1048576", "lenet --batch 1"])
    {
        assert!(call.starts_with(&format!("--workload {want} --reps 1 ")), "{call}");
        assert!(call.contains("--mode sim"), "{call}");
    }

    // The schedule: pass 1 runs ours first, pass 2 SPU first, for every workload.
    let schedule: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pass ")).collect();
    let want = [
        "pass 1/2: relu: cryptgpu",
        "pass 1/2: relu: SPU",
        "pass 1/2: lenet1: cryptgpu",
        "pass 1/2: lenet1: SPU",
        "pass 2/2: relu: SPU",
        "pass 2/2: relu: cryptgpu",
        "pass 2/2: lenet1: SPU",
        "pass 2/2: lenet1: cryptgpu",
    ];
    assert_eq!(schedule, want, "stderr: {stderr}");

    let records = json_records(&out);
    assert_eq!(records.len(), 2);
    for (r, (name, spu_median, spu_passes)) in
        records.iter().zip([("relu", 4.0, [3.0, 5.0]), ("lenet1", 0.6, [0.5, 0.7])])
    {
        assert_eq!(r["workload"], name);
        assert_eq!(r["record"], "bench-spu");
        let passes = r["passes"].as_array().expect("passes");
        assert_eq!(passes.len(), 2);
        assert_eq!(passes[0]["first"], "ours");
        assert_eq!(passes[1]["first"], "spu");
        let ours: Vec<f64> = passes.iter().map(|p| p["ours_s"].as_f64().expect("ours_s")).collect();
        for (p, want) in passes.iter().zip(spu_passes) {
            assert_eq!(p["spu_s"].as_f64(), Some(want));
        }
        assert!(ours.iter().all(|&s| s > 0.0 && s < 60.0), "{ours:?}");
        let (ours_s, spu_s, ratio) =
            (r["ours_s"].as_f64().unwrap(), r["spu_s"].as_f64().unwrap(), r["ratio"].as_f64().unwrap());
        assert!(close(spu_s, spu_median), "{r}");
        assert!(close(ours_s, (ours[0] + ours[1]) / 2.0), "{r}");
        assert!(close(ratio, spu_s / ours_s), "{r}");
        assert_eq!(r["met"], ratio >= 5.0, "{r}");
        assert_eq!(r["goal"], "≥ 5× SPU");
        assert!(r["rounds"].as_u64().unwrap() > 0 && r["bytes"].as_u64().unwrap() > 0, "{r}");
    }
    // ReLU's communication is the protocol's, not a placeholder: at least 2^20 elements' worth of bytes.
    assert!(records[0]["bytes"].as_u64().unwrap() >= 1 << 20);

    // The table: the SPU cell is the fake's value and the ratio is SPU over our cell (a fresh log: the fake's first
    // lenet call says 0.5 s).
    std::fs::remove_file(dir.join("calls.log")).expect("the log");
    let out = bench_spu(&dir, Some(&python), &["--only", "lenet1", "--reps", "1", "--passes", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench-spu failed: {}", String::from_utf8_lossy(&out.stderr));
    let row = stdout.lines().find(|l| l.starts_with("| LeNet inference, batch 1 |")).expect("the LeNet row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[2], "500.0 ms", "{row}");
    let ours_ms: f64 = match cells[3].strip_suffix(" ms") {
        Some(ms) => ms.parse().expect("a number"),
        None => 1e3 * cells[3].strip_suffix(" s").expect("ms or s").parse::<f64>().expect("a number"),
    };
    let ratio: f64 = cells[4].strip_suffix('×').expect("×").parse().expect("a number");
    // Both cells are rounded: ours to 0.05 ms (or 5 ms above a second), the ratio to 0.005.
    let rounding_ms = if ours_ms < 1e3 { 0.05 } else { 5.0 };
    let slack = 0.005 + ratio * rounding_ms / (ours_ms - rounding_ms) * 1.01;
    assert!((ratio - 500.0 / ours_ms).abs() <= slack, "{row}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_python_without_spu_is_a_clear_error() {
    let dir = temp_dir("bench-spu-nospu");
    let python = script(&dir, "python", "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'spu'\" >&2\nexit 1\n");
    let out = bench_spu(&dir, Some(&python), &["--only", "relu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in
        [python.to_str().unwrap(), "--python", "cannot import spu", "No module named 'spu'", "install spu==0.9.5"]
    {
        assert!(stderr.contains(want), "missing `{want}` in: {stderr}");
    }

    let missing = dir.join("no-such-python");
    let out = bench_spu(&dir, Some(&missing), &["--only", "relu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no-such-python") && stderr.contains("does not start"), "{stderr}");

    let out = bench_spu(&dir, None, &["--only", "relu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--python") && stderr.contains("$SPU_PYTHON"), "{stderr}");
    assert!(!dir.join("calls.log").exists(), "no workload may run without SPU");
    let _ = std::fs::remove_dir_all(&dir);
}
