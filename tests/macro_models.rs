//! `secure_model!` builds the same graphs (names, shapes, parameters) as the dsl's hand-written models.

use cryptgpu::dsl::models::{self, Pooling, Stem};
use cryptgpu::dsl::{Graph, Layer};

cryptgpu::secure_model! {
    /// LeNet for MNIST, with the module names of the CryptGPU release (`features.*`, `classifier.*`).
    pub struct LeNet(input = [1, 28, 28]) {
        features: {
            Conv2d(1 => 20, kernel = 5), Relu, AvgPool(2),
            Conv2d(20 => 50, kernel = 5), Relu, AvgPool(2),
        },
        classifier: { Flatten, Linear(800 => 500), Relu, Linear(500 => 10) },
    }

    /// The DESIGN §1 LeNet, with flat names.
    pub struct FlatLeNet(input = [1, 28, 28]) {
        conv1: Conv2d(1 => 20, kernel = 5), Relu, AvgPool(2),
        conv2: Conv2d(20 => 50, kernel = 5), Relu, AvgPool(2),
        Flatten,
        fc1: Linear(800 => 500), Relu,
        fc2: Linear(500 => 10),
    }

    /// torchvision's basic block.
    block Basic(cin, cout, stride) {
        residual {
            conv1: Conv2d(cin => cout, kernel = 3, stride = stride, padding = 1, bias = false),
            bn1: BatchNorm2d(cout), relu1: Relu,
            conv2: Conv2d(cout => cout, kernel = 3, padding = 1, bias = false), bn2: BatchNorm2d(cout),
        } shortcut if stride != 1 || cin != cout {
            downsample: { Conv2d(cin => cout, kernel = 1, stride = stride, bias = false), BatchNorm2d(cout) },
        } then {
            relu: Relu,
        }
    }

    /// torchvision's (v1.5) bottleneck block.
    block Bottleneck(cin, mid, cout, stride) {
        residual {
            conv1: Conv2d(cin => mid, kernel = 1, bias = false), bn1: BatchNorm2d(mid), relu1: Relu,
            conv2: Conv2d(mid => mid, kernel = 3, stride = stride, padding = 1, bias = false),
            bn2: BatchNorm2d(mid), relu2: Relu,
            conv3: Conv2d(mid => cout, kernel = 1, bias = false), bn3: BatchNorm2d(cout),
        } shortcut if stride != 1 || cin != cout {
            downsample: { Conv2d(cin => cout, kernel = 1, stride = stride, bias = false), BatchNorm2d(cout) },
        } then {
            relu: Relu,
        }
    }

    /// The ImageNet stem shared by every ResNet.
    block Stem() {
        conv1: Conv2d(3 => 64, kernel = 7, stride = 2, padding = 3, bias = false), bn1: BatchNorm2d(64), relu: Relu,
    }

    /// ResNet-18 (torchvision, max-pool stem).
    pub struct ResNet18(input = [3, 224, 224]) {
        conv1: Conv2d(3 => 64, kernel = 7, stride = 2, padding = 3, bias = false), bn1: BatchNorm2d(64),
        relu: Relu, maxpool: MaxPool(3, stride = 2, padding = 1),
        layer1: { Basic(64, 64, 1) * 2 },
        layer2: { Basic(64, 128, 2), Basic(128, 128, 1) },
        layer3: { Basic(128, 256, 2), Basic(256, 256, 1) },
        layer4: { Basic(256, 512, 2), Basic(512, 512, 1) },
        avgpool: GlobalAvgPool, flatten: Flatten, fc: Linear(512 => 1000),
    }

    /// ResNet-152 (torchvision, the CryptGPU paper's average-pool stem).
    pub struct ResNet152(input = [3, 224, 224]) {
        conv1: Conv2d(3 => 64, kernel = 7, stride = 2, padding = 3, bias = false), bn1: BatchNorm2d(64),
        relu: Relu, maxpool: AvgPool(3, stride = 2, padding = 1),
        layer1: { Bottleneck(64, 64, 256, 1), Bottleneck(256, 64, 256, 1) * 2 },
        layer2: { Bottleneck(256, 128, 512, 2), Bottleneck(512, 128, 512, 1) * 7 },
        layer3: { Bottleneck(512, 256, 1024, 2), Bottleneck(1024, 256, 1024, 1) * 35 },
        layer4: { Bottleneck(1024, 512, 2048, 2), Bottleneck(2048, 512, 2048, 1) * 2 },
        avgpool: GlobalAvgPool, flatten: Flatten, fc: Linear(2048 => 1000),
    }

    /// Every other layer kind and argument form.
    struct Small(input = [3, 16, 16]) {
        stem: Stem(),
        pool: MaxPool((2, 2), stride = 2),
        head: {
            Conv2d(64 => 8, kernel = (3, 1), padding = (1, 0), bias = false),
            BatchNorm2d(8, eps = 1e-3, momentum = 0.01),
            Dropout(0.5), GlobalAvgPool, Flatten, Linear(8 => 2 * 5, bias = false),
        },
    }
}

fn assert_same(ours: &Graph, theirs: &Graph) {
    assert_eq!(ours.input_shape(), theirs.input_shape());
    assert_eq!(ours.output_shape(), theirs.output_shape());
    assert_eq!(ours.layers(), theirs.layers());
    assert_eq!(ours.parameters(), theirs.parameters());
    assert_eq!(ours.nodes(), theirs.nodes());
}

#[test]
fn lenet_equals_the_dsl_lenet() {
    let dsl = models::lenet(Pooling::Avg).unwrap();
    assert_eq!(LeNet::graph(), dsl, "the whole graph, name included");
    assert_eq!(LeNet::INPUT, [1, 28, 28]);
    assert_eq!(LeNet::OUTPUT, &[10]);
}

#[test]
fn flat_lenet_has_flat_pytorch_names() {
    let g = FlatLeNet::graph();
    let names: Vec<_> = g.parameters().into_iter().map(|p| (p.name, p.shape)).collect();
    let expected = [
        ("conv1.weight", vec![20, 1, 5, 5]),
        ("conv1.bias", vec![20]),
        ("conv2.weight", vec![50, 20, 5, 5]),
        ("conv2.bias", vec![50]),
        ("fc1.weight", vec![500, 800]),
        ("fc1.bias", vec![500]),
        ("fc2.weight", vec![10, 500]),
        ("fc2.bias", vec![10]),
    ];
    assert_eq!(names, expected.map(|(n, s)| (n.to_string(), s)));
    let layer_names: Vec<_> = g.layers().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(layer_names, ["conv1", "1", "2", "conv2", "4", "5", "6", "fc1", "8", "fc2"]);
    assert_eq!(g.name(), "FlatLeNet");
}

#[test]
fn resnet18_equals_the_dsl_resnet18() {
    assert_same(&ResNet18::graph(), &models::resnet18(Stem::MaxPool).unwrap());
    assert_eq!(ResNet18::OUTPUT, &[1000]);
}

#[test]
fn resnet152_equals_the_dsl_resnet152() {
    assert_same(&ResNet152::graph(), &models::resnet152(Stem::AvgPool).unwrap());
}

#[test]
fn every_argument_form_reaches_the_graph() {
    let g = Small::graph();
    assert_eq!(Small::OUTPUT, &[10]);
    let names: Vec<_> = g.layers().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["stem.conv1", "stem.bn1", "stem.relu", "pool", "head.0", "head.1", "head.2", "head.3", "head.4", "head.5"]
    );
    match &g.layers()[4].layer {
        Layer::Conv2d(c) => {
            assert_eq!((c.kernel, c.padding, c.stride, c.bias), ((3, 1), (1, 0), (1, 1), false));
        }
        other => panic!("expected a conv, found {other:?}"),
    }
    match &g.layers()[5].layer {
        Layer::BatchNorm2d(b) => assert_eq!((b.channels, b.eps, b.momentum), (8, 1e-3, 0.01)),
        other => panic!("expected a batch norm, found {other:?}"),
    }
    assert_eq!(g.layers()[6].layer, Layer::Dropout { p: 0.5 });
    assert_eq!(g.layers()[3].output, vec![64, 4, 4]);
}
