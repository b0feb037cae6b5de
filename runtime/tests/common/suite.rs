//! The privacy suite: every protocol's view check (see [`super::view`]), as a list the privacy tests run one by one
//! and the mutation tests run whole with a deliberate break switched on.

use super::view::{check_view, secrets, Held, ViewCheck};
use cryptgpu_runtime::mutation::Mutation;
use cryptgpu_runtime::protocols::{SignBits, TruncationMode};
use cryptgpu_runtime::{Conv2dParams, Fusion, Party, PartyId, Result, Share};

/// One check of the suite.
pub struct Case {
    pub name: &'static str,
    pub run: fn(Option<Mutation>) -> std::result::Result<(), String>,
}

type Prog = fn(&mut Party, &Share, &Share) -> Result<Vec<Held>>;

fn check(
    name: &str,
    shapes: [&[usize]; 2],
    log_mag: u32,
    owners: [PartyId; 2],
    mutation: Option<Mutation>,
    program: Prog,
) -> std::result::Result<(), String> {
    let c = ViewCheck {
        name,
        x: secrets(shapes[0], log_mag, 1),
        y: secrets(shapes[1], log_mag, 2),
        owners,
        program: &program,
        mutation,
    };
    check_view(&c)
}

fn arith(s: Share) -> Vec<Held> {
    vec![Held::Arith(s)]
}

/// Run a protocol three times: its roles rotate with the step, so every party plays each of them (in a truncating
/// product R0 receives nothing, so one call would leave one party's view untested).
fn thrice(mut f: impl FnMut() -> Result<Share>) -> Result<Vec<Held>> {
    (0..3).map(|_| f().map(Held::Arith)).collect()
}

const POOL: Conv2dParams = Conv2dParams { stride: 2, padding: 0 };

/// Every check, cheapest first.
pub fn suite() -> Vec<Case> {
    vec![
        Case {
            name: "share: two inputs of one owner, then their ring product",
            run: |m| check("share", [&[64], &[64]], 10, [0, 0], m, |p, x, y| Ok(arith(p.mul_ring(x, y)?))),
        },
        Case {
            name: "mul_ring (plain reshare), twice",
            run: |m| {
                check("mul_ring", [&[64], &[64]], 20, [0, 1], m, |p, x, y| {
                    let (a, b) = (p.mul_ring(x, y)?, p.mul_ring(x, x)?);
                    Ok(vec![Held::Arith(a), Held::Arith(b)])
                })
            },
        },
        Case {
            name: "mul with exact truncation",
            run: |m| check("mul exact", [&[64], &[64]], 10, [0, 1], m, |p, x, y| thrice(|| p.mul(x, y))),
        },
        Case {
            name: "mul with probabilistic truncation",
            run: |m| {
                check("mul probabilistic", [&[64], &[64]], 10, [0, 1], m, |p, x, y| {
                    p.set_truncation(TruncationMode::Probabilistic);
                    thrice(|| p.mul(x, y))
                })
            },
        },
        Case {
            name: "matmul",
            run: |m| check("matmul", [&[8, 8], &[8, 8]], 8, [0, 1], m, |p, x, y| thrice(|| p.matmul(x, y))),
        },
        Case {
            name: "conv2d",
            run: |m| {
                check("conv2d", [&[1, 2, 8, 8], &[2, 2, 3, 3]], 8, [0, 1], m, |p, x, w| {
                    thrice(|| p.conv2d(x, w, None, Conv2dParams { stride: 1, padding: 1 }))
                })
            },
        },
        Case {
            name: "conv2d backward: dW and dX (col2im before the truncation), one product after the other",
            run: |m| {
                check("conv2d backward", [&[1, 2, 6, 6], &[2, 2, 3, 3]], 8, [0, 1], m, |p, x, w| {
                    let params = Conv2dParams { stride: 1, padding: 1 };
                    // Three gradients (each party plays each role), all different. Unfused: the view checker takes
                    // each product's message pieces apart (fused, the same words travel grouped in shared rounds).
                    let dy = p.conv2d(x, w, None, params)?;
                    let dys = [dy.clone(), x.clone(), p.add(&dy, x)?];
                    let mut held = vec![Held::Arith(dy)];
                    for dy in &dys {
                        held.extend(p.conv2d_backward(x, w, dy, params, Fusion::Off)?.map(Held::Arith));
                    }
                    Ok(held)
                })
            },
        },
        Case {
            name: "exact truncation, division by a public integer, average pooling",
            run: |m| {
                check("truncate/div/avg_pool", [&[1, 4, 8, 8], &[64]], 20, [0, 1], m, |p, x, y| {
                    let t = p.truncate(y, 7)?;
                    let d = p.div_public(y, 12345)?;
                    let a = p.avg_pool2d(x, [2, 2], POOL)?;
                    Ok(vec![Held::Arith(t), Held::Arith(d), Held::Arith(a)])
                })
            },
        },
        Case {
            name: "DReLU and AND of shared bits",
            run: |m| {
                check("drelu/and", [&[128], &[128]], 20, [0, 1], m, |p, x, y| {
                    let (a, b) = (p.drelu(x)?, p.drelu(y)?);
                    let c = p.and(&a, &b)?;
                    Ok(vec![Held::Bin(a), Held::Bin(b), Held::Bin(c)])
                })
            },
        },
        Case {
            name: "ReLU with its mask",
            run: |m| {
                check("relu", [&[128], &[128]], 20, [0, 1], m, |p, x, _| {
                    let (r, mask) = p.relu_with_mask(x, SignBits::default())?;
                    Ok(vec![Held::Arith(r), Held::Bin(mask)])
                })
            },
        },
        Case {
            name: "ReLU over a bounded range and its backward",
            run: |m| {
                check("relu_bounded/backward", [&[128], &[128]], 20, [0, 1], m, |p, x, y| {
                    let (r, saved) = p.relu_for_backward(x, SignBits::for_bound(40)?)?;
                    let dx = p.relu_backward(y, &saved)?;
                    Ok(vec![Held::Arith(r), Held::Bin(saved.mask.clone()), Held::Arith(dx)])
                })
            },
        },
        Case {
            name: "ReLU fused into a product's truncation",
            run: |m| {
                check("matmul+relu", [&[8, 16], &[16, 8]], 8, [0, 1], m, |p, x, y| {
                    let bits = SignBits::for_bound(40)?;
                    let mut held = Vec::new();
                    for _ in 0..3 {
                        // Three runs put every party in every role.
                        p.expect_relu(bits, None)?;
                        let z = p.matmul(x, y)?;
                        let (r, saved) = p.relu_expected(&z, bits)?;
                        held.extend([Held::Arith(r), Held::Bin(saved.mask)]);
                    }
                    Ok(held)
                })
            },
        },
        Case {
            name: "multiplication by a shared bit",
            run: |m| {
                check("mul_bit", [&[128], &[128]], 20, [0, 1], m, |p, x, y| {
                    let b = p.drelu(x)?;
                    let v = p.mul_bit(y, &b)?;
                    Ok(vec![Held::Bin(b), Held::Arith(v)])
                })
            },
        },
        Case {
            name: "max and argmax tournaments",
            run: |m| {
                check("max/argmax", [&[4, 64], &[64]], 20, [0, 1], m, |p, x, _| {
                    let mx = p.max_axis(x, 0)?;
                    let (v, arg) = p.argmax_axis(x, 0)?;
                    Ok(vec![Held::Arith(mx), Held::Arith(v), Held::Arith(arg)])
                })
            },
        },
        Case {
            name: "max pooling with argmax, and its backward",
            run: |m| {
                check("max_pool2d", [&[1, 4, 8, 8], &[1, 4, 8, 8]], 20, [0, 1], m, |p, x, y| {
                    let (out, rec) = p.max_pool2d_with_argmax(x, [2, 2], POOL)?;
                    let pooled_y = p.sum_pool2d(y, [2, 2], POOL)?;
                    let g = p.add(&out, &pooled_y)?;
                    let back = p.max_pool2d_backward(&g, &rec)?;
                    Ok(vec![Held::Arith(out), Held::Arith(back)])
                })
            },
        },
        Case {
            name: "comparisons (secret, public, scalar) and a narrowed sign range",
            run: |m| {
                check("comparisons", [&[128], &[128]], 20, [0, 1], m, |p, x, y| {
                    let lt = p.less_than(x, y)?;
                    let gt = p.greater_than_scalar(x, 0.5)?;
                    let (r, mask) = p.relu_with_mask(y, SignBits { low: 10, high: 40 })?;
                    Ok(vec![Held::Bin(lt), Held::Bin(gt), Held::Arith(r), Held::Bin(mask)])
                })
            },
        },
        Case {
            name: "exp, reciprocal and log",
            run: |m| {
                check("exp/reciprocal/log", [&[64], &[64]], 2, [0, 1], m, |p, x, _| {
                    let e = p.exp(x)?;
                    let r = p.reciprocal(&e)?;
                    let l = p.log(&e)?;
                    Ok(vec![Held::Arith(e), Held::Arith(r), Held::Arith(l)])
                })
            },
        },
        Case {
            name: "softmax (exp, reciprocal) and inverse square root",
            run: |m| {
                check("softmax/rsqrt", [&[2, 64], &[128]], 3, [0, 1], m, |p, x, y| {
                    let sm = p.softmax(x)?;
                    let sq = p.mul(y, y)?;
                    let r = p.rsqrt(&sq)?;
                    Ok(vec![Held::Arith(sm), Held::Arith(r)])
                })
            },
        },
    ]
}
