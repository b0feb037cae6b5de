//! The device-resident shares, checked on any machine:
//!
//! - **Traffic.** Host↔device copies under the CUDA backend's rules, counted on the CPU ([`CountingBackend`]): a
//!   private LeNet inference (batch 1 and 64) and a training step move between each party's host and its device
//!   exactly the messages it sends and receives, its own inputs (the model owner's weights, the data owner's batch)
//!   and the results it is given — nothing else. Weights stay on the device from one inference to the next.
//! - **Order.** A backend that queues launches ([`Backend::queues_launches`]: the CUDA backend, and the counting
//!   backend that stands in for it here) makes the stage plans queue kernels before a round where they do not depend
//!   on it: the exact truncation's R0 computes an announced ReLU's first message before sending round 1, holding it
//!   for round 2. The reordering changes nothing anyone sees: with the same keys, every party's view (each message, in
//!   order) and every result are bit for bit those of the host order.

use cryptgpu_dsl::{models, Graph, Params, Tensor as DslTensor};
use cryptgpu_runtime::backend::counting::{CountingBackend, TrafficCounts};
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::backend::observed::{KernelRef, Launch, Observed, Observer};
use cryptgpu_runtime::backend::Backend;
use cryptgpu_runtime::executor::{Executor, RangeCheck, Roles};
use cryptgpu_runtime::party::ViewEntry;
use cryptgpu_runtime::protocols::SignBits;
use cryptgpu_runtime::training::{TrainConfig, Trainer};
use cryptgpu_runtime::Stats;
use cryptgpu_runtime::{Config, Conv2dParams, RingTensor, Session};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn lenet() -> Graph {
    models::lenet(models::Pooling::Avg).unwrap()
}

fn params(graph: &Graph) -> Params {
    Params::kaiming(graph, &mut rand::rngs::StdRng::seed_from_u64(1))
}

fn batch(n: usize, seed: u64) -> DslTensor {
    DslTensor::uniform(&[n, 1, 28, 28], -1.0, 1.0, &mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// Words of every parameter tensor.
fn param_words(p: &Params) -> u64 {
    p.iter().map(|(_, t)| t.shape().iter().product::<usize>() as u64).sum()
}

/// Party `id`'s traffic equals its messages plus `inputs` words uploaded and `results` words downloaded.
fn assert_only_messages(what: &str, id: usize, t: TrafficCounts, s: Stats, inputs: u64, results: u64) {
    assert_eq!(
        t.uploaded_bytes,
        s.bytes_received + 8 * inputs,
        "{what}, party {id}: host→device bytes vs received messages {} + inputs {} words ({t:?})",
        s.bytes_received,
        inputs
    );
    assert_eq!(
        t.downloaded_bytes,
        s.bytes_sent + 8 * results,
        "{what}, party {id}: device→host bytes vs sent messages {} + results {} words ({t:?})",
        s.bytes_sent,
        results
    );
    assert!(s.bytes_sent > 0 && s.bytes_received > 0, "{what}, party {id}: no message at all");
    // Public protocol tables (the exponent classes of the loss's softmax) go up as a few words per call, apart.
    assert!(t.constant_bytes <= 2048, "{what}, party {id}: {} bytes of public constants", t.constant_bytes);
    eprintln!("{what}, party {id}: {t:?}");
}

/// Words a backend that copies every launch's operands in and its outputs out (the first CUDA backend) would move.
#[derive(Default)]
struct PerLaunchCopies(AtomicU64);

impl Observer for PerLaunchCopies {
    fn observe(&self, l: &Launch<'_>) {
        let n = l.checked.elements();
        let words = match l.kernel {
            KernelRef::Map(k) => {
                (0..k.inputs).map(|i| k.input_len(i, n).unwrap_or(n)).sum::<usize>() + k.outputs.len() * n
            }
            KernelRef::Gemm(k) => {
                k.input_lens().iter().map(|w| w.unwrap_or(n)).sum::<usize>() + k.epilogue.outputs.len() * n
            }
            KernelRef::Gather(k) => k.in_len() + k.out_len(),
            KernelRef::Bits(k) => k.in_len() + k.out_len(),
        };
        self.0.fetch_add(words as u64, Ordering::Relaxed);
    }
    fn needs_buffers(&self) -> bool {
        false
    }
}

fn counting_session() -> (CountingBackend, Session) {
    counting_session_observed(None)
}

/// A session on a counting backend, its launches also shown to `copies` if given.
fn counting_session_observed(copies: Option<Arc<PerLaunchCopies>>) -> (CountingBackend, Session) {
    let counting = CountingBackend::new();
    let backend: Arc<dyn Backend> = match copies {
        Some(c) => Arc::new(Observed::with_observer(Arc::new(counting.clone()), c)),
        None => Arc::new(counting.clone()),
    };
    let session = Session::with_backend(Config::default(), backend).unwrap();
    (counting, session)
}

#[test]
fn lenet_inference_moves_only_messages_inputs_and_results() {
    let graph = lenet();
    let params = params(&graph);
    let roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };
    for n in [1usize, 64] {
        let copies = Arc::new(PerLaunchCopies::default());
        let (counting, session) = counting_session_observed(Some(copies.clone()));
        let executor = Executor::new(graph.clone(), roles).unwrap().with_range_check(RangeCheck::Off);
        let out = executor.infer(&session, &params, &batch(n, 2)).unwrap();
        let stats = session.stats();
        let classes = 10 * n as u64;
        for id in 0..3 {
            let inputs = match id {
                0 => (n * 784) as u64,
                1 => param_words(&params),
                _ => 0,
            };
            let results = if id == 0 { classes } else { 0 };
            assert_only_messages(
                &format!("inference, batch {n}"),
                id,
                counting.traffic(id),
                stats.0[id],
                inputs,
                results,
            );
        }
        // Against copying every launch's operands (what the backend did before buffers stayed on the device).
        let resident: u64 = (0..3).map(|id| counting.traffic(id)).map(|t| t.uploaded_bytes + t.downloaded_bytes).sum();
        let per_launch = 8 * copies.0.load(Ordering::Relaxed);
        eprintln!(
            "inference, batch {n}: {:.2} MB between host and device ({:.2} MB if every launch copied its operands: {:.1}×)",
            resident as f64 / 1e6,
            per_launch as f64 / 1e6,
            per_launch as f64 / resident as f64
        );
        assert!(per_launch > 3 * resident, "batch {n}: resident {resident} B vs per-launch copies {per_launch} B");
        // The run itself is right: the same classes as in plaintext.
        let logits = out.logits(0).unwrap();
        let plain = cryptgpu_dsl::reference::infer(&graph, &params, &batch(n, 2)).unwrap();
        assert_eq!(argmax(logits.data(), 10), argmax(plain.data(), 10), "batch {n}");
    }
}

fn argmax(v: &[f64], classes: usize) -> Vec<usize> {
    v.chunks(classes)
        .map(|r| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0))
        .collect()
}

#[test]
fn weights_are_uploaded_once_per_session() {
    let graph = lenet();
    let params = params(&graph);
    let roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };
    let executor = Executor::new(graph, roles).unwrap().with_range_check(RangeCheck::Off);
    let (counting, session) = counting_session();
    let (x1, x2) = (batch(4, 3), batch(4, 4));
    let [a, b, c] = session
        .run(|p| {
            let id = p.id();
            let model = executor.share_model(p, (id == 1).then_some(&params))?;
            let mut phases = Vec::new();
            for x in [&x1, &x2] {
                let (t0, s0) = (counting.traffic(id), p.total_stats());
                let xs = executor.share_input(p, (id == 0).then_some(x), 4)?;
                let y = executor.forward(p, &model, xs, &mut Vec::new())?;
                p.reveal_fixed_to(&y, 0)?;
                let (t1, s1) = (counting.traffic(id), p.total_stats());
                let t = TrafficCounts {
                    uploaded_bytes: t1.uploaded_bytes - t0.uploaded_bytes,
                    downloaded_bytes: t1.downloaded_bytes - t0.downloaded_bytes,
                    uploads: t1.uploads - t0.uploads,
                    downloads: t1.downloads - t0.downloads,
                    constant_bytes: t1.constant_bytes - t0.constant_bytes,
                };
                phases.push((t, s1 - s0));
            }
            Ok(phases)
        })
        .unwrap();
    for (id, phases) in [a, b, c].into_iter().enumerate() {
        for (i, (t, s)) in phases.into_iter().enumerate() {
            // Each inference: only the batch (party 0) goes up besides messages; the weights stay where they are.
            let inputs = if id == 0 { 4 * 784 } else { 0 };
            let results = if id == 0 { 40 } else { 0 };
            assert_only_messages(&format!("inference {i} on shared weights"), id, t, s, inputs, results);
        }
    }
}

#[test]
fn a_training_step_moves_only_messages_inputs_and_results() {
    let graph = lenet();
    let params = params(&graph);
    let n = 8;
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let roles = Roles { model_owner: 1, data_owner: 0, receiver: 1 };
    let trainer = Trainer::new(graph, roles, TrainConfig::new(0.01)).unwrap();
    let (counting, session) = counting_session();
    let trained = trainer.train(&session, &params, &[(batch(n, 5), labels)]).unwrap();
    let stats = session.stats();
    let words = param_words(&params);
    for id in 0..3 {
        // Party 0 owns the batch and its one-hot labels; party 1 the model, which comes back to it trained.
        let (inputs, results) = match id {
            0 => ((n * (784 + 10)) as u64, 0),
            1 => (words, words),
            _ => (0, 0),
        };
        assert_only_messages("training step", id, counting.traffic(id), stats.0[id], inputs, results);
    }
    assert!(trained.params[1].is_some(), "the model owner gets the trained model");
}

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
