//! The benchmark tables of `BENCHMARKS.md` (`cryptgpu bench`): ring GEMM vs f32 GEMM, the secure matmul and
//! convolution against their local work, the non-linear protocols against plaintext, their communication per
//! element measured and declared, and the cost model's predictions beside the measured times.

use crate::progress::during;
use crate::runtime::backend::cpu::gemm::{block_gemm, ring_gemm, Kernel};
use crate::runtime::fixed::DEFAULT_FRAC_BITS;
use crate::runtime::protocols::{cost, softmax, TruncationMode};
use crate::{workloads, Config, Conv2dParams, Session};
use serde_json::json;
use std::time::{Duration, Instant};

/// Where the tables go: markdown on stdout, or (`--json`) one JSON record per measured row on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Records instead of tables.
    pub json: bool,
}

impl Out {
    /// Prints `record` (with its `table` name) in JSON mode.
    fn record(self, table: &str, mut record: serde_json::Value) {
        if self.json {
            record["record"] = json!("bench");
            record["table"] = json!(table);
            println!("{record}");
        }
    }
}

/// `println!` in text mode only.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        if !$out.json {
            println!($($arg)*)
        }
    };
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_ring_gemm(n: usize, reps: usize) -> Duration {
    let a: Vec<u64> = (0..n * n).map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let b: Vec<u64> = (0..n * n).map(|i| (i as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).collect();
    let mut c = vec![0u64; n * n];
    median(
        (0..reps)
            .map(|_| {
                let s = Instant::now();
                ring_gemm(n, n, n, &a, &b, &mut c);
                s.elapsed()
            })
            .collect(),
    )
}

/// The local work of a secure n³ matmul: each party's GEMM over the doubled inner dimension, three parties.
fn time_party_gemms(n: usize) -> Duration {
    let a: Vec<u64> = (0..2 * n * n).map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let b: Vec<u64> = (0..2 * n * n).map(|i| (i as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).collect();
    let (a0, a1) = a.split_at(n * n);
    let (b0, b1) = b.split_at(n * n);
    let s = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..3 {
            sc.spawn(|| std::hint::black_box(block_gemm(n, n, &[a0, a1], &[b0, b1])));
        }
    });
    s.elapsed()
}

/// Print every table of the benchmark (`cryptgpu bench`): `reps` repetitions per measurement, square GEMMs up to
/// `max_size`.
/// Runs every table; `json`: one JSON record per row instead of markdown.
pub fn run(reps: usize, max_size: usize, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let out = Out { json };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    say!(out, "Ring GEMM kernel: {:?} (cap it with RING_GEMM_KERNEL=scalar|avx2|avx512)\n", Kernel::selected());
    say!(out, "## Ring GEMM (u64, wrapping) vs f32 GEMM (matrixmultiply, threaded), median of {reps}\n");
    say!(out, "| size | ring GEMM ms | f32 GEMM ms | ratio |\n|---|---|---|---|");
    let mut sizes = vec![256, 512, 1024];
    sizes.retain(|&s| s <= max_size);
    for &n in &sizes {
        let (ring, f32t) = during(format!("bench: ring GEMM vs f32 GEMM {n}³"), || {
            (time_ring_gemm(n, reps), median((0..reps).map(|_| workloads::time_f32_gemm(n, n, n)).collect()))
        });
        let ratio = ring.as_secs_f64() / f32t.as_secs_f64();
        out.record("ring_gemm", json!({"size": n, "ring_gemm_ms": ms(ring), "f32_gemm_ms": ms(f32t), "ratio": ratio}));
        say!(out, "| {n}³ | {:.1} | {:.1} | {:.2}× |", ms(ring), ms(f32t), ring.as_secs_f64() / f32t.as_secs_f64());
    }

    let n = *sizes.last().unwrap_or(&256);
    say!(out, "\n## Secure matmul {n}³ (three in-process parties on this machine's cores) vs one local ring GEMM\n");
    let (local, floor) = during(format!("bench: local work of a secure matmul {n}³"), || {
        (time_ring_gemm(n, reps), median((0..reps).map(|_| time_party_gemms(n)).collect()))
    });
    say!(out, "The local work alone (each party's GEMM over the doubled inner dimension, 3 × {n}×{}×{n}): {:.0} ms = {:.2}× one local GEMM ({:.0} ms).\n", 2 * n, ms(floor), floor.as_secs_f64() / local.as_secs_f64(), ms(local));
    say!(out, "| truncation | secure ms | ratio to one local GEMM | target | max abs err | trunc. failures | rounds | bytes per party, measured (sorted) | declared |");
    say!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut rng = rand::thread_rng();
    for (mode, declared) in [(TruncationMode::Exact, cost::MUL_EXACT), (TruncationMode::Probabilistic, cost::MUL)] {
        let session = Session::new(Config { truncation: mode, ..Config::default() })?;
        let mut secure = Vec::new();
        let mut last = None;
        for _ in 0..reps.clamp(1, 3) {
            let r = during(format!("bench: secure matmul {n}³, {mode:?} truncation"), || {
                workloads::matmul(&session, n, n, n, &mut rng)
            })?;
            secure.push(r.secure);
            last = Some(r);
        }
        let r = last.expect("at least one run");
        let secure = median(secure);
        let mut measured = r.stats.bytes();
        measured.sort_unstable_by(|a, b| b.cmp(a));
        out.record(
            "secure_matmul",
            json!({
                "size": n, "truncation": format!("{mode:?}"), "secure_ms": ms(secure),
                "ratio_to_local_gemm": secure.as_secs_f64() / local.as_secs_f64(), "max_abs_err": r.max_abs_err,
                "truncation_failures": r.failures, "outputs": r.outputs, "rounds": r.stats.rounds(),
                "bytes_per_party": measured, "declared_bytes_per_party": declared.bytes_for(n * n, DEFAULT_FRAC_BITS),
            }),
        );
        say!(
            out,
            "| {mode:?} | {:.0} | {:.2}× | ≤ 7× | {:.1e} | {} of {} | {} | {:?} | {:?} |",
            ms(secure),
            secure.as_secs_f64() / local.as_secs_f64(),
            r.max_abs_err,
            r.failures,
            r.outputs,
            r.stats.rounds(),
            measured,
            declared.bytes_for(n * n, DEFAULT_FRAC_BITS)
        );
    }

    say!(out, "\n## Secure conv2d 64→64, 3×3, padding 1, 32×32, batch 8 vs plaintext f32 (im2col + sgemm)\n");
    let session = Session::new(Config::default())?;
    let p = Conv2dParams { stride: 1, padding: 1 };
    let mut runs = Vec::new();
    for _ in 0..reps.clamp(1, 3) {
        runs.push(during("bench: secure conv2d", || workloads::conv2d(&session, 8, 64, 32, 64, 3, p, &mut rng))?);
    }
    runs.sort_by_key(|r| r.secure);
    let r = &runs[runs.len() / 2];
    out.record(
        "secure_conv2d",
        json!({
            "secure_ms": ms(r.secure), "plaintext_ms": ms(r.plaintext), "ratio": r.slowdown(),
            "max_abs_err": r.max_abs_err, "truncation_failures": r.failures, "outputs": r.outputs,
            "rounds": r.stats.rounds(), "bytes": r.stats.total_bytes(),
            "declared_bytes": cost::MUL_EXACT.bytes_for(r.outputs, DEFAULT_FRAC_BITS).iter().sum::<u64>(),
        }),
    );
    say!(
        out,
        "| secure ms | plaintext ms | ratio | max abs err | trunc. failures | rounds | MB total measured | declared |"
    );
    say!(out, "|---|---|---|---|---|---|---|---|");
    say!(
        out,
        "| {:.0} | {:.1} | {:.1}× | {:.1e} | {} of {} | {} | {:.2} | {:.2} |",
        ms(r.secure),
        ms(r.plaintext),
        r.slowdown(),
        r.max_abs_err,
        r.failures,
        r.outputs,
        r.stats.rounds(),
        r.stats.total_bytes() as f64 / 1e6,
        cost::MUL_EXACT.bytes_for(r.outputs, DEFAULT_FRAC_BITS).iter().sum::<u64>() as f64 / 1e6
    );

    nonlinear(out, reps)?;
    nonlinear_costs(out)?;
    predictions(out, n, reps)
}

/// The non-linear section: secure ReLU and max pooling vs plaintext f32 in the same run, with rounds and bytes per
/// element per party measured beside the declared costs (both protocols are exact: outputs are compared in the ring).
fn nonlinear(out: Out, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per = |b: [f64; 3]| format!("{:.2}/{:.2}/{:.2}", b[0], b[1], b[2]);
    say!(out, "\n## Non-linear: secure vs plaintext f32 (median of {} runs)\n", reps.clamp(1, 3));
    say!(out, "| workload | secure ms | plaintext ms | ratio | wrong outputs | rounds measured | declared | bytes/elt/party measured | declared |");
    say!(out, "|---|---|---|---|---|---|---|---|---|");
    let session = Session::new(Config::default())?;
    let mut rng = rand::thread_rng();
    type Run<'a> = Box<dyn Fn(&mut rand::rngs::ThreadRng) -> crate::Result<workloads::NonlinearReport> + 'a>;
    let rows: Vec<(&str, Run)> = vec![
        ("ReLU, 2^20 elements", Box::new(|rng| workloads::relu(&session, 1 << 20, rng))),
        (
            "MaxPool 2×2 stride 2, [8, 64, 32, 32] (bytes per input element)",
            Box::new(|rng| workloads::max_pool(&session, [8, 64, 32, 32], 2, 2, rng)),
        ),
    ];
    for (name, run) in &rows {
        let mut runs = during(format!("bench: {name}"), || {
            (0..reps.clamp(1, 3)).map(|_| run(&mut rng)).collect::<Result<Vec<_>, _>>()
        })?;
        runs.sort_by_key(|r| r.secure);
        let r = &runs[runs.len() / 2];
        out.record(
            "nonlinear",
            json!({
                "workload": name, "secure_ms": ms(r.secure), "plaintext_ms": ms(r.plaintext), "ratio": r.slowdown(),
                "wrong_outputs": r.mismatches, "outputs": r.outputs, "rounds": r.stats.rounds(),
                "declared_rounds": r.declared_rounds, "bytes_per_element_per_party": r.bytes_per_elt(),
                "declared_bytes_per_element_per_party": r.declared_per_elt(),
            }),
        );
        say!(
            out,
            "| {name} | {:.0} | {:.2} | {:.0}× | {} of {} | {} | {} | {} | {} |",
            ms(r.secure),
            ms(r.plaintext),
            r.slowdown(),
            r.mismatches,
            r.outputs,
            r.stats.rounds(),
            r.declared_rounds,
            per(r.bytes_per_elt()),
            per(r.declared_per_elt())
        );
    }
    Ok(())
}

/// Rounds and bytes per element per party of DReLU and softmax over 10 classes, measured vs declared.
fn nonlinear_costs(out: Out) -> Result<(), Box<dyn std::error::Error>> {
    use crate::runtime::protocols::SignBits;
    say!(out, "\n## Non-linear: communication per element, measured vs declared (exact truncation)\n");
    say!(out, "| protocol | elements | rounds measured | declared | bytes/elt/party measured | declared |");
    say!(out, "|---|---|---|---|---|---|");
    let mut rng = rand::thread_rng();
    let per = |b: [u64; 3], n: usize| {
        format!("{:.2}/{:.2}/{:.2}", b[0] as f64 / n as f64, b[1] as f64 / n as f64, b[2] as f64 / n as f64)
    };
    let measure = |x: &crate::Tensor,
                   op: &(dyn Fn(&mut crate::Party, &crate::Share) -> crate::Result<()> + Sync)|
     -> crate::Result<[crate::Stats; 3]> {
        Session::new(Config::default())?.run(|p| {
            let xs = p.share_fixed(0, (p.id() == 0).then_some(x), x.shape())?;
            let before = p.total_stats();
            op(p, &xs)?;
            Ok(p.total_stats() - before)
        })
    };
    let n = 1 << 16;
    let x = workloads::random_tensor(&[n], 1.0, &mut rng)?;
    let st = measure(&x, &|p, xs| p.drelu(xs).map(|_| ()))?;
    let mut b = st.map(|s| s.bytes_sent);
    b.sort_unstable_by(|x, y| y.cmp(x));
    let bits = SignBits::default();
    out.record(
        "nonlinear_costs",
        json!({
            "protocol": "DReLU (64-bit range)", "elements": n, "rounds": st[0].rounds,
            "declared_rounds": cost::sign_rounds(bits), "bytes_per_party": b,
            "declared_bytes_per_party": cost::drelu_bytes(n, bits),
        }),
    );
    say!(
        out,
        "| DReLU (64-bit range) | {n} | {} | {} | {} | {} |",
        st[0].rounds,
        cost::sign_rounds(bits),
        per(b, n),
        per(cost::drelu_bytes(n, bits), n)
    );
    let (rows, m) = (1024, 10);
    let x = workloads::random_tensor(&[rows, m], 4.0, &mut rng)?;
    let st = measure(&x, &|p, xs| p.softmax(xs).map(|_| ()))?;
    let mut b = st.map(|s| s.bytes_sent);
    b.sort_unstable_by(|x, y| y.cmp(x));
    let declared = softmax::softmax_total_bytes(rows, m, 8, 20, TruncationMode::Exact);
    out.record(
        "nonlinear_costs",
        json!({
            "protocol": format!("softmax over {m} classes"), "elements": rows * m, "rounds": st[0].rounds,
            "declared_rounds": softmax::softmax_rounds(m, 8, TruncationMode::Exact), "bytes_per_party": b,
            "declared_total_bytes": declared,
        }),
    );
    say!(
        out,
        "| softmax over {m} classes | {} | {} | {} | {} (total {:.2}) | total {:.2} |",
        rows * m,
        st[0].rounds,
        softmax::softmax_rounds(m, 8, TruncationMode::Exact),
        per(b, rows * m),
        b.iter().sum::<u64>() as f64 / (rows * m) as f64,
        declared as f64 / (rows * m) as f64
    );
    Ok(())
}

/// The cost model's H100 prediction beside the CPU measurement, for each workload.
fn predictions(out: Out, n: usize, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    use crate::codegen::cost::{Link, H100_SXM};
    use crate::runtime::predict::predict;
    let measured = workloads::measure_loopback_link()?;
    say!(out, "\n## Cost model: predicted time on one {} per party vs measured on this CPU\n", H100_SXM.name);
    say!(out,
        "Links: LAN = {:.2} GB/s, {:.2} ms latency (assumed); loopback TCP here = {:.2} GB/s, {:.3} ms latency (measured).\n",
        Link::LAN_10G.bandwidth / 1e9,
        Link::LAN_10G.latency * 1e3,
        measured.bandwidth / 1e9,
        measured.latency * 1e3
    );
    say!(out, "| workload | CPU measured ms | H100 kernels ms | + LAN comm ms | = total ms | + loopback comm ms | = total ms |");
    say!(out, "|---|---|---|---|---|---|---|");
    type Workload = Box<dyn Fn(&Session) -> crate::Result<(Duration, crate::PartyStats)>>;
    let p = Conv2dParams { stride: 1, padding: 1 };
    let workloads: Vec<(String, Workload)> = vec![
        (
            format!("matmul {n}³"),
            Box::new(move |s| workloads::matmul(s, n, n, n, &mut rand::thread_rng()).map(|r| (r.secure, r.stats))),
        ),
        (
            "conv2d 64→64 3×3 32×32 ×8".into(),
            Box::new(move |s| {
                workloads::conv2d(s, 8, 64, 32, 64, 3, p, &mut rand::thread_rng()).map(|r| (r.secure, r.stats))
            }),
        ),
        ("LeNet linear layers, batch 1".into(), Box::new(|s| workloads::lenet_linear(s, 1, &mut rand::thread_rng()))),
        (
            "LeNet linear layers, batch 128".into(),
            Box::new(|s| workloads::lenet_linear(s, 128, &mut rand::thread_rng())),
        ),
    ];
    let session = Session::new(Config::default())?;
    let mut rows = Vec::new();
    for (name, run) in &workloads {
        let (cpu, (stats, launches, _)) = during(format!("bench: cost model prediction, {name}"), || {
            let cpu = median((0..reps.clamp(1, 3)).map(|_| run(&session).map(|r| r.0)).collect::<Result<_, _>>()?);
            Ok::<_, crate::Error>((cpu, workloads::recorded(Config::default(), |s| run(s).map(|r| r.1))?))
        })?;
        rows.push((name.clone(), cpu, launches, stats));
    }
    for (name, cpu, launches, stats) in rows {
        let lan = predict(&launches, &stats, &H100_SXM, &Link::LAN_10G);
        let local = predict(&launches, &stats, &H100_SXM, &measured);
        out.record(
            "prediction",
            json!({
                "workload": name, "cpu_measured_ms": cpu.as_secs_f64() * 1e3,
                "h100_kernels_ms": lan.compute_seconds * 1e3, "lan_comm_ms": lan.comm_seconds * 1e3,
                "lan_total_ms": lan.total_seconds() * 1e3, "loopback_comm_ms": local.comm_seconds * 1e3,
                "loopback_total_ms": local.total_seconds() * 1e3,
            }),
        );
        say!(
            out,
            "| {name} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            cpu.as_secs_f64() * 1e3,
            lan.compute_seconds * 1e3,
            lan.comm_seconds * 1e3,
            lan.total_seconds() * 1e3,
            local.comm_seconds * 1e3,
            local.total_seconds() * 1e3
        );
    }
    Ok(())
}

/// Secure matmul `n³` under exact and probabilistic truncation, interleaved: `pairs` pairs on the same inputs,
/// alternating which mode runs first; prints every pair, the medians and the ratio exact / probabilistic
/// (`cryptgpu bench --truncation-pairs N`).
pub fn truncation_pairs(n: usize, pairs: usize, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let out = Out { json };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut rng = rand::thread_rng();
    let (a, b) = (workloads::random_tensor(&[n, n], 1.0, &mut rng)?, workloads::random_tensor(&[n, n], 1.0, &mut rng)?);
    let reference = workloads::plain_matmul(&a, &b);
    let exact = Session::new(Config { truncation: TruncationMode::Exact, ..Config::default() })?;
    let probabilistic = Session::new(Config { truncation: TruncationMode::Probabilistic, ..Config::default() })?;
    let run = |session: &Session, mode: TruncationMode| {
        during(format!("bench: secure matmul {n}³, {mode:?} truncation"), || {
            workloads::run_secure(session, &a, &b, &|p, x, y| p.matmul(x, y), &reference, Duration::ZERO)
        })
        .map(|(_, r)| r)
    };
    // One warm-up run of each (page faults of first use, rayon start-up).
    run(&exact, TruncationMode::Exact)?;
    run(&probabilistic, TruncationMode::Probabilistic)?;
    say!(out, "\n## Secure matmul {n}³: exact vs probabilistic truncation, {pairs} interleaved pairs\n");
    say!(out, "| pair | order | exact ms | probabilistic ms | ratio |\n|---|---|---|---|---|");
    let mut rows = Vec::new();
    for i in 0..pairs {
        let exact_first = i % 2 == 0;
        let (e, p) = if exact_first {
            let e = run(&exact, TruncationMode::Exact)?;
            (e, run(&probabilistic, TruncationMode::Probabilistic)?)
        } else {
            let p = run(&probabilistic, TruncationMode::Probabilistic)?;
            (run(&exact, TruncationMode::Exact)?, p)
        };
        if e.failures > 0 {
            return Err(format!("exact truncation: {} of {} outputs wrong", e.failures, e.outputs).into());
        }
        let ratio = e.secure.as_secs_f64() / p.secure.as_secs_f64();
        let order = if exact_first { "exact first" } else { "probabilistic first" };
        out.record(
            "truncation_pair",
            json!({"size": n, "pair": i, "exact_first": exact_first, "exact_ms": ms(e.secure),
                   "probabilistic_ms": ms(p.secure), "ratio": ratio}),
        );
        say!(out, "| {i} | {order} | {:.0} | {:.0} | {ratio:.2}× |", ms(e.secure), ms(p.secure));
        rows.push((e.secure, p.secure));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let ratios: Vec<f64> = rows.iter().map(|(e, p)| e.as_secs_f64() / p.as_secs_f64()).collect();
    let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ratio = sorted[sorted.len() / 2];
    let me = median(rows.iter().map(|r| r.0).collect());
    let mp = median(rows.iter().map(|r| r.1).collect());
    out.record(
        "truncation_pairs",
        json!({"size": n, "pairs": pairs, "exact_median_ms": ms(me), "probabilistic_median_ms": ms(mp),
               "median_ratio": median_ratio, "min_ratio": lo, "max_ratio": hi}),
    );
    say!(
        out,
        "\nMedians: exact {:.0} ms, probabilistic {:.0} ms; ratio exact / probabilistic per pair: median {median_ratio:.2}×, range {lo:.2}–{hi:.2}×.",
        ms(me),
        ms(mp)
    );
    Ok(())
}
