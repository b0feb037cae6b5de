cryptgpu::secure_model! {
    /// `Conv2D` is not a layer (it is spelled `Conv2d`).
    pub struct LeNet(input = [1, 28, 28]) {
        conv1: Conv2D(1 => 20, kernel = 5), Relu, AvgPool(2),
        Flatten,
        fc: Linear(2880 => 10),
    }
}

fn main() {
    let _ = LeNet::graph();
}
