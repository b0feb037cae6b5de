cryptgpu::secure_model! {
    /// The block forgets its projection, so the residual branches disagree in one instance.
    block Basic(cin, cout, stride) {
        residual {
            conv1: Conv2d(cin => cout, kernel = 3, stride = stride, padding = 1, bias = false),
            bn1: BatchNorm2d(cout),
        } then {
            relu: Relu,
        }
    }

    pub struct Net(input = [16, 8, 8]) {
        layer1: { Basic(16, 16, 1) * 2, Basic(16, 32, 2) },
    }
}

fn main() {
    let _ = Net::graph();
}
