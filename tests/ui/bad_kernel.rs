cryptgpu::secure_model! {
    /// A zero-sized kernel.
    pub struct Net(input = [1, 28, 28]) {
        conv1: Conv2d(1 => 20, kernel = 0), Relu,
        Flatten,
        fc: Linear(15680 => 10),
    }
}

fn main() {
    let _ = Net::graph();
}
