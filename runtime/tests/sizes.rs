//! Shapes near `usize` overflow and near `max_elements`: every element count is checked, so the answer is an
//! error (or the right result), never a panic, a wrapped count or an attempt to allocate the impossible.

mod common;

use cryptgpu_codegen::{conv_out, GatherKernel, GemmKernel, MapBuilder};
use cryptgpu_runtime::tensor::numel;
use cryptgpu_runtime::{Config, Conv2dParams, Error, RingTensor, Session, Tensor};
use proptest::prelude::*;

/// A dimension: zero, small, near 2^32, near 2^63 or near `usize::MAX`.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        1usize..8,
        ((1usize << 32) - 2)..((1usize << 32) + 2),
        ((1usize << 63) - 2)..((1usize << 63) + 2),
        (usize::MAX - 2)..=usize::MAX,
    ]
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), 0..5)
}

/// The true element count, or `None` when the product of the non-zero dimensions does not fit `usize` (such a
/// shape is refused even when it holds no element: its strides would overflow).
fn exact(shape: &[usize]) -> Option<usize> {
    let mut p = 1u128;
    for &d in shape.iter().filter(|&&d| d != 0) {
        p = p.checked_mul(d as u128).filter(|&p| p <= usize::MAX as u128)?;
    }
    Some(if shape.contains(&0) { 0 } else { p as usize })
}

const LIMIT: usize = 1000;

fn small_session() -> Session {
    Session::new(Config { max_elements: LIMIT, ..Config::default() }).expect("session")
}

#[test]
fn the_examples_of_the_issue_are_refused() {
    let big = [1usize << 32, 1 << 32];
    assert!(matches!(RingTensor::new(&big, vec![]), Err(Error::Overflow { .. })));
    assert!(matches!(Tensor::new(&big, vec![]), Err(Error::Overflow { .. })));
    assert!(cryptgpu_dsl::Tensor::from_vec(&big, vec![]).is_err());
    assert!(matches!(numel(&big), Err(Error::Overflow { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn numel_is_exact_or_an_overflow_error(s in shape()) {
        match (numel(&s), exact(&s)) {
            (Ok(n), Some(e)) => prop_assert_eq!(n, e),
            (Err(Error::Overflow { shape, .. }), None) => prop_assert_eq!(shape, s),
            (got, want) => prop_assert!(false, "{s:?}: numel {got:?}, exact {want:?}"),
        }
    }

    #[test]
    fn tensors_accept_only_their_exact_length(s in shape()) {
        // An empty data vector fits exactly the shapes with a zero dimension.
        let fits = exact(&s) == Some(0);
        prop_assert_eq!(RingTensor::new(&s, vec![]).is_ok(), fits);
        prop_assert_eq!(Tensor::new(&s, vec![]).is_ok(), fits);
        prop_assert_eq!(cryptgpu_dsl::Tensor::from_vec(&s, vec![]).is_ok(), fits);
        // A one-element vector fits exactly the shapes of one element (a wrapped count must not match it).
        let one = exact(&s) == Some(1);
        prop_assert_eq!(RingTensor::new(&s, vec![7]).is_ok(), one);
    }

    #[test]
    fn kernels_with_overflowing_shapes_fail_validation(m in dim(), n in dim(), k in dim(), s in shape()) {
        let gemm = GemmKernel { name: "g".into(), m, n, k_blocks: vec![k, k], epilogue: MapBuilder::new("e").build() };
        let fits = [m.checked_mul(n), k.checked_mul(2).and_then(|kk| m.checked_mul(kk)), k.checked_mul(2).and_then(|kk| kk.checked_mul(n))];
        if fits.iter().any(Option::is_none) {
            prop_assert!(gemm.validate().is_err());
        }
        if s.len() >= 2 {
            let perm: Vec<usize> = (0..s.len()).rev().collect();
            let g = GatherKernel::permute("p", &s, &perm).expect("a permutation");
            prop_assert_eq!(g.validate().is_ok(), exact(&s).is_some());
        }
    }

    #[test]
    fn conv_output_sizes_never_overflow(h in dim(), w in dim(), kh in dim(), kw in dim(), stride in dim(), pad in dim()) {
        // The exact size (h + 2p − k)/s + 1, computed here in u128, or an error exactly when the window does not fit
        // or the padded size does not fit usize.
        let padded = |x: usize| x as u128 + 2 * pad as u128;
        let fits = |x: usize, k: usize| padded(x) <= usize::MAX as u128 && padded(x) >= k as u128;
        let valid = stride > 0 && kh > 0 && kw > 0 && fits(h, kh) && fits(w, kw);
        let out = |x: usize, k: usize| (padded(x) - k as u128) / stride.max(1) as u128 + 1;
        let got = conv_out("c", [h, w], [kh, kw], stride, pad).map(|(a, b)| (a as u128, b as u128)).ok();
        prop_assert_eq!(got, valid.then(|| (out(h, kh), out(w, kw))));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Sharing with a declared shape near overflow or the limit: an error from every party, never a panic; one
    /// session serves every case (it recovers after each refused run).
    #[test]
    fn sharing_a_huge_declared_shape_is_an_error(s in shape()) {
        thread_local!(static SESSION: Session = small_session());
        let small = RingTensor::new(&[1], vec![5]).unwrap();
        SESSION.with(|session| {
            let r = session.run(|p| p.share(0, (p.id() == 0).then_some(&small), &s));
            match exact(&s) {
                None => prop_assert!(matches!(r.as_ref().map_err(Error::root), Err(Error::Overflow { .. })), "{r:?}"),
                Some(n) if n > LIMIT => prop_assert!(matches!(r.as_ref().map_err(Error::root), Err(Error::TooLarge { .. })), "{r:?}"),
                _ if s == [1] => prop_assert!(r.is_ok(), "{r:?}"),
                _ => prop_assert!(matches!(r.as_ref().map_err(Error::root), Err(Error::Shape { .. })), "{r:?}"), // the owner's value is [1]
            }
            Ok(())
        })?;
    }

    /// A product of operands within the limit whose output `m·n` is over it is refused before the GEMM; within
    /// it, the result is right.
    #[test]
    fn matmul_outputs_over_the_limit_are_refused(m in 1usize..=LIMIT, n in 1usize..=LIMIT) {
        thread_local!(static SESSION: Session = small_session());
        let (x, y) = (Tensor::new(&[m, 1], vec![0.5; m]).unwrap(), Tensor::new(&[1, n], vec![2.0; n]).unwrap());
        SESSION.with(|session| {
            let r = session.run(|p| {
                let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[m, 1])?;
                let ys = p.share_fixed(1, (p.id() == 1).then_some(&y), &[1, n])?;
                let z = p.matmul(&xs, &ys)?;
                p.reveal_fixed(&z)
            });
            if m * n > LIMIT {
                prop_assert!(matches!(r.as_ref().map_err(Error::root), Err(Error::TooLarge { what, elements, .. }) if what.contains("matmul") && *elements == m * n), "{r:?}");
            } else {
                let [z, _, _] = r.expect("within the limit");
                prop_assert!(z.data().iter().all(|v| (v - 1.0).abs() < 1e-4));
            }
            Ok(())
        })?;
    }

    /// Convolutions whose padding overflows the output-size arithmetic, or whose output or im2col is over the
    /// limit, are errors.
    #[test]
    fn conv_with_huge_padding_or_output_is_an_error(pad in dim(), co in 1usize..64, hw in 1usize..8) {
        thread_local!(static SESSION: Session = small_session());
        let x = RingTensor::new(&[1, 1, hw, hw], vec![0; hw * hw]).unwrap();
        let w = RingTensor::new(&[co, 1, 1, 1], vec![0; co]).unwrap();
        SESSION.with(|session| {
            let r = session.run(|p| {
                let xs = p.share(0, (p.id() == 0).then_some(&x), x.shape())?;
                let ws = p.share(1, (p.id() == 1).then_some(&w), w.shape())?;
                p.conv2d(&xs, &ws, None, Conv2dParams { stride: 1, padding: pad })
            });
            let side = hw as u128 + 2 * pad as u128;
            let out = side.checked_mul(side).and_then(|a| a.checked_mul(co as u128));
            if side > usize::MAX as u128 || out.is_none_or(|o| o > LIMIT as u128) {
                prop_assert!(r.is_err());
            } else {
                prop_assert!(r.is_ok(), "{r:?}");
            }
            Ok(())
        })?;
    }
}
