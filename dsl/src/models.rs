//! The shipped models: LeNet (MNIST), AlexNet and VGG-16 (CIFAR-10 variants) and ResNet-18/50/101/152
//! (ImageNet 224×224), each built through the run-time [`Builder`] with the exact module names of its PyTorch
//! source so a state_dict trained there loads unchanged.
//!
//! Sources of the layer lists:
//! - LeNet, AlexNet, VGG-16: `scripts/network.py` of the CryptGPU release (github.com/jeffreysijuntan/CryptGPU),
//!   the networks of its benchmarks (CryptGPU in turn follows Falcon's CIFAR-10 AlexNet/VGG-16). CryptGPU uses
//!   average pooling throughout; [`Pooling::Max`] swaps in max pooling with the same windows.
//! - ResNet: torchvision's `resnet18/50/101/152` (v1.5: the stride of a bottleneck sits on its 3×3 conv). The
//!   CryptGPU paper replaces the stem's 3×3/2 max pool by an average pool; [`Stem::AvgPool`] does that with the
//!   same window (kernel 3, stride 2, padding 1, padding counted) under the same module name `maxpool`.

use crate::error::Result;
use crate::graph::{Builder, Graph};
use crate::layer::{BatchNorm2d, Conv2d, Layer, Linear, Pool2d};

/// Which pooling a CryptGPU benchmark network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average pooling (CryptGPU's choice).
    Avg,
    /// Max pooling with the same windows.
    Max,
}

impl Pooling {
    fn layer(self, pool: Pool2d) -> Layer {
        match self {
            Pooling::Avg => Layer::AvgPool2d(pool),
            Pooling::Max => Layer::MaxPool2d(pool),
        }
    }
}

/// The stem pooling of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stem {
    /// torchvision's original `MaxPool2d(3, stride 2, padding 1)`.
    MaxPool,
    /// The CryptGPU paper's `AvgPool2d(3, stride 2, padding 1)`.
    AvgPool,
}

/// LeNet for MNIST `[1, 28, 28]` → 10 logits: conv 1→20 k5, ReLU, pool 2, conv 20→50 k5, ReLU, pool 2, flatten,
/// fc 800→500, ReLU, fc 500→10 (names `features.0`, `features.3`, `classifier.1`, `classifier.3`).
pub fn lenet(pooling: Pooling) -> Result<Graph> {
    let mut b = Builder::new();
    b.sequential("features", |f| {
        f.push(Conv2d::new(1, 20, 5)).relu().push(pooling.layer(Pool2d::new(2)));
        f.push(Conv2d::new(20, 50, 5)).relu().push(pooling.layer(Pool2d::new(2)));
    });
    b.sequential("classifier", |c| {
        c.flatten().push(Linear::new(800, 500)).relu().push(Linear::new(500, 10));
    });
    b.build("LeNet", &[1, 28, 28])
}

/// CryptGPU's AlexNet for CIFAR-10 `[3, 32, 32]` → 10 logits: conv 3→96 k11/4 p9, pool 3/2, conv 96→256 k5 p1,
/// pool 2/1, three 3×3 convs (384, 384, 256), then fc 256→256→256→10 (`features.*`, `fc_layers.*`).
pub fn alexnet_cifar10(pooling: Pooling) -> Result<Graph> {
    let mut b = Builder::new();
    b.sequential("features", |f| {
        f.push(Conv2d::new(3, 96, 11).stride(4).padding(9)).relu().push(pooling.layer(Pool2d::new(3).stride(2)));
        f.push(Conv2d::new(96, 256, 5).padding(1)).relu().push(pooling.layer(Pool2d::new(2).stride(1)));
        f.push(Conv2d::new(256, 384, 3).padding(1)).relu();
        f.push(Conv2d::new(384, 384, 3).padding(1)).relu();
        f.push(Conv2d::new(384, 256, 3).padding(1)).relu();
    });
    b.sequential("fc_layers", |c| {
        c.flatten().push(Linear::new(256, 256)).relu().push(Linear::new(256, 256)).relu().push(Linear::new(256, 10));
    });
    b.build("AlexNet-CIFAR10", &[3, 32, 32])
}

/// CryptGPU's VGG-16 for CIFAR-10 `[3, 32, 32]` → 10 logits: torchvision's 13-conv `features` (under `vgg.`)
/// with 2×2 pools, then fc 512→256→256→10 (`classifier.*`). torchvision's unused `vgg.classifier` is not part of
/// this model.
pub fn vgg16_cifar10(pooling: Pooling) -> Result<Graph> {
    const CFG: [usize; 18] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];
    let mut b = Builder::new();
    b.sequential("vgg", |v| {
        v.sequential("features", |f| {
            let mut c = 3;
            for &width in &CFG {
                if width == 0 {
                    f.push(pooling.layer(Pool2d::new(2)));
                } else {
                    f.push(Conv2d::new(c, width, 3).padding(1)).relu();
                    c = width;
                }
            }
        });
    });
    b.sequential("classifier", |c| {
        c.flatten().push(Linear::new(512, 256)).relu().push(Linear::new(256, 256)).relu().push(Linear::new(256, 10));
    });
    b.build("VGG16-CIFAR10", &[3, 32, 32])
}

/// Residual block kind of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

fn bn(c: usize) -> BatchNorm2d {
    BatchNorm2d::new(c)
}

/// One torchvision residual block named `name` (its index in the stage).
fn block(b: &mut Builder, name: &str, kind: Block, inplanes: usize, planes: usize, stride: usize) {
    let out = planes * kind.expansion();
    let project = stride != 1 || inplanes != out;
    b.residual(
        name,
        |m| match kind {
            Block::Basic => {
                m.layer("conv1", Conv2d::new(inplanes, planes, 3).stride(stride).padding(1).bias(false));
                m.layer("bn1", bn(planes)).layer("relu1", Layer::Relu);
                m.layer("conv2", Conv2d::new(planes, planes, 3).padding(1).bias(false)).layer("bn2", bn(planes));
            }
            Block::Bottleneck => {
                m.layer("conv1", Conv2d::new(inplanes, planes, 1).bias(false));
                m.layer("bn1", bn(planes)).layer("relu1", Layer::Relu);
                m.layer("conv2", Conv2d::new(planes, planes, 3).stride(stride).padding(1).bias(false));
                m.layer("bn2", bn(planes)).layer("relu2", Layer::Relu);
                m.layer("conv3", Conv2d::new(planes, out, 1).bias(false)).layer("bn3", bn(out));
            }
        },
        |s| {
            if project {
                s.sequential("downsample", |d| {
                    d.push(Conv2d::new(inplanes, out, 1).stride(stride).bias(false)).push(bn(out));
                });
            }
        },
        |p| {
            p.layer("relu", Layer::Relu);
        },
    );
}

fn resnet(name: &str, kind: Block, blocks: [usize; 4], stem: Stem) -> Result<Graph> {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(3, 64, 7).stride(2).padding(3).bias(false));
    b.layer("bn1", bn(64)).layer("relu", Layer::Relu);
    let pool = Pool2d::new(3).stride(2).padding(1);
    b.layer("maxpool", if stem == Stem::MaxPool { Layer::MaxPool2d(pool) } else { Layer::AvgPool2d(pool) });
    let mut inplanes = 64;
    for (stage, &count) in blocks.iter().enumerate() {
        let planes = 64 << stage;
        let stride = if stage == 0 { 1 } else { 2 };
        b.sequential(&format!("layer{}", stage + 1), |s| {
            for i in 0..count {
                block(s, &i.to_string(), kind, inplanes, planes, if i == 0 { stride } else { 1 });
                inplanes = planes * kind.expansion();
            }
        });
    }
    b.layer("avgpool", Layer::GlobalAvgPool).layer("flatten", Layer::Flatten);
    b.layer("fc", Linear::new(512 * kind.expansion(), 1000));
    b.build(name, &[3, 224, 224])
}

/// ResNet-18 for ImageNet `[3, 224, 224]` → 1000 logits (basic blocks 2-2-2-2).
pub fn resnet18(stem: Stem) -> Result<Graph> {
    resnet("ResNet-18", Block::Basic, [2, 2, 2, 2], stem)
}

/// ResNet-50 for ImageNet `[3, 224, 224]` → 1000 logits (bottlenecks 3-4-6-3).
pub fn resnet50(stem: Stem) -> Result<Graph> {
    resnet("ResNet-50", Block::Bottleneck, [3, 4, 6, 3], stem)
}

/// ResNet-101 for ImageNet `[3, 224, 224]` → 1000 logits (bottlenecks 3-4-23-3).
pub fn resnet101(stem: Stem) -> Result<Graph> {
    resnet("ResNet-101", Block::Bottleneck, [3, 4, 23, 3], stem)
}

/// ResNet-152 for ImageNet `[3, 224, 224]` → 1000 logits (bottlenecks 3-8-36-3).
pub fn resnet152(stem: Stem) -> Result<Graph> {
    resnet("ResNet-152", Block::Bottleneck, [3, 8, 36, 3], stem)
}
