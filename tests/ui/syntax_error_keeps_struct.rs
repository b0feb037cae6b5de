cryptgpu::secure_model! {
    /// A missing comma after conv1: one syntax error, and `LeNet` still exists.
    pub struct LeNet(input = [1, 28, 28]) {
        conv1: Conv2d(1 => 20, kernel = 5) Relu,
        Flatten,
        fc: Linear(11520 => 10),
    }
}

fn main() {
    let _ = LeNet::graph();
    let _: [usize; 3] = LeNet::INPUT;
}
