cryptgpu::secure_model! {
    /// `strid` is a typo for `stride`.
    pub struct Net(input = [3, 8, 8]) {
        conv1: Conv2d(3 => 8, kernel = 3, strid = 2),
    }
}

fn main() {
    let _ = Net::graph();
}
