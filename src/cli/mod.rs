//! The `cryptgpu` subcommands: the clap `Command` enum, the value enums several commands share, and one module per
//! command (or close group of commands) holding its arguments and its handler.

pub mod accuracy;
pub mod bench;
pub mod bench_gpu;
pub mod deployment;
pub mod infer;
pub mod kernels;
pub mod matmul;
pub mod paper;
pub mod train;

use clap::Subcommand;

/// What a command handler returns: `main` prints the error and exits with a failure.
pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Subcommand)]
pub enum Command {
    /// Private n×n×n matrix product among three in-process parties, checked against the plaintext product.
    Matmul(matmul::MatmulArgs),
    /// Print every kernel of a model's whole private inference (or one training step, `--train`), with the GPU cost
    /// model's prediction for each; random weights and inputs (the kernels do not depend on them).
    Kernels(kernels::KernelsArgs),
    /// Private inference of a shipped model on inputs from a file (`.npy`, safetensors), a dataset directory (LeNet:
    /// MNIST, Fashion-MNIST) or random inputs, compared with the model owner's plaintext reference.
    Infer(infer::InferArgs),
    /// Private training of LeNet on MNIST or Fashion-MNIST beside plaintext training from the same initialisation and batches.
    Train(train::TrainArgs),
    /// Private vs plaintext inference error for random weights and inputs (the paper's accuracy experiment).
    Accuracy(accuracy::AccuracyArgs),
    /// Range analysis: per layer the largest ring value of the private inference, the largest safe fractional
    /// precision t, and the predicted failure probability per inference in either truncation mode.
    Precision(accuracy::PrecisionArgs),
    /// Run one party of a three-process deployment (mutual TLS) from a config file; see `src/deployment/mod.rs`.
    Party(deployment::PartyArgs),
    /// Make party N's TLS key pair and self-signed certificate: writes DIR/party-N.crt (give it to the two peers,
    /// who pin it) and DIR/party-N.key (keep it; mode 0600).
    Keygen(deployment::KeygenArgs),
    /// Three processes over mutual TLS vs three parties in this process (LeNet inference at batch 1 and 64, one
    /// LeNet training step), interleaved in one run; with --spu-python, also SecretFlow SPU's three-process mode.
    BenchDeployment(bench::BenchDeploymentArgs),
    /// Ours vs SecretFlow SPU (bench_spu.py of ../shared/peers) on matmul 1024³, ReLU over 2^20, LeNet inference
    /// (batch 1 and 64), MLP inference and an MLP training step, interleaved in one run: both times, the ratios and
    /// issue 12's goals.
    BenchSpu(bench::BenchSpuArgs),
    /// Reproduce the CryptGPU paper's experiments on this machine (Table 4 with the anchors' communication, Table VI,
    /// Fig. 3, Fig. 4 / Table VII, Table VIII, per-layer cost): CSV and JSON per table, SVG plots, Markdown.
    Paper(paper::PaperArgs),
    /// Benchmark tables of the linear layers: ring GEMM vs f32, secure matmul vs local GEMM, secure conv vs plaintext.
    Bench(bench::BenchArgs),
    /// LeNet, AlexNet and VGG-16 private inference and training step on the CUDA backend (shares kept on the GPU),
    /// each beside the GPU cost model's prediction; needs an NVIDIA GPU (`scripts/gpu-check.sh` runs it).
    BenchGpu(bench_gpu::BenchGpuArgs),
}

/// Datasets `cryptgpu train` knows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DatasetArg {
    /// MNIST handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
}

impl DatasetArg {
    /// The library's name for this dataset.
    pub fn source(self) -> cryptgpu::data::Source {
        match self {
            DatasetArg::Mnist => cryptgpu::data::Source::Mnist,
            DatasetArg::FashionMnist => cryptgpu::data::Source::FashionMnist,
        }
    }
}

/// Backends a session can run its kernels on.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BackendKind {
    /// The CPU backend (everywhere).
    Cpu,
    /// The CUDA backend (needs an NVIDIA driver and NVRTC; a clear error otherwise): GPU 0, or `--devices`.
    Cuda,
}

/// LeNet's pooling.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PoolingArg {
    /// Average pooling (CryptGPU's LeNet).
    Avg,
    /// Max pooling.
    Max,
}

/// The overflow checks `cryptgpu infer` offers.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RangeCheckArg {
    /// Worst-case interval analysis from the input bound: a guarantee.
    Interval,
    /// The largest magnitudes over 2 random inputs within the bound, times 4: not a guarantee.
    Calibrated,
    /// No check.
    Off,
}

impl RangeCheckArg {
    /// The executor's range check this option names.
    pub fn check(self) -> cryptgpu::runtime::executor::RangeCheck {
        use cryptgpu::runtime::executor::RangeCheck;
        match self {
            RangeCheckArg::Interval => RangeCheck::Interval,
            RangeCheckArg::Calibrated => RangeCheck::Calibrated { samples: 2, margin: 4.0 },
            RangeCheckArg::Off => RangeCheck::Off,
        }
    }
}

/// Models of the accuracy experiment.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AccModel {
    /// LeNet (MNIST shape, average pooling).
    Lenet,
    /// AlexNet, CIFAR-10 variant (average pooling).
    Alexnet,
    /// VGG-16, CIFAR-10 variant (average pooling).
    Vgg16,
    /// ResNet-50, ImageNet 224×224, the paper's average-pool stem.
    Resnet50,
}
