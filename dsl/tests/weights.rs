//! Safetensors I/O: round trip, a file written directly with the `safetensors` crate under PyTorch names, the
//! optional `num_batches_tracked`, strict and non-strict loading, and the errors for missing, extra, mis-shaped and
//! mistyped tensors and for truncated and corrupt files (real files on disk).

mod common;

use common::{randn, rng};
use cryptgpu_dsl::models::{self, Pooling};
use cryptgpu_dsl::reference::{forward, infer, Mode};
use cryptgpu_dsl::weights::{LoadOptions, LoadReport};
use cryptgpu_dsl::{weights, BatchNorm2d, Builder, Conv2d, Graph, Linear, Params, Tensor};
use safetensors::tensor::{Dtype, TensorView};

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cryptgpu-dsl-{tag}-{}.safetensors", std::process::id()))
}

/// Writes `bytes` to a fresh file, loads it strictly for `graph`, removes it, and returns the error message
/// (which must name the file).
fn load_error(graph: &Graph, tag: &str, bytes: &[u8]) -> String {
    let path = temp_path(tag);
    std::fs::write(&path, bytes).unwrap();
    let result = weights::load(graph, &path);
    std::fs::remove_file(&path).unwrap();
    let err = result.expect_err("the file must be refused").to_string();
    assert!(err.contains(&path.display().to_string()), "the error must name the file: {err}");
    for bare in [
        "HeaderTooSmall",
        "HeaderTooLarge",
        "InvalidHeader",
        "MetadataIncompleteBuffer",
        "TensorInvalidInfo",
        "InvalidOffset",
        "ValidationOverflow",
    ] {
        assert!(!err.contains(bare), "bare parser error name `{bare}` in: {err}");
    }
    err
}

/// A safetensors file from a hand-written JSON header and data bytes (for corrupt headers).
fn raw_file(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header);
    v.extend_from_slice(data);
    v
}

/// `p`'s tensors as f32 entries, without the ones named in `skip`.
fn entries_without(p: &Params, skip: &[&str]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    p.iter()
        .filter(|(n, _)| !skip.contains(&n.as_str()))
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.data().iter().map(|&v| v as f32).collect()))
        .collect()
}

fn write_entries(e: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    write_external(&e.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.clone())).collect::<Vec<_>>())
}

fn bn_model() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(1, 3, 3).bias(false)).layer("bn1", BatchNorm2d::new(3)).relu().flatten();
    b.layer("fc", Linear::new(12, 2));
    b.build("bn", &[1, 4, 4]).unwrap()
}

/// Writes f32 tensors (and an int64 counter) with the safetensors crate only, as `safetensors.torch` would.
fn write_external(entries: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = entries
        .iter()
        .map(|(n, s, d)| (n.to_string(), s.clone(), d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> =
        bytes.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, &None).unwrap()
}

#[test]
fn round_trip_through_a_file_keeps_values_and_outputs() {
    let g = bn_model();
    let mut p = Params::kaiming(&g, &mut rng(21));
    let x = randn(&[2, 1, 4, 4], &mut rng(22));
    forward(&g, &mut p, &x, Mode::Train).unwrap(); // non-trivial running statistics and counter
    let path = temp_path("roundtrip");
    weights::save(&g, &p, &path).unwrap();
    let q = weights::load(&g, &path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(q.len(), p.len());
    for (name, t) in p.iter() {
        let back = q.get(name).unwrap();
        assert_eq!(back.shape(), t.shape(), "{name}");
        for (a, b) in t.data().iter().zip(back.data()) {
            assert_eq!(*b, *a as f32 as f64, "{name}: stored as f32");
        }
    }
    assert_eq!(q.get("bn1.num_batches_tracked").unwrap().data(), &[1.0]);
    let diff = infer(&g, &p, &x).unwrap().max_abs_diff(&infer(&g, &q, &x).unwrap());
    assert!(diff < 1e-5, "outputs after f32 round trip differ by {diff}");
}

#[test]
fn pytorch_named_file_loads_into_the_same_outputs() {
    let g = models::lenet(Pooling::Avg).unwrap();
    let mut r = rng(23);
    let mut in_code = Params::new();
    let mut entries = Vec::new();
    for spec in g.parameters() {
        let t = Tensor::randn(&spec.shape, 0.1, &mut r);
        let f32s: Vec<f32> = t.data().iter().map(|&v| v as f32).collect();
        in_code.insert(&spec.name, Tensor::from_vec(&spec.shape, f32s.iter().map(|&v| v as f64).collect()).unwrap());
        entries.push((spec.name.clone(), spec.shape.clone(), f32s));
    }
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "features.0.weight",
            "features.0.bias",
            "features.3.weight",
            "features.3.bias",
            "classifier.1.weight",
            "classifier.1.bias",
            "classifier.3.weight",
            "classifier.3.bias"
        ]
    );
    let file = write_external(&entries.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.clone())).collect::<Vec<_>>());
    let path = temp_path("pytorch");
    std::fs::write(&path, &file).unwrap();
    let loaded = weights::load(&g, &path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let x = Tensor::uniform(&[2, 1, 28, 28], 0.0, 1.0, &mut r);
    let a = infer(&g, &loaded, &x).unwrap();
    let b = infer(&g, &in_code, &x).unwrap();
    assert_eq!(a.shape(), &[2, 10]);
    assert_eq!(a, b);
}

#[test]
fn missing_extra_misshaped_and_mistyped_tensors_are_named() {
    let g = bn_model();
    let p = Params::kaiming(&g, &mut rng(24));
    let good = weights::to_bytes(&g, &p).unwrap();
    assert!(weights::from_bytes(&g, &good, "good.safetensors").is_ok());

    let mut missing = p.clone();
    missing.remove("bn1.running_var");
    let bytes = {
        let entries: Vec<(String, Vec<usize>, Vec<f32>)> = missing
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.data().iter().map(|&v| v as f32).collect()))
            .collect();
        write_external(&entries.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.clone())).collect::<Vec<_>>())
    };
    let err = weights::from_bytes(&g, &bytes, "m.safetensors").unwrap_err().to_string();
    assert!(
        err.contains("m.safetensors") && err.contains("missing tensor `bn1.running_var`") && err.contains("[3]"),
        "{err}"
    );

    let entries_of = |p: &Params| -> Vec<(String, Vec<usize>, Vec<f32>)> {
        p.iter().map(|(n, t)| (n.clone(), t.shape().to_vec(), t.data().iter().map(|&v| v as f32).collect())).collect()
    };
    let write = |e: &[(String, Vec<usize>, Vec<f32>)]| {
        write_external(&e.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.clone())).collect::<Vec<_>>())
    };

    let mut extra = entries_of(&p);
    extra.push(("fc2.weight".into(), vec![2, 2], vec![0.0; 4]));
    let err = weights::from_bytes(&g, &write(&extra), "e.safetensors").unwrap_err().to_string();
    assert!(err.contains("unexpected tensor `fc2.weight`") && err.contains("[2, 2]"), "{err}");

    let mut misshaped = entries_of(&p);
    for e in misshaped.iter_mut().filter(|e| e.0 == "fc.weight") {
        e.1 = vec![12, 2];
    }
    let err = weights::from_bytes(&g, &write(&misshaped), "s.safetensors").unwrap_err().to_string();
    assert!(err.contains("`fc.weight`") && err.contains("[12, 2]") && err.contains("[2, 12]"), "{err}");

    let half = vec![0u8; 2 * 2 * 12];
    let view = TensorView::new(Dtype::F16, vec![2, 12], &half).unwrap();
    let f16 = safetensors::serialize(vec![("fc.weight".to_string(), view)], &None).unwrap();
    let err = weights::from_bytes(&g, &f16, "h.safetensors").unwrap_err().to_string();
    assert!(err.contains("`fc.weight`") && err.contains("F16"), "{err}");

    let err = weights::from_bytes(&g, b"not a safetensors file", "bad.safetensors").unwrap_err().to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
    let err = weights::load(&g, temp_path("does-not-exist")).unwrap_err().to_string();
    assert!(err.contains("does-not-exist"), "{err}");

    let mut wrong = p.clone();
    wrong.insert("conv1.weight", Tensor::zeros(&[3, 1, 2, 2]));
    let err = weights::to_bytes(&g, &wrong).unwrap_err().to_string();
    assert!(err.contains("`conv1.weight`") && err.contains("[3, 1, 2, 2]") && err.contains("[3, 1, 3, 3]"), "{err}");
}

/// A batch-norm model with non-trivial statistics, as f32 values (what a file round trip keeps).
fn bn_params(seed: u64) -> Params {
    let g = bn_model();
    let mut p = Params::kaiming(&g, &mut rng(seed));
    let mut r = rng(seed + 1);
    for (name, lo, hi) in [("bn1.weight", 0.5, 1.5), ("bn1.bias", -0.3, 0.3), ("bn1.running_mean", -0.3, 0.3)] {
        p.insert(name, Tensor::uniform(&[3], lo, hi, &mut r));
    }
    p.insert("bn1.running_var", Tensor::uniform(&[3], 0.5, 2.0, &mut r));
    let mut q = Params::new();
    for (name, t) in p.iter() {
        q.insert(name, Tensor::from_vec(t.shape(), t.data().iter().map(|&v| v as f32 as f64).collect()).unwrap());
    }
    q
}

#[test]
fn a_state_dict_without_num_batches_tracked_loads_and_infers() {
    let g = bn_model();
    let p = bn_params(30);
    // As a Keras conversion writes it: every tensor but the counter.
    let path = temp_path("no-counter");
    std::fs::write(&path, write_entries(&entries_without(&p, &["bn1.num_batches_tracked"]))).unwrap();
    let strict = weights::load(&g, &path);
    let (lenient, report) = weights::load_with(&g, &path, LoadOptions::non_strict()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let loaded = strict.expect("strict loading accepts a missing num_batches_tracked");
    assert_eq!(report, LoadReport::default(), "the counter is never a missing key");
    assert_eq!(loaded, lenient);
    assert!(loaded.get("bn1.num_batches_tracked").is_none(), "nothing is invented");
    assert_eq!(loaded.len(), p.len() - 1);

    let x = randn(&[3, 1, 4, 4], &mut rng(31));
    let full = infer(&g, &p, &x).unwrap();
    assert_eq!(infer(&g, &loaded, &x).unwrap(), full, "inference never reads the counter");

    // Training counts from 0, as PyTorch when it fills in a missing counter.
    let mut trained = loaded.clone();
    forward(&g, &mut trained, &x, Mode::Train).unwrap();
    assert_eq!(trained.get("bn1.num_batches_tracked").unwrap().data(), &[1.0]);

    // Saving writes what is there: the file round-trips without a counter.
    let bytes = weights::to_bytes(&g, &loaded).unwrap();
    assert_eq!(weights::from_bytes(&g, &bytes, "again.safetensors").unwrap(), loaded);

    // A counter that is present must still have its shape.
    let mut bad = entries_without(&p, &["bn1.num_batches_tracked"]);
    bad.push(("bn1.num_batches_tracked".into(), vec![2], vec![0.0; 2]));
    let err = weights::from_bytes(&g, &write_entries(&bad), "c.safetensors").unwrap_err().to_string();
    assert!(
        err.contains("c.safetensors") && err.contains("`bn1.num_batches_tracked` has shape [2], expected []"),
        "{err}"
    );
}

#[test]
fn strict_loading_lists_every_missing_and_unexpected_tensor() {
    let g = bn_model();
    let p = bn_params(32);
    let mut e = entries_without(&p, &["bn1.running_var", "fc.bias"]);
    e.push(("head.weight".into(), vec![2, 2], vec![0.0; 4]));
    e.push(("optimizer.step".into(), vec![], vec![3.0]));
    let bytes = write_entries(&e);
    let err = weights::from_bytes(&g, &bytes, "partial.safetensors").unwrap_err().to_string();
    for part in [
        "partial.safetensors: tensors do not match model `bn`: ",
        "missing tensor `bn1.running_var` (expected shape [3])",
        "missing tensor `fc.bias` (expected shape [2])",
        "unexpected tensor `head.weight` of shape [2, 2]",
        "unexpected tensor `optimizer.step` of shape []",
        "LoadOptions::non_strict()",
    ] {
        assert!(err.contains(part), "`{part}` not in: {err}");
    }

    let (params, report) =
        weights::from_bytes_with(&g, &bytes, "partial.safetensors", LoadOptions::non_strict()).unwrap();
    assert_eq!(report.missing_keys, ["bn1.running_var", "fc.bias"]);
    assert_eq!(report.unexpected_keys, ["head.weight", "optimizer.step"]);
    assert!(!report.is_complete());
    assert!(
        params.get("head.weight").is_none()
            && params.get("fc.bias").is_none()
            && params.get("bn1.running_var").is_none()
    );
    assert_eq!(params.get("conv1.weight").unwrap(), p.get("conv1.weight").unwrap());

    // Missing parameters stay absent: inference refuses, naming each one, instead of computing with garbage.
    let err = infer(&g, &params, &randn(&[1, 1, 4, 4], &mut rng(33))).unwrap_err().to_string();
    assert!(err.contains("missing tensor `bn1.running_var`") && err.contains("missing tensor `fc.bias`"), "{err}");

    // Only unexpected tensors: non-strict loading gives a complete, usable model.
    let mut extra = entries_without(&p, &[]);
    extra.push(("head.weight".into(), vec![2, 2], vec![0.0; 4]));
    let (params, report) =
        weights::from_bytes_with(&g, &write_entries(&extra), "extra.safetensors", LoadOptions::non_strict()).unwrap();
    assert_eq!((report.missing_keys.len(), report.unexpected_keys.as_slice()), (0, &["head.weight".to_string()][..]));
    assert_eq!(params, p);
}

#[test]
fn shape_and_dtype_errors_name_file_tensor_expected_and_found_in_both_modes() {
    let g = bn_model();
    let p = bn_params(34);
    let mut misshaped = entries_without(&p, &[]);
    for e in misshaped.iter_mut().filter(|e| e.0 == "fc.weight" || e.0 == "bn1.bias") {
        e.1 = if e.0 == "fc.weight" { vec![12, 2] } else { vec![1, 3] };
    }
    for options in [LoadOptions::strict(), LoadOptions::non_strict()] {
        let err = weights::from_bytes_with(&g, &write_entries(&misshaped), "shape.safetensors", options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shape.safetensors")
                && err.contains("tensor `fc.weight` has shape [12, 2], expected [2, 12]")
                && err.contains("tensor `bn1.bias` has shape [1, 3], expected [3]")
                && !err.contains("missing"),
            "{options:?}: {err}"
        );
    }

    // A half-precision tensor among f32 ones, written as `safetensors.torch` would.
    let mut views_bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = entries_without(&p, &[])
        .into_iter()
        .map(|(n, s, d)| (n, Dtype::F32, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    for e in views_bytes.iter_mut().filter(|e| e.0 == "conv1.weight") {
        e.1 = Dtype::BF16;
        e.3 = vec![0u8; 2 * 27];
    }
    let views: Vec<(String, TensorView)> =
        views_bytes.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, &None).unwrap();
    for options in [LoadOptions::strict(), LoadOptions::non_strict()] {
        let err = weights::from_bytes_with(&g, &bytes, "bf16.safetensors", options).unwrap_err().to_string();
        assert!(
            err.contains("bf16.safetensors")
                && err.contains("tensor `conv1.weight` (shape [3, 1, 3, 3]) has dtype BF16, expected F32, F64 or I64")
                && !err.contains("missing"),
            "{options:?}: {err}"
        );
    }
}

#[test]
fn truncated_and_corrupt_files_are_explained_in_words() {
    let g = bn_model();
    let good = weights::to_bytes(&g, &bn_params(35)).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let data_len = good.len() - 8 - header_len;

    let err = load_error(&g, "tiny", &good[..5]);
    assert!(err.contains("is not a safetensors file: it holds 5 bytes"), "{err}");
    let err = load_error(&g, "empty", &[]);
    assert!(err.contains("holds 0 bytes"), "{err}");

    let err = load_error(&g, "text", b"these are not the weights you are looking for");
    assert!(err.contains("is not a safetensors file") && err.contains("declare a header of"), "{err}");

    let err = load_error(&g, "cut-header", &good[..8 + header_len / 2]);
    let expected = format!("is truncated (or not a safetensors file): its first 8 bytes declare a header of {header_len} bytes but only {} follow", header_len / 2);
    assert!(err.contains(&expected), "{err}");

    let err = load_error(&g, "cut-data", &good[..good.len() - 7]);
    let expected =
        format!("is truncated: its header declares {data_len} bytes of tensor data but only {} follow", data_len - 7);
    assert!(err.contains(&expected), "{err}");

    let mut longer = good.clone();
    longer.extend_from_slice(&[0, 0, 0]);
    let err = load_error(&g, "appended", &longer);
    assert!(err.contains(&format!("declares {data_len} bytes of tensor data but {} follow", data_len + 3)), "{err}");

    let mut not_text = good.clone();
    not_text[9] = 0xff;
    let err = load_error(&g, "not-utf8", &not_text);
    assert!(err.contains("is corrupt (or not a safetensors file): its header is not UTF-8 text"), "{err}");

    let mut not_json = good.clone();
    not_json[8] = b'[';
    let err = load_error(&g, "not-json", &not_json);
    assert!(err.contains("its header is not a valid safetensors JSON table (") && err.contains("line 1"), "{err}");

    let header = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
    let err = load_error(&g, "size", &raw_file(header, &[0; 12]));
    assert!(
        err.contains("tensor `w` (F32, shape [2, 2]) needs 16 bytes but its data offsets in the header span 12"),
        "{err}"
    );

    let header = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    let err = load_error(&g, "gap", &raw_file(header, &[0; 12]));
    assert!(err.contains("the data offsets of tensor `b` in the header overlap or leave a gap"), "{err}");

    let header = br#"{"huge":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#;
    let err = load_error(&g, "overflow", &raw_file(header, &[0; 4]));
    assert!(err.contains("the shape [4294967296, 4294967296] of tensor `huge` is too large to address"), "{err}");

    let err = weights::load(&g, temp_path("does-not-exist")).unwrap_err().to_string();
    assert!(err.contains("does-not-exist"), "{err}");
}
