cryptgpu::secure_model! {
    /// fc1 expects 784 features but the flatten gives 50·4·4 = 800.
    pub struct LeNet(input = [1, 28, 28]) {
        conv1: Conv2d(1 => 20, kernel = 5), Relu, AvgPool(2),
        conv2: Conv2d(20 => 50, kernel = 5), Relu, AvgPool(2),
        Flatten,
        fc1: Linear(784 => 500), Relu,
        fc2: Linear(500 => 10),
    }
}

fn main() {
    let _ = LeNet::graph();
}
