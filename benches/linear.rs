//! Criterion benchmarks of the linear layer's kernels and protocols (DESIGN §8 targets):
//! ring GEMM vs f32 GEMM at 256³/512³/1024³, and the secure 1024³ matmul.
//!
//! `cargo bench --bench linear`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cryptgpu::runtime::backend::cpu::gemm::ring_gemm;
use cryptgpu::{workloads, Config, Session};
use std::time::Duration;

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in [256usize, 512, 1024] {
        let a: Vec<u64> = (0..n * n).map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let b: Vec<u64> = (0..n * n).map(|i| (i as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).collect();
        let mut out = vec![0u64; n * n];
        g.bench_with_input(BenchmarkId::new("ring_u64", n), &n, |bch, &n| {
            bch.iter(|| ring_gemm(n, n, n, &a, &b, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("f32", n), &n, |bch, &n| bch.iter(|| workloads::time_f32_gemm(n, n, n)));
    }
    g.finish();
}

fn secure_matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("secure_matmul");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let session = Session::new(Config::default()).expect("session");
    let mut rng = rand::thread_rng();
    g.bench_function("1024", |b| {
        b.iter_custom(|iters| {
            (0..iters).map(|_| workloads::matmul(&session, 1024, 1024, 1024, &mut rng).expect("matmul").secure).sum()
        })
    });
    g.finish();
}

criterion_group!(benches, gemm, secure_matmul);
criterion_main!(benches);
