//! One party built on its own, as a process of a deployment builds it: `Party::connect` over its connections,
//! then the per-party program — no `Session`.

use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::transport::{memory, Transport};
use cryptgpu_runtime::{Config, Error, Party, Result, Tensor};
use rand::Rng;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Build the three parties each in its own thread and run `program` on each; results in party order.
fn run_apart<R: Send>(config: &Config, program: impl Fn(&mut Party) -> Result<R> + Sync) -> Vec<Result<R>> {
    let nets = memory::connect(config.timeout, Arc::new(AtomicBool::new(false)));
    std::thread::scope(|s| {
        let handles: Vec<_> = nets
            .into_iter()
            .enumerate()
            .map(|(id, net)| {
                let program = &program;
                s.spawn(move || {
                    let mut p = Party::connect(id, config, Box::new(net) as Box<dyn Transport>, Arc::new(CpuBackend))?;
                    program(&mut p)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    })
}

#[test]
fn parties_built_apart_compute_a_private_product() {
    let mut rng = rand::thread_rng();
    let n = 32;
    let x = Tensor::new(&[n], (0..n).map(|_| rng.gen_range(-10.0..10.0)).collect()).unwrap();
    let y = Tensor::new(&[n], (0..n).map(|_| rng.gen_range(-10.0..10.0)).collect()).unwrap();
    let out = run_apart(&Config::default(), |p| {
        let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[n])?;
        let ys = p.share_fixed(1, (p.id() == 1).then_some(&y), &[n])?;
        let z = p.mul(&xs, &ys)?;
        p.reveal_fixed_to(&z, 2)
    });
    let results: Vec<Option<Tensor>> = out.into_iter().map(|r| r.expect("run")).collect();
    assert!(results[0].is_none() && results[1].is_none(), "only party 2 learns the product");
    let z = results[2].as_ref().expect("party 2's result");
    for i in 0..n {
        let want = x.data()[i] * y.data()[i];
        assert!((z.data()[i] - want).abs() < 1e-4, "element {i}: {} vs {want}", z.data()[i]);
    }
}

#[test]
fn a_party_id_outside_0_to_2_is_refused() {
    let [net, _, _] = memory::connect(Config::default().timeout, Arc::new(AtomicBool::new(false)));
    let e = Party::connect(3, &Config::default(), Box::new(net), Arc::new(CpuBackend)).err().expect("refused");
    assert!(matches!(&e, Error::PartyId { found: 3, .. }), "{e}");
}
