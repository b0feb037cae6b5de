//! Safetensors I/O: round trip, a file written directly with the `safetensors` crate under PyTorch names, and
//! the errors for missing, extra, mis-shaped and mistyped tensors and corrupt files.

mod common;

use common::{randn, rng};
use cryptgpu_dsl::models::{self, Pooling};
use cryptgpu_dsl::reference::{forward, infer, Mode};
use cryptgpu_dsl::{weights, BatchNorm2d, Builder, Conv2d, Graph, Linear, Params, Tensor};
use safetensors::tensor::{Dtype, TensorView};

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cryptgpu-dsl-{tag}-{}.safetensors", std::process::id()))
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
