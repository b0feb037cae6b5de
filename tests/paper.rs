//! `cryptgpu paper` in its reduced configuration (`--quick`: LeNet, small batches, two precisions, a few training
//! steps): every table is written as CSV and JSON with every cell filled, private and plaintext agree, every plot is
//! an SVG holding its series, the anchors' ratio column is our bytes over the lowest published figure, and a
//! measurement that does not fit its budget is skipped with a note saying how to run it. The full run is the
//! documented command (`cargo run --release -- paper`), not a test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cryptgpu-paper-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `cryptgpu paper ARGS --out DIR`; returns (exit code, stdout, stderr).
fn paper(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let data = root().join("data");
    let recorded = root().join("results/lenet_mnist_loss_epoch.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu"))
        .arg("paper")
        .args(args)
        .args(["--out".as_ref(), dir.as_os_str(), "--data".as_ref(), data.as_os_str()])
        .args(["--recorded-loss".as_ref(), recorded.as_os_str()])
        .output()
        .expect("run cryptgpu");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// The rows of a CSV the harness wrote (no cell holds a comma in these tables' numeric columns we read).
fn csv(dir: &Path, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap_or_else(|e| panic!("{name}.csv: {e}"));
    let mut lines = text.lines().map(split_csv);
    let header = lines.next().expect("header");
    let rows: Vec<Vec<String>> = lines.collect();
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{name}.csv: row {r:?}");
        assert!(r.iter().all(|c| !c.trim().is_empty()), "{name}.csv: empty cell in {r:?}");
    }
    (header, rows)
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut cells, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    cells.push(cur);
    cells
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column `{name}` in {header:?}"))
}

fn svg(dir: &Path, name: &str, must_hold: &[&str]) {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{name} is not an SVG document");
    assert_eq!(text.matches("<text").count(), text.matches("</text>").count(), "{name}: unbalanced <text>");
    for s in must_hold {
        assert!(text.contains(s), "{name} does not hold `{s}`");
    }
}

#[test]
fn quick_tables_and_plots_are_filled_and_agree_with_plaintext() {
    let dir = out_dir("quick");
    let (code, stdout, stderr) = paper(&dir, &["--quick", "--only", "table4,fig3,layers"]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    // Table 4: the ratio column is our bytes over the lowest published figure (Falcon's 2.29 MB for LeNet b1).
    let (h, rows) = csv(&dir, "table4");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let b1 = &rows[0];
    assert_eq!((b1[0].as_str(), b1[1].as_str()), ("LeNet inference", "1"));
    let ours: f64 = b1[col(&h, "MB sent (all parties)")].parse().unwrap();
    assert_eq!(b1[col(&h, "Falcon MB")], "2.290");
    let ratio = &b1[col(&h, "ours / lowest published")];
    assert_eq!(ratio, &format!("{:.2}× (Falcon)", ours / 2.29), "{b1:?}");
    assert!(ours > 1.0 && ours < 10.0, "LeNet b1 inference sends {ours} MB");
    assert!(rows.iter().all(|r| r[col(&h, "rounds")].parse::<u64>().unwrap() > 0));
    let (_, tops) = csv(&dir, "table4_contributors");
    assert_eq!(tops.len(), 3);
    // Fig. 3: private and plaintext logits agree (argmax on both samples, tiny error at t = 20).
    let (h, rows) = csv(&dir, "fig3");
    let t20 = rows.iter().find(|r| r[col(&h, "t")] == "20").expect("t = 20 row");
    assert_eq!(t20[col(&h, "same argmax")], "2/2");
    let err: f64 = t20[col(&h, "mean relative error")].split(' ').next().unwrap().parse().unwrap();
    assert!(err < 1e-4, "relative error at t = 20: {err}");
    let t12 = rows.iter().find(|r| r[col(&h, "t")] == "12").expect("t = 12 row");
    let err12: f64 = t12[col(&h, "mean relative error")].split(' ').next().unwrap().parse().unwrap();
    assert!(err12 > err, "error at t = 12 ({err12}) not above t = 20 ({err})");
    svg(&dir, "fig3_error_vs_bits.svg", &["LeNet (2 sample(s))", "fractional bits t"]);
    // Per-layer: every LeNet layer, in the table and the plot.
    let (_, rows) = csv(&dir, "layers");
    assert_eq!(rows.len(), 10, "{rows:?}");
    svg(&dir, "layers.svg", &["features.0", "classifier.3", "MB sent"]);
    // The Markdown on stdout and in summary.md, the JSON records.
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    for s in [&stdout, &summary] {
        assert!(s.contains("### Table 4") && s.contains("| LeNet inference | 1 |") && s.contains("layers.svg"), "{s}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(json.as_array().unwrap().iter().any(|r| r["table"] == "table4" && r["batch"] == 1.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quick_training_curves_and_pooling_tables_are_written() {
    let dir = out_dir("curves");
    let (code, _, stderr) = paper(&dir, &["--quick", "--only", "fig4,table8"]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let (h, rows) = csv(&dir, "table7");
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["MNIST", "Fashion-MNIST"]);
    for r in &rows {
        let (p, q): (f64, f64) =
            (r[col(&h, "last private loss")].parse().unwrap(), r[col(&h, "last plaintext loss")].parse().unwrap());
        assert!((p - q).abs() < 0.05, "private loss {p} vs plaintext {q}: {r:?}");
    }
    svg(&dir, "fig4_loss.svg", &["MNIST private", "MNIST plaintext", "Fashion-MNIST private"]);
    svg(&dir, "fig4_accuracy.svg", &["Fashion-MNIST plaintext", "test accuracy"]);
    svg(&dir, "fig4_epoch_loss.svg", &["private", "plaintext"]);
    let (h, rows) = csv(&dir, "table8");
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Max pooling costs more rounds than average pooling.
    for r in &rows {
        assert!(r[col(&h, "max rounds")].parse::<u64>().unwrap() > r[col(&h, "avg rounds")].parse::<u64>().unwrap());
    }
    let (_, rows) = csv(&dir, "table8_accuracy");
    assert_eq!(rows.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(), ["avg", "max"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_does_not_fit_the_budget_is_skipped_with_the_command_to_run_it() {
    let dir = out_dir("budget");
    let (code, stdout, stderr) = paper(&dir, &["--only", "table6", "--budget-s", "table6=0.5"]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    for model in ["ResNet-50", "ResNet-101", "ResNet-152"] {
        let note = stdout
            .lines()
            .find(|l| l.contains(&format!("skipped {model}, batch 2")))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(note.contains("--only table6 --budget-s table6=") && note.contains("--all"), "{note}");
    }
    let (_, rows) = csv(&dir, "table6");
    assert!(rows.is_empty(), "{rows:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_budget_is_an_error_naming_it() {
    let dir = out_dir("bad");
    let (code, _, stderr) = paper(&dir, &["--only", "layers", "--budget-s", "fig9=3"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--budget-s `fig9=3`") && stderr.contains("table4"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_prints_one_record_per_row() {
    let dir = out_dir("json");
    let (code, stdout, stderr) = paper(&dir, &["--quick", "--only", "layers", "--json"]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let records: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert_eq!(records.len(), 10, "{stdout}");
    assert!(records.iter().all(|r| r["table"] == "layers" && r["rounds"].is_number()), "{stdout}");
    assert_eq!(records[0]["layer"], "features.0");
    std::fs::remove_dir_all(&dir).unwrap();
}
