//! Shape inference of the shipped models, their PyTorch parameter names and counts, and the builder's errors.

use cryptgpu_dsl::models::{self, Pooling, Stem};
use cryptgpu_dsl::{Builder, Conv2d, Layer, Linear, ParamKind, Pool2d};

#[test]
fn lenet_shapes_names_and_count() {
    for pooling in [Pooling::Avg, Pooling::Max] {
        let g = models::lenet(pooling).unwrap();
        assert_eq!(g.output_shape(), &[10]);
        assert_eq!(g.num_trainable(), 431_080);
        let names: Vec<_> = g.parameters().into_iter().map(|p| (p.name, p.shape)).collect();
        assert_eq!(names[0], ("features.0.weight".to_string(), vec![20, 1, 5, 5]));
        assert_eq!(names[2], ("features.3.weight".to_string(), vec![50, 20, 5, 5]));
        assert_eq!(names[4], ("classifier.1.weight".to_string(), vec![500, 800]));
        assert_eq!(names[7], ("classifier.3.bias".to_string(), vec![10]));
        let flatten = g.layers().iter().find(|l| l.layer == Layer::Flatten).unwrap();
        assert_eq!((flatten.input.clone(), flatten.output.clone()), (vec![50, 4, 4], vec![800]));
    }
}

#[test]
fn cifar_models_give_ten_logits() {
    let alex = models::alexnet_cifar10(Pooling::Avg).unwrap();
    assert_eq!(alex.output_shape(), &[10]);
    // 34 944 + 614 656 + 885 120 + 1 327 488 + 884 992 (convs) + 2·65 792 + 2 570 (fcs).
    assert_eq!(alex.num_trainable(), 3_881_354);
    let vgg = models::vgg16_cifar10(Pooling::Max).unwrap();
    assert_eq!(vgg.output_shape(), &[10]);
    assert_eq!(vgg.parameters()[0].name, "vgg.features.0.weight");
    assert!(vgg.parameters().iter().any(|p| p.name == "vgg.features.28.weight"));
    assert_eq!(vgg.layers().iter().filter(|l| matches!(l.layer, Layer::Conv2d(_))).count(), 13);
}

#[test]
fn resnets_give_thousand_logits_with_torchvision_counts() {
    let expected = [
        (models::resnet18 as fn(Stem) -> _, 11_689_512usize),
        (models::resnet50, 25_557_032),
        (models::resnet101, 44_549_160),
        (models::resnet152, 60_192_808),
    ];
    for (build, count) in expected {
        for stem in [Stem::MaxPool, Stem::AvgPool] {
            let g = build(stem).unwrap();
            assert_eq!(g.output_shape(), &[1000], "{}", g.name());
            assert_eq!(g.num_trainable(), count, "{}", g.name());
        }
    }
    let r50 = models::resnet50(Stem::AvgPool).unwrap();
    let pool = r50.layers().iter().find(|l| l.name == "maxpool").unwrap();
    assert!(matches!(pool.layer, Layer::AvgPool2d(_)));
    assert_eq!(pool.output, vec![64, 56, 56]);
    let names: Vec<_> = r50.parameters().into_iter().map(|p| (p.name, p.shape, p.kind)).collect();
    let has = |n: &str, s: &[usize]| names.iter().any(|(name, shape, _)| name == n && shape == s);
    assert!(has("conv1.weight", &[64, 3, 7, 7]));
    assert!(has("layer1.0.conv1.weight", &[64, 64, 1, 1]));
    assert!(has("layer1.0.downsample.0.weight", &[256, 64, 1, 1]));
    assert!(has("layer1.0.downsample.1.running_var", &[256]));
    assert!(has("layer4.2.bn3.num_batches_tracked", &[]));
    assert!(has("fc.weight", &[1000, 2048]));
    assert!(!names.iter().any(|(n, _, _)| n.starts_with("layer1.1.downsample")));
    let buffers = names.iter().filter(|(_, _, k)| *k != ParamKind::Trainable).count();
    assert_eq!(buffers, 53 * 3, "running_mean, running_var and num_batches_tracked of 53 batch norms");
}

#[test]
fn channel_mismatch_names_layer_and_both_shapes() {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(1, 20, 5)).relu().layer("conv2", Conv2d::new(10, 50, 5));
    let err = b.build("bad", &[1, 28, 28]).unwrap_err().to_string();
    assert!(err.contains("`conv2`") && err.contains("[10, H, W]") && err.contains("[20, 24, 24]"), "{err}");
}

#[test]
fn flatten_size_mismatch_names_layer_and_both_shapes() {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(1, 20, 5)).push(Layer::AvgPool2d(Pool2d::new(2))).flatten();
    b.layer("fc1", Linear::new(800, 10));
    let err = b.build("bad", &[1, 28, 28]).unwrap_err().to_string();
    assert!(err.contains("`fc1`") && err.contains("[800]") && err.contains("[2880]"), "{err}");
    // Linear without flatten names the layer too.
    let mut b = Builder::new();
    b.layer("fc", Linear::new(784, 10));
    let err = b.build("noflat", &[1, 28, 28]).unwrap_err().to_string();
    assert!(err.contains("`fc`") && err.contains("[1, 28, 28]"), "{err}");
}

#[test]
fn bad_kernel_residual_and_name_errors() {
    let mut b = Builder::new();
    b.layer("big", Conv2d::new(1, 2, 9));
    let err = b.build("k", &[1, 4, 4]).unwrap_err().to_string();
    assert!(err.contains("`big`") && err.contains("kernel 9"), "{err}");

    let mut b = Builder::new();
    b.residual(
        "block",
        |m| {
            m.layer("conv", Conv2d::new(4, 8, 3).padding(1));
        },
        |_| {},
        |_| {},
    );
    let err = b.build("r", &[4, 6, 6]).unwrap_err().to_string();
    assert!(err.contains("`block`") && err.contains("[8, 6, 6]") && err.contains("[4, 6, 6]"), "{err}");

    let mut b = Builder::new();
    b.layer("fc", Layer::Flatten).layer("fc", Layer::Relu);
    assert!(b.build("dup", &[3]).unwrap_err().to_string().contains("duplicate layer name `fc`"));

    let mut b = Builder::new();
    b.layer("a.b", Layer::Relu);
    assert!(b.build("dot", &[3]).unwrap_err().to_string().contains("`a.b`"));
}

#[test]
fn nested_names_follow_pytorch() {
    let mut b = Builder::new();
    b.sequential("layer1", |s| {
        s.residual(
            "0",
            |m| {
                m.layer("conv1", Conv2d::new(2, 4, 1).stride(2).bias(false)).relu();
            },
            |sc| {
                sc.sequential("downsample", |d| {
                    d.push(Conv2d::new(2, 4, 1).stride(2));
                });
            },
            |p| {
                p.relu();
            },
        );
    });
    let g = b.build("n", &[2, 4, 4]).unwrap();
    let names: Vec<_> = g.layers().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["layer1.0.conv1", "layer1.0.1", "layer1.0.downsample.0", "layer1.0.post.0"]);
    assert_eq!(g.output_shape(), &[4, 2, 2]);
    assert!(g.summary().contains("layer1.0.downsample.0"));
}

#[test]
fn kaiming_init_has_fan_in_std_and_pytorch_buffers() {
    use rand::SeedableRng;
    let g = models::lenet(Pooling::Avg).unwrap();
    let p = cryptgpu_dsl::Params::kaiming(&g, &mut rand::rngs::StdRng::seed_from_u64(31));
    p.check(&g, "kaiming").unwrap();
    let w = p.get("classifier.1.weight").unwrap();
    let var = w.data().iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    let expected = 2.0 / 800.0;
    assert!((var / expected - 1.0).abs() < 0.02, "variance {var}, expected {expected}");
    assert!(p.get("classifier.1.bias").unwrap().data().iter().all(|&v| v == 0.0));

    let mut b = Builder::new();
    b.layer("bn", cryptgpu_dsl::BatchNorm2d::new(3));
    let g = b.build("bn", &[3, 2, 2]).unwrap();
    let p = cryptgpu_dsl::Params::kaiming(&g, &mut rand::rngs::StdRng::seed_from_u64(32));
    assert_eq!(p.get("bn.weight").unwrap().data(), &[1.0; 3]);
    assert_eq!(p.get("bn.bias").unwrap().data(), &[0.0; 3]);
    assert_eq!(p.get("bn.running_mean").unwrap().data(), &[0.0; 3]);
    assert_eq!(p.get("bn.running_var").unwrap().data(), &[1.0; 3]);
    assert_eq!(p.get("bn.num_batches_tracked").unwrap().shape(), &[] as &[usize]);
}
