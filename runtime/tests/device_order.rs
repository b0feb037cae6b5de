//! A backend that queues launches ([`Backend::queues_launches`]: the CUDA backend, and the counting backend that
//! stands in for it here) makes the stage plans queue kernels before a round where they do not depend on it: the
//! exact truncation's R0 computes an announced ReLU's first message before sending round 1, holding it for round 2.
//! The reordering changes nothing anyone sees: with the same keys, every party's view (each message, in order) and
//! every result are bit for bit those of the host order.

use cryptgpu_runtime::backend::counting::CountingBackend;
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::backend::Backend;
use cryptgpu_runtime::party::ViewEntry;
use cryptgpu_runtime::protocols::SignBits;
use cryptgpu_runtime::{Config, Conv2dParams, RingTensor, Session};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

type Run = [(Vec<ViewEntry>, Vec<u64>, Vec<u64>); 3];

/// A fused conv → truncation → ReLU → matmul → truncation → ReLU on `backend`, keys from a fixed seed: each party's
/// view and the two revealed results.
fn run(backend: Arc<dyn Backend>) -> Run {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let t = 20;
    let mut fixed = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        RingTensor::new(shape, (0..n).map(|_| rng.gen_range(-(1i64 << (t + 2))..(1i64 << (t + 2))) as u64).collect())
            .unwrap()
    };
    let (x, w, b, m) = (fixed(&[2, 3, 6, 6]), fixed(&[4, 3, 3, 3]), fixed(&[4]), fixed(&[36, 5]));
    let session = Session::with_backend(Config { insecure_test_seed: Some(9), ..Config::default() }, backend).unwrap();
    let bits = SignBits::for_bound(40).unwrap();
    session
        .run(|p| {
            let view = p.record_view();
            let id = p.id();
            let own = |i: usize| id == i;
            let xs = p.share(0, own(0).then_some(&x), x.shape())?;
            let ws = p.share(1, own(1).then_some(&w), w.shape())?;
            let bs = p.share(1, own(1).then_some(&b), b.shape())?;
            let ms = p.share(2, own(2).then_some(&m), m.shape())?;
            p.expect_relu(bits, None)?;
            let z = p.conv2d(&xs, &ws, Some(&bs), Conv2dParams { stride: 1, padding: 1 })?;
            let (y, _) = p.relu_expected(&z, bits)?;
            let y = y.reshaped(&[8, 36]).expect("8 × 36");
            p.expect_relu(bits, None)?;
            let z2 = p.matmul(&y, &ms)?;
            let (y2, _) = p.relu_expected(&z2, bits)?;
            let (r1, r2) = (p.reveal(&y)?, p.reveal(&y2)?);
            p.stop_recording_view();
            let entries = view.lock().unwrap().clone();
            Ok((entries, r1.data().to_vec(), r2.data().to_vec()))
        })
        .unwrap()
}

#[test]
fn queued_plans_send_the_same_messages_and_compute_the_same_results() {
    let host = run(Arc::new(CpuBackend));
    let queued = run(Arc::new(CountingBackend::new()));
    assert!(CountingBackend::new().queues_launches() && !CpuBackend.queues_launches());
    for (id, (h, q)) in host.iter().zip(&queued).enumerate() {
        assert!(!h.0.is_empty(), "party {id} saw no message");
        assert_eq!(h.0.len(), q.0.len(), "party {id}: view entries");
        for (i, (a, b)) in h.0.iter().zip(&q.0).enumerate() {
            assert_eq!(a, b, "party {id}, view entry {i}");
        }
        assert_eq!((&h.1, &h.2), (&q.1, &q.2), "party {id}: results");
    }
}
