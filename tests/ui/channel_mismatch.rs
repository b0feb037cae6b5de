cryptgpu::secure_model! {
    /// conv2 expects 30 channels but conv1 gives 20.
    pub struct LeNet(input = [1, 28, 28]) {
        conv1: Conv2d(1 => 20, kernel = 5), Relu, AvgPool(2),
        conv2: Conv2d(30 => 50, kernel = 5), Relu, AvgPool(2),
        Flatten,
        fc1: Linear(800 => 500), Relu,
        fc2: Linear(500 => 10),
    }
}

fn main() {
    let _ = LeNet::graph();
    let _ = LeNet::INPUT;
}
