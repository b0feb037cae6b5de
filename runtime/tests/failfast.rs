//! Fail fast, fail together: a party that panics, fails or returns early stops the others within a second with an
//! error naming it and its cause, and the session is usable again afterwards (correct results, fresh masks).

mod common;

use common::{recording_session, session};
use cryptgpu_runtime::{Error, Party, Result, Session, Tensor};
use rand::Rng;
use std::time::{Duration, Instant};

const N: usize = 16;

fn random(rng: &mut impl Rng) -> Tensor {
    Tensor::new(&[N], (0..N).map(|_| rng.gen_range(-4.0..4.0)).collect()).unwrap()
}

/// `x·y·y` revealed to all, with `interrupt` called on every party after the first product.
fn product(
    p: &mut Party,
    x: &Tensor,
    y: &Tensor,
    interrupt: impl Fn(&mut Party) -> Result<bool>,
) -> Result<Option<Tensor>> {
    let xs = p.share_fixed(0, (p.id() == 0).then_some(x), &[N])?;
    let ys = p.share_fixed(1, (p.id() == 1).then_some(y), &[N])?;
    let z = p.mul(&xs, &ys)?;
    if interrupt(p)? {
        return Ok(None);
    }
    let w = p.mul(&z, &ys)?;
    p.reveal_fixed(&w).map(Some)
}

/// The session still computes correctly: a fresh product on fresh inputs matches the plaintext.
fn assert_usable(s: &Session) {
    let mut rng = rand::thread_rng();
    let (x, y) = (random(&mut rng), random(&mut rng));
    let outs = s.run(|p| product(p, &x, &y, |_| Ok(false))).expect("the run after a failed one");
    for out in outs {
        let out = out.expect("every party revealed");
        for i in 0..N {
            let want = x.data()[i] * y.data()[i] * y.data()[i];
            assert!((out.data()[i] - want).abs() < 1e-3, "element {i}: {} vs {want}", out.data()[i]);
        }
    }
}

/// Run `interrupt` mid-protocol; the run must fail within 2 s (the timeout is the default 120 s) with an error
/// satisfying `check`, and the session must then work.
fn fails_fast_and_recovers(interrupt: impl Fn(&mut Party) -> Result<bool> + Sync, check: impl Fn(&Error) -> bool) {
    let s = session();
    let mut rng = rand::thread_rng();
    let (x, y) = (random(&mut rng), random(&mut rng));
    let start = Instant::now();
    let e = s.run(|p| product(p, &x, &y, &interrupt)).unwrap_err();
    let elapsed = start.elapsed();
    eprintln!("the run stopped after {elapsed:?}: {e}");
    assert!(check(&e), "wrong error: {e}");
    assert!(elapsed < Duration::from_secs(2), "the other parties waited {elapsed:?}");
    assert_usable(&s);
    assert_usable(&s);
}

#[test]
fn a_panicking_party_stops_the_others_at_once_and_is_named() {
    fails_fast_and_recovers(
        |p| {
            if p.id() == 2 {
                panic!("party 2 broke after the first product");
            }
            Ok(false)
        },
        |e| matches!(e, Error::PartyPanicked { party: 2, message } if message.contains("broke after the first")),
    );
}

#[test]
fn a_party_returning_an_error_stops_the_others_and_its_error_is_returned() {
    fails_fast_and_recovers(
        |p| match p.id() {
            2 => Err(Error::Invalid("party 2 gave up".into())),
            _ => Ok(false),
        },
        |e| {
            matches!(e, Error::Party { party: 2, source } if matches!(**source, Error::Invalid(ref m) if m == "party 2 gave up"))
                && e.party() == Some(2)
                && e.to_string() == "party 2: invalid argument: party 2 gave up"
        },
    );
}

#[test]
fn a_party_returning_early_stops_the_peers_waiting_for_it() {
    fails_fast_and_recovers(
        |p| Ok(p.id() == 2),
        |e| {
            matches!(e, Error::PeerFinished { peer: 2, .. })
                && e.to_string().contains("party 2 finished its program without sending the message party")
        },
    );
}

/// Only the data owner (party 1) fails, on a NaN in its own input inside the program: the error names it and
/// the cause (not the bystanders' `PeerFinished`/`Aborted`), the others stop at once, and the session recovers.
#[test]
fn only_the_data_owner_failing_on_a_nan_is_named_with_its_cause() {
    let s = session();
    let mut rng = rand::thread_rng();
    let bad = rng.gen_range(0..N);
    let mut data = random(&mut rng).data().to_vec();
    data[bad] = f64::NAN;
    let x = Tensor::new(&[N], data).unwrap();
    let start = Instant::now();
    let e = s
        .run(|p| {
            let xs = p.share_fixed(1, (p.id() == 1).then_some(&x), &[N])?;
            p.reveal_fixed(&xs)
        })
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(e, Error::Party { party: 1, .. }) && e.party() == Some(1), "{e}");
    assert!(matches!(e.root(), Error::Encode { value, .. } if value.is_nan()), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("party 1: cannot encode NaN") && text.contains(&format!("element {bad}")), "{text}");
    let source = std::error::Error::source(&e).expect("the cause is the error's source");
    assert_eq!(source.to_string(), e.root().to_string());
    assert!(elapsed < Duration::from_secs(2), "the other parties waited {elapsed:?}");
    assert_usable(&s);
}

/// Every party fails with the same deterministic error: the lowest party's is returned, wrapped like any other.
#[test]
fn the_same_error_on_every_party_is_named_for_the_lowest_party() {
    let s = session();
    let x = random(&mut rand::thread_rng());
    let e = s
        .run(|p| {
            let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[N])?;
            let ys = p.share_fixed(0, (p.id() == 0).then_some(&x), &[N])?;
            p.matmul(&xs, &ys)
        })
        .unwrap_err();
    assert!(matches!(e, Error::Party { party: 0, .. }), "{e}");
    assert!(matches!(e.root(), Error::Shape { .. }) && e.to_string().starts_with("party 0: shape mismatch"), "{e}");
    assert_usable(&s);
}

#[test]
fn a_message_sent_before_the_sender_finished_is_still_received() {
    let s = session();
    let x = random(&mut rand::thread_rng());
    let outs = s
        .run(|p| {
            if p.id() != 2 {
                std::thread::sleep(Duration::from_millis(100)); // party 2 has finished by now
            }
            let xs = p.share_fixed(2, (p.id() == 2).then_some(&x), &[N])?;
            Ok(xs.mine().to_vec())
        })
        .expect("party 2's share message was sent before it finished");
    // The three first pieces are the additive shares of x.
    let fp = s.fixed();
    for i in 0..N {
        let sum = outs.iter().fold(0u64, |a, piece| a.wrapping_add(piece[i]));
        assert!((fp.decode(sum) - x.data()[i]).abs() < 1e-5, "element {i}");
    }
}

/// After a failed run in which the parties reached different steps, the next run uses fresh PRF steps: sharing
/// the same secret again sends a different masked message (a reused step would send the same one).
#[test]
fn recovery_never_reuses_a_mask() {
    let (s, logs) = recording_session();
    let x = random(&mut rand::thread_rng());
    let share_then = |p: &mut Party, fail: bool| -> Result<Option<Tensor>> {
        if fail && p.id() == 2 {
            std::thread::sleep(Duration::from_millis(200)); // parties 0 and 1 finish the sharing round first
            panic!("party 2 fails before its first step");
        }
        let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[N])?;
        if fail {
            return Ok(None);
        }
        p.reveal_fixed(&xs).map(Some)
    };
    let received = || logs[1].lock().unwrap().iter().map(|(_, w)| w.clone()).collect::<Vec<_>>();
    let before = received().len(); // key agreement
    let e = s.run(|p| share_then(p, true)).unwrap_err();
    assert!(matches!(e, Error::PartyPanicked { party: 2, .. }), "{e}");
    let first = received();
    assert_eq!(first.len(), before + 1, "party 1 received party 0's share before the failure");
    let outs = s.run(|p| share_then(p, false)).expect("run after recovery");
    for out in outs {
        let out = out.unwrap();
        assert!(out.data().iter().zip(x.data()).all(|(a, b)| (a - b).abs() < 1e-5), "{out:?} vs {x:?}");
    }
    let second = received();
    assert_eq!(second.len(), before + 3, "the share, then two reveal messages");
    assert_ne!(first[before], second[before + 1], "the same secret was masked with the same PRF step twice");
}

/// The data owner's bad input (NaN, ±infinity, out of range, wrong shape) is refused by `Executor::infer`
/// before any message is sent; the same refusal inside a party program (`infer_party`) fails the run before the
/// weights are shared; and the same session then runs a correct inference.
#[test]
fn a_bad_inference_input_is_refused_before_any_message_and_the_session_stays_usable() {
    use cryptgpu_dsl::models::{lenet, Pooling};
    use cryptgpu_dsl::{reference, Params, Tensor as DslTensor};
    use cryptgpu_runtime::executor::{Executor, Roles};
    use rand::SeedableRng;
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let params = Params::kaiming(&graph, &mut rng);
    let exec = Executor::new(graph.clone(), Roles::default()).expect("executor");
    let s = session();
    let x = DslTensor::randn(&[1, 1, 28, 28], 1.0, &mut rng);
    for (bad, what) in [(f64::NAN, "NaN"), (f64::NEG_INFINITY, "infinity"), (1e300, "representable range")] {
        let mut data = x.data().to_vec();
        data[17] = bad;
        let bad = DslTensor::from_vec(x.shape(), data).unwrap();
        let before = s.stats();
        let e = exec.infer(&s, &params, &bad).unwrap_err();
        assert!(matches!(e, Error::Encode { .. }) && e.to_string().contains("element 17"), "{e}");
        assert!(e.to_string().contains(what), "{e}");
        assert_eq!(s.stats(), before, "no message before the input is refused");
        let e = s
            .run(|p| {
                let params = (p.id() == Roles::default().model_owner).then_some(&params);
                let input = (p.id() == Roles::default().data_owner).then_some(&bad);
                exec.infer_party(p, params, input, 1)
            })
            .unwrap_err();
        let owner = Roles::default().data_owner;
        assert!(matches!(e, Error::Party { party, .. } if party == owner), "{e}");
        assert!(matches!(e.root(), Error::Encode { .. }), "{e}");
    }
    let wrong = DslTensor::zeros(&[1, 1, 28, 27]);
    assert!(matches!(exec.infer(&s, &params, &wrong), Err(Error::Shape { .. })));
    let private = exec.infer(&s, &params, &x).expect("inference after refused inputs");
    let plain = reference::infer(&graph, &params, &x).expect("reference");
    let got = private.logits(Roles::default().receiver).expect("receiver's logits");
    for (a, b) in got.data().iter().zip(plain.data()) {
        assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// The trainer checks every batch of the data owner before the run starts: a NaN in the second batch is refused
/// before any message.
#[test]
fn a_bad_training_batch_is_refused_before_the_run() {
    use cryptgpu_dsl::models::{lenet, Pooling};
    use cryptgpu_dsl::{Params, Tensor as DslTensor};
    use cryptgpu_runtime::executor::Roles;
    use cryptgpu_runtime::training::{TrainConfig, Trainer};
    use rand::SeedableRng;
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let params = Params::kaiming(&graph, &mut rng);
    let trainer = Trainer::new(graph, Roles::default(), TrainConfig::new(0.1)).expect("trainer");
    let s = session();
    let good = DslTensor::randn(&[2, 1, 28, 28], 1.0, &mut rng);
    let mut data = good.data().to_vec();
    data[5] = f64::INFINITY;
    let bad = DslTensor::from_vec(good.shape(), data).unwrap();
    let before = s.stats();
    let e = trainer.train(&s, &params, &[(good.clone(), vec![1, 2]), (bad, vec![3, 4])]).unwrap_err();
    assert!(e.to_string().contains("training batch 1") && e.to_string().contains("element 5"), "{e}");
    let e = trainer.train(&s, &params, &[(good, vec![1, 10])]).unwrap_err();
    assert!(e.to_string().contains("label 10 of sample 1"), "{e}");
    assert_eq!(s.stats(), before, "no message before the batches are refused");
}

/// A user transport that cannot discard pending messages (no `Transport::reset`): after a failed run the session
/// refuses further runs with an error saying why, instead of running on stale messages.
#[test]
fn a_session_whose_transports_cannot_reset_refuses_runs_after_a_failure() {
    use cryptgpu_runtime::transport::{memory, Transport};
    use cryptgpu_runtime::{Config, PartyId};
    use std::sync::{atomic::AtomicBool, Arc};
    struct Plain(memory::MemoryTransport);
    impl Transport for Plain {
        fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()> {
            self.0.send(to, words)
        }
        fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
            self.0.recv(from)
        }
    }
    let abort = Arc::new(AtomicBool::new(false));
    let nets =
        memory::connect(Config::default().timeout, abort.clone()).map(|t| Box::new(Plain(t)) as Box<dyn Transport>);
    let s = Session::with_transports(Config::default(), nets, abort).expect("session");
    assert_eq!(s.run(|p| Ok(p.id())).expect("a clean run needs no reset"), [0, 1, 2]);
    let e = s.run(|p| if p.id() == 1 { Err(Error::Invalid("party 1 fails".into())) } else { Ok(p.id()) });
    let e = e.unwrap_err();
    assert!(matches!(e.root(), Error::Invalid(m) if m == "party 1 fails") && e.party() == Some(1), "{e}");
    let e = s.run(|p| Ok(p.id())).unwrap_err();
    assert!(e.to_string().contains("cannot discard"), "{e}");
}
