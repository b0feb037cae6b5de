//! The network emulator: every message arrives one configured latency after it was sent (a round costs one
//! latency, not one per message), a bandwidth cap adds size/bandwidth, and results are unchanged.

use cryptgpu_runtime::transport::delay::{Delayed, Link};
use cryptgpu_runtime::transport::{memory, Transport};
use cryptgpu_runtime::{Config, Session, Tensor};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn delayed_session(link: Link) -> Session {
    let abort = Arc::new(AtomicBool::new(false));
    let mut id = 0;
    let nets = memory::connect(Config::default().timeout, abort.clone()).map(|t| {
        id += 1;
        Box::new(Delayed::new(id - 1, t, link).expect("link")) as Box<dyn Transport>
    });
    Session::with_transports(Config::default(), nets, abort).expect("session")
}

fn product(s: &Session, n: usize) -> Tensor {
    let x = Tensor::new(&[n], (0..n).map(|i| i as f64 * 0.5 - 3.0).collect()).unwrap();
    let [out, _, _] = s
        .run(|p| {
            let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[n])?;
            let z = p.mul(&xs, &xs)?;
            p.reveal_fixed_to(&z, 0)
        })
        .expect("run");
    out.expect("party 0's result")
}

#[test]
fn each_round_costs_one_latency_and_results_are_unchanged() {
    let latency = Duration::from_millis(20);
    let s = delayed_session(Link { latency, bandwidth: None });
    let z = product(&s, 8);
    let (stats, wall) = s.last_run();
    let rounds = stats.rounds();
    for (i, v) in z.data().iter().enumerate() {
        let x = i as f64 * 0.5 - 3.0;
        assert!((v - x * x).abs() < 1e-4, "element {i}: {v}");
    }
    // share (1) + exact product (2) + reveal (1): 4 rounds, each at least one latency, and far less than one
    // latency per message (every party sends up to two messages a round).
    assert_eq!(rounds, 4);
    assert!(wall >= latency * rounds as u32, "{wall:?} for {rounds} rounds of {latency:?}");
    assert!(wall < latency * (2 * rounds) as u32, "{wall:?}: messages of one round should overlap");
}

#[test]
fn a_bandwidth_cap_adds_the_transfer_time() {
    // 64 Ki elements = 512 KiB per message at 8 MiB/s: 62.5 ms per message on each link — in the sharing, the
    // product's first round and the reveal; its second round sends the wrap terms packed three to a word (20.8 ms).
    let s = delayed_session(Link { latency: Duration::ZERO, bandwidth: Some(8.0 * 1024.0 * 1024.0) });
    let n = 1 << 16;
    product(&s, n);
    let (_, wall) = s.last_run();
    assert!(wall >= Duration::from_millis(3 * 62 + 20), "{wall:?}");
}

#[test]
fn a_bad_bandwidth_is_refused() {
    let [t, _, _] = memory::connect(Config::default().timeout, Arc::new(AtomicBool::new(false)));
    let e = Delayed::new(0, t, Link { latency: Duration::ZERO, bandwidth: Some(0.0) }).err().expect("refused");
    assert!(e.to_string().contains("bandwidth"), "{e}");
}
