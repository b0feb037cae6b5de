cryptgpu::secure_model! {
    /// Linear needs `in => out`.
    pub struct Net(input = [10]) {
        fc: Linear(10),
    }
}

fn main() {
    let _ = Net::graph();
}
