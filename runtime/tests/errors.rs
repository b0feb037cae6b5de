//! Bad input gives a clear error naming what was expected, never a panic or a hang.

mod common;

use common::session;
use cryptgpu_runtime::{Config, Conv2dParams, Error, RingTensor, Session, Tensor};
use std::time::{Duration, Instant};

fn zeros(shape: &[usize]) -> RingTensor {
    RingTensor::new(shape, vec![0; shape.iter().product()]).unwrap()
}

#[test]
fn mismatched_shapes_are_errors() {
    let s = session();
    let (a, b) = (zeros(&[2, 3]), zeros(&[3, 2]));
    let e = s
        .run(|p| {
            let x = p.share(0, (p.id() == 0).then_some(&a), &[2, 3])?;
            let y = p.share(0, (p.id() == 0).then_some(&b), &[3, 2])?;
            p.mul(&x, &y)
        })
        .unwrap_err();
    assert!(
        matches!(e.root(), Error::Shape { .. }) && e.to_string().contains("mul") && e.to_string().contains("[3, 2]"),
        "{e}"
    );

    let s = session();
    let e = s
        .run(|p| {
            let x = p.share(0, (p.id() == 0).then_some(&a), &[2, 3])?;
            p.matmul(&x, &x)
        })
        .unwrap_err();
    assert!(e.to_string().contains("matmul") && e.to_string().contains("[m, k]"), "{e}");

    let s = session();
    let (xi, wi) = (zeros(&[1, 3, 5, 5]), zeros(&[4, 2, 3, 3]));
    let e = s
        .run(|p| {
            let x = p.share(0, (p.id() == 0).then_some(&xi), xi.shape())?;
            let w = p.share(1, (p.id() == 1).then_some(&wi), wi.shape())?;
            p.conv2d(&x, &w, None, Conv2dParams::default())
        })
        .unwrap_err();
    assert!(e.to_string().contains("3 input channels"), "{e}");

    let s = session();
    let e = s
        .run(|p| {
            let x = p.share(0, (p.id() == 0).then_some(&xi), xi.shape())?;
            p.sum_pool2d(&x, [7, 7], Conv2dParams::default())
        })
        .unwrap_err();
    assert!(e.to_string().contains("does not fit a 5×5 input"), "{e}");
}

#[test]
fn nan_input_is_an_error_and_no_party_hangs() {
    let s = session();
    let x = Tensor::new(&[3], vec![1.0, f64::NAN, 2.0]).unwrap();
    let start = Instant::now();
    let e = s.run(|p| p.share_fixed(2, (p.id() == 2).then_some(&x), &[3])).unwrap_err();
    assert!(
        matches!(e, Error::Party { party: 2, .. })
            && matches!(e.root(), Error::Encode { .. })
            && e.to_string().contains("element 1")
            && e.to_string().contains("NaN"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(10), "the other parties must stop waiting");
    // The session recovered: the same session shares and reveals correctly.
    let y = Tensor::new(&[3], vec![1.0, -0.5, 2.0]).unwrap();
    let outs = s.run(|p| p.share_fixed(2, (p.id() == 2).then_some(&y), &[3]).and_then(|ys| p.reveal_fixed(&ys)));
    for out in outs.expect("the session is usable after a refused input") {
        assert!(out.data().iter().zip(y.data()).all(|(a, b)| (a - b).abs() < 1e-5), "{out:?}");
    }
    let inf = Tensor::new(&[1], vec![f64::INFINITY]).unwrap();
    let e = session().run(|p| p.share_fixed(0, (p.id() == 0).then_some(&inf), &[1])).unwrap_err();
    assert!(e.to_string().contains("infinity"), "{e}");
}

#[test]
fn tensors_over_the_limit_are_refused() {
    let s = Session::new(Config { max_elements: 100, ..Config::default() }).unwrap();
    let x = zeros(&[101]);
    let e = s.run(|p| p.share(0, (p.id() == 0).then_some(&x), &[101])).unwrap_err();
    assert!(matches!(e.root(), Error::TooLarge { elements: 101, limit: 100, .. }), "{e}");
    assert!(e.to_string().contains("max_elements"), "{e}");
}

#[test]
fn divisors_outside_the_range_and_bad_arguments_are_errors() {
    let x = zeros(&[4]);
    for d in [0u64, 1 << 63, u64::MAX] {
        let e = session()
            .run(|p| {
                let xs = p.share(0, (p.id() == 0).then_some(&x), &[4])?;
                p.div_public(&xs, d)
            })
            .unwrap_err();
        assert!(matches!(e.root(), Error::DivisorOutOfRange { divisor } if *divisor == d), "{e}");
    }
    let e = session().run(|p| p.share(3, None, &[4])).unwrap_err();
    assert!(matches!(e.root(), Error::PartyId { found: 3, .. }), "{e}");
    assert!(e.to_string().contains("owner must be party 0, 1 or 2"), "{e}");
    let e = session().run(|p| p.share(0, Some(&x), &[4])).unwrap_err();
    assert!(matches!(e.root(), Error::Ownership { owner: 0, supplied: true, .. }), "{e}");
    assert!(e.to_string().contains("supplied input owned by party 0"), "{e}");
    let e = session().run(|p| p.share(0, (p.id() == 0).then_some(&x), &[2, 3])).unwrap_err();
    assert!(matches!(e.root(), Error::Shape { .. }), "{e}");
    assert!(Session::new(Config { frac_bits: 40, ..Config::default() }).is_err());
}
