//! The paper's linear workloads, shared by the example, the `cryptgpu` CLI and the benchmarks: random inputs, a
//! plaintext reference, the secure run, and a report with error, time and communication.

use crate::{Conv2dParams, PartyStats, Result, RingTensor, Session, Tensor};
use rand::Rng;
use std::time::{Duration, Instant};

/// An output error above this (inputs are in [-1, 1]) is a truncation failure, not rounding.
pub const FAILURE_THRESHOLD: f64 = 1.0;

/// What a secure run of a workload measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Wall time of the secure computation (sharing and revealing excluded).
    pub secure: Duration,
    /// Wall time of the plaintext f32 computation of the same shape, same machine, same run.
    pub plaintext: Duration,
    /// Communication of the secure computation.
    pub stats: PartyStats,
    /// Largest absolute error of the revealed result against the f64 plaintext reference, failures excluded.
    pub max_abs_err: f64,
    /// Outputs off by more than [`FAILURE_THRESHOLD`]: wrap failures of the probabilistic truncation, which
    /// happen with probability (|z| + 1)/2^64 per output for a pre-truncation value z.
    pub failures: usize,
    /// Mean absolute error against the f64 plaintext reference.
    pub mean_abs_err: f64,
    /// Number of output elements.
    pub outputs: usize,
}

impl Report {
    /// Secure time over plaintext time.
    pub fn slowdown(&self) -> f64 {
        self.secure.as_secs_f64() / self.plaintext.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  error vs plaintext : max {:.3e}, mean {:.3e} over {} outputs",
            self.max_abs_err, self.mean_abs_err, self.outputs
        )?;
        writeln!(f, "  communication      : {}", self.stats)?;
        write!(
            f,
            "  time               : secure {:.3} s, plaintext f32 {:.4} s, ratio {:.1}×",
            self.secure.as_secs_f64(),
            self.plaintext.as_secs_f64(),
            self.slowdown()
        )
    }
}

/// The class with the largest score (the first one on ties); a NaN counts as the largest, as in `torch.argmax`, so
/// a NaN score is never passed over for a finite one.
pub fn argmax(scores: &[f64]) -> usize {
    if let Some(i) = scores.iter().position(|x| x.is_nan()) {
        return i;
    }
    scores.iter().enumerate().fold(0, |best, (i, x)| if *x > scores[best] { i } else { best })
}

/// `‖private − plain‖₂ / ‖plain‖₂`, the relative error of one sample's logits.
pub fn relative_error(private: &[f64], plain: &[f64]) -> f64 {
    let diff = private.iter().zip(plain).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    diff / plain.iter().map(|b| b * b).sum::<f64>().sqrt().max(1e-12)
}

/// A tensor of `shape` with entries uniform in `[-bound, bound]`; [`crate::Error::Overflow`] when the element
/// count overflows `usize` (callers check it against the session's `max_elements` first: [`check_sizes`]).
pub fn random_tensor(shape: &[usize], bound: f64, rng: &mut impl Rng) -> Result<Tensor> {
    let n = crate::runtime::tensor::checked_product("random tensor", shape)?;
    Tensor::new(shape, (0..n).map(|_| rng.gen_range(-bound..=bound)).collect())
}

/// Refuse, before anything is allocated, a run of `graph` on `batch` samples whose input or some layer's output
/// (`batch ×` its per-sample size) overflows `usize` or exceeds `max_elements` (the sessions' `Config::max_elements`).
pub fn check_model_batch(graph: &crate::dsl::Graph, batch: usize, max_elements: usize) -> Result<()> {
    let per_sample = std::iter::once(("input", graph.input_shape()))
        .chain(graph.layers().iter().map(|l| (l.name.as_str(), l.output.as_slice())));
    for (name, shape) in per_sample {
        let mut full = vec![batch];
        full.extend_from_slice(shape);
        let what = format!("{} `{name}` on a batch of {batch}", graph.name());
        let elements = crate::runtime::tensor::checked_product(&what, &full)?;
        if elements > max_elements {
            return Err(crate::Error::TooLarge { what, elements, limit: max_elements });
        }
    }
    Ok(())
}

/// Plaintext `a (m×k) · b (k×n)` in f64 (the reference).
pub fn plain_matmul(a: &Tensor, b: &Tensor) -> Tensor {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let mut c = vec![0f64; m * n];
    // SAFETY: the slices hold m·k, k·n and m·n elements with the row-major strides given.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.data().as_ptr(),
            k as isize,
            1,
            b.data().as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Tensor::new(&[m, n], c).expect("m·n")
}

/// Time of one f32 GEMM `m×k · k×n` (the plaintext baseline).
pub fn time_f32_gemm(m: usize, k: usize, n: usize) -> Duration {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let start = Instant::now();
    // SAFETY: as in plain_matmul.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    let t = start.elapsed();
    std::hint::black_box(&c);
    t
}

/// im2col of a real batch `[N, C, H, W]`: the `(C·kh·kw) × (N·OH·OW)` matrix of a convolution.
fn plain_im2col(x: &Tensor, kk: usize, p: Conv2dParams) -> (Vec<f64>, usize, usize) {
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let oh = (h + 2 * p.padding - kk) / p.stride + 1;
    let ow = (w + 2 * p.padding - kk) / p.stride + 1;
    let cols = n * oh * ow;
    let mut out = vec![0f64; c * kk * kk * cols];
    for ci in 0..c {
        for i in 0..kk {
            for j in 0..kk {
                let row = (ci * kk + i) * kk + j;
                for ni in 0..n {
                    for y in 0..oh {
                        for xq in 0..ow {
                            let (hh, ww) = (
                                (y * p.stride + i) as isize - p.padding as isize,
                                (xq * p.stride + j) as isize - p.padding as isize,
                            );
                            if hh >= 0 && ww >= 0 && (hh as usize) < h && (ww as usize) < w {
                                out[row * cols + (ni * oh + y) * ow + xq] =
                                    x.data()[((ni * c + ci) * h + hh as usize) * w + ww as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, oh, ow)
}

/// Plaintext convolution in f64 (the reference): output `[N, Co, OH, OW]`.
pub fn plain_conv2d(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Tensor {
    let (n, co, kk) = (x.shape()[0], w.shape()[0], w.shape()[2]);
    let (cols, oh, ow) = plain_im2col(x, kk, p);
    let k = w.len() / co;
    let m = Tensor::new(&[co, k], w.data().to_vec()).expect("weights");
    let colt = Tensor::new(&[k, n * oh * ow], cols).expect("cols");
    let y = plain_matmul(&m, &colt);
    let mut out = vec![0f64; n * co * oh * ow];
    for o in 0..co {
        for ni in 0..n {
            let src = &y.data()[o * n * oh * ow + ni * oh * ow..][..oh * ow];
            out[(ni * co + o) * oh * ow..][..oh * ow].copy_from_slice(src);
        }
    }
    Tensor::new(&[n, co, oh, ow], out).expect("shape")
}

/// Time of a plaintext f32 convolution of the same shape (im2col + sgemm).
pub fn time_f32_conv2d(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Duration {
    let x32: Vec<f32> = x.data().iter().map(|&v| v as f32).collect();
    let start = Instant::now();
    let (cols, oh, ow) = plain_im2col_f32(&x32, x.shape(), w.shape()[2], p);
    let im2col = start.elapsed();
    std::hint::black_box(&cols);
    let (co, k) = (w.shape()[0], w.len() / w.shape()[0]);
    im2col + time_f32_gemm(co, k, x.shape()[0] * oh * ow)
}

fn plain_im2col_f32(x: &[f32], shape: &[usize], kk: usize, p: Conv2dParams) -> (Vec<f32>, usize, usize) {
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let oh = (h + 2 * p.padding - kk) / p.stride + 1;
    let ow = (w + 2 * p.padding - kk) / p.stride + 1;
    let cols = n * oh * ow;
    let mut out = vec![0f32; c * kk * kk * cols];
    for (row, dst) in out.chunks_mut(cols).enumerate() {
        let (ci, i, j) = (row / (kk * kk), row / kk % kk, row % kk);
        for ni in 0..n {
            for y in 0..oh {
                let hh = (y * p.stride + i) as isize - p.padding as isize;
                if hh < 0 || hh as usize >= h {
                    continue;
                }
                for xq in 0..ow {
                    let ww = (xq * p.stride + j) as isize - p.padding as isize;
                    if ww >= 0 && (ww as usize) < w {
                        dst[(ni * oh + y) * ow + xq] = x[((ni * c + ci) * h + hh as usize) * w + ww as usize];
                    }
                }
            }
        }
    }
    (out, oh, ow)
}

/// (max, mean, failures): max and mean absolute error over the outputs within [`FAILURE_THRESHOLD`], and the
/// number of outputs beyond it.
fn errors(got: &Tensor, want: &Tensor) -> (f64, f64, usize) {
    let diffs: Vec<f64> = got.data().iter().zip(want.data()).map(|(g, w)| (g - w).abs()).collect();
    let ok: Vec<f64> = diffs.iter().copied().filter(|&d| d <= FAILURE_THRESHOLD).collect();
    let max = ok.iter().copied().fold(0.0, f64::max);
    (max, ok.iter().sum::<f64>() / ok.len().max(1) as f64, diffs.len() - ok.len())
}

/// A binary secure operation on shares.
pub type SecureOp<'a> = &'a (dyn Fn(&mut crate::Party, &crate::Share, &crate::Share) -> Result<crate::Share> + Sync);

/// Share `a` (owned by party 0) and `b` (owned by party 1), time `op` on the shares, reveal the result to all,
/// and report it against `reference` and the plaintext time `plaintext`.
pub fn run_secure(
    session: &Session,
    a: &Tensor,
    b: &Tensor,
    op: SecureOp<'_>,
    reference: &Tensor,
    plaintext: Duration,
) -> Result<(Tensor, Report)> {
    let out = session.run(|p| {
        let xa = p.share_fixed(0, (p.id() == 0).then_some(a), a.shape())?;
        let xb = p.share_fixed(1, (p.id() == 1).then_some(b), b.shape())?;
        // Start together: a one-word reveal is a barrier (every party waits for a message from a peer that has
        // finished sharing).
        let sync = p.share(2, (p.id() == 2).then(|| RingTensor::new(&[1], vec![0]).expect("one")).as_ref(), &[1])?;
        p.reveal(&sync)?;
        let before = p.total_stats();
        let start = Instant::now();
        let y = op(p, &xa, &xb)?;
        let secure = start.elapsed();
        let spent = p.total_stats() - before;
        Ok((p.reveal_fixed(&y)?, secure, spent))
    })?;
    let secure = out.iter().map(|o| o.1).max().unwrap_or_default();
    let stats = PartyStats([out[0].2, out[1].2, out[2].2]);
    let [(value, _, _), _, _] = out;
    let (max_abs_err, mean_abs_err, failures) = errors(&value, reference);
    let outputs = value.len();
    Ok((value, Report { secure, plaintext, stats, max_abs_err, mean_abs_err, failures, outputs }))
}

/// Secure `a (m×k) · b (k×n)` on random inputs in `[-1, 1]`.
pub fn matmul(session: &Session, m: usize, k: usize, n: usize, rng: &mut impl Rng) -> Result<Report> {
    check_sizes(session, &[("matmul A", &[m, k]), ("matmul B", &[k, n]), ("matmul output", &[m, n])])?;
    let (a, b) = (random_tensor(&[m, k], 1.0, rng)?, random_tensor(&[k, n], 1.0, rng)?);
    let reference = plain_matmul(&a, &b);
    let plaintext = time_f32_gemm(m, k, n);
    Ok(run_secure(session, &a, &b, &|p, x, y| p.matmul(x, y), &reference, plaintext)?.1)
}

/// Refuse, before anything is allocated, a plaintext tensor whose element count overflows `usize` or exceeds the
/// session's `max_elements`.
fn check_sizes(session: &Session, tensors: &[(&str, &[usize])]) -> Result<()> {
    for &(what, shape) in tensors {
        session.check_size(what, crate::runtime::tensor::checked_product(what, shape)?)?;
    }
    Ok(())
}

/// Secure convolution of a random batch `[n, c, hw, hw]` (entries in `[-1, 1]`) with random `co × c × kk × kk`
/// weights (entries in `[-0.1, 0.1]`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    session: &Session,
    n: usize,
    c: usize,
    hw: usize,
    co: usize,
    kk: usize,
    params: Conv2dParams,
    rng: &mut impl Rng,
) -> Result<Report> {
    check_sizes(session, &[("conv2d input", &[n, c, hw, hw]), ("conv2d weights", &[co, c, kk, kk])])?;
    let x = random_tensor(&[n, c, hw, hw], 1.0, rng)?;
    let w = random_tensor(&[co, c, kk, kk], 0.1, rng)?;
    let reference = plain_conv2d(&x, &w, params);
    let plaintext = time_f32_conv2d(&x, &w, params);
    Ok(run_secure(session, &x, &w, &|p, x, w| p.conv2d(x, w, None, params), &reference, plaintext)?.1)
}

/// Run `f` on a fresh session whose CPU backend records every kernel launch; return its result, the launches and
/// the session's communication.
pub fn recorded<R>(
    config: crate::Config,
    f: impl FnOnce(&Session) -> Result<R>,
) -> Result<(R, Vec<crate::runtime::backend::recording::RecordedLaunch>, PartyStats)> {
    use crate::runtime::backend::{cpu::CpuBackend, recording::RecordingBackend};
    let rec = std::sync::Arc::new(RecordingBackend::new(std::sync::Arc::new(CpuBackend)));
    let session = Session::with_backend(config, rec.clone())?;
    let r = f(&session)?;
    Ok((r, rec.take(), session.stats()))
}

/// LeNet's linear layers on a random batch of `batch` 28×28 images, private end to end: conv 1→20 (5×5), average
/// pool 2, conv 20→50 (5×5), average pool 2, flatten, linear 800→500, linear 500→10. (The ReLUs between them come
/// with the non-linear protocols.) Returns the wall time of the secure layers and their communication.
pub fn lenet_linear(session: &Session, batch: usize, rng: &mut impl Rng) -> Result<(Duration, PartyStats)> {
    check_sizes(session, &[("LeNet input", &[batch, 1, 28, 28]), ("LeNet conv1 output", &[batch, 20, 24, 24])])?;
    let x = random_tensor(&[batch, 1, 28, 28], 1.0, rng)?;
    let w1 = random_tensor(&[20, 1, 5, 5], 0.2, rng)?;
    let w2 = random_tensor(&[50, 20, 5, 5], 0.05, rng)?;
    let f1 = random_tensor(&[800, 500], 0.035, rng)?;
    let f2 = random_tensor(&[500, 10], 0.045, rng)?;
    let out = session.run(|p| {
        let own = |p: &mut crate::Party, owner: usize, t: &Tensor| {
            p.share_fixed(owner, (p.id() == owner).then_some(t), t.shape())
        };
        let xs = own(p, 0, &x)?;
        let ws = [own(p, 1, &w1)?, own(p, 1, &w2)?, own(p, 1, &f1)?, own(p, 1, &f2)?];
        let before = p.total_stats();
        let start = Instant::now();
        let pool = Conv2dParams { stride: 2, padding: 0 };
        let h = p.conv2d(&xs, &ws[0], None, Conv2dParams::default())?;
        let h = p.avg_pool2d(&h, [2, 2], pool)?;
        let h = p.conv2d(&h, &ws[1], None, Conv2dParams::default())?;
        let h = p.avg_pool2d(&h, [2, 2], pool)?;
        let h = h.reshaped(&[batch, 800]).expect("50·4·4 = 800");
        let h = p.matmul(&h, &ws[2])?;
        let y = p.matmul(&h, &ws[3])?;
        let elapsed = start.elapsed();
        let spent = p.total_stats() - before;
        p.reveal(&y)?;
        Ok((elapsed, spent))
    })?;
    let secure = out.iter().map(|o| o.0).max().unwrap_or_default();
    Ok((secure, PartyStats([out[0].1, out[1].1, out[2].1])))
}

/// Measure a TCP connection over loopback (what two parties on this host would have): bandwidth from a 128 MiB
/// transfer, latency from 200 one-byte round trips (half of each).
pub fn measure_loopback_link() -> std::io::Result<crate::codegen::cost::Link> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    const BYTES: usize = 128 << 20;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < BYTES {
            got += s.read(&mut buf)?;
        }
        s.write_all(&[1])?;
        let mut b = [0u8; 1];
        for _ in 0..200 {
            s.read_exact(&mut b)?;
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..BYTES >> 20 {
        c.write_all(&chunk)?;
    }
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack)?;
    let bandwidth = BYTES as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..200 {
        c.write_all(&ack)?;
        c.read_exact(&mut ack)?;
    }
    let latency = start.elapsed().as_secs_f64() / 400.0;
    server.join().map_err(|_| std::io::Error::other("link measurement thread panicked"))??;
    Ok(crate::codegen::cost::Link { bandwidth, latency })
}

/// What a secure run of a non-linear workload measured (exact protocols: the result is compared bit for bit).
#[derive(Debug, Clone)]
pub struct NonlinearReport {
    /// Wall time of the secure computation (sharing and revealing excluded).
    pub secure: Duration,
    /// Wall time of the plaintext f32 computation of the same shape, same machine, same run.
    pub plaintext: Duration,
    /// Communication of the secure computation.
    pub stats: PartyStats,
    /// Declared rounds.
    pub declared_rounds: u64,
    /// Declared bytes per party, largest first.
    pub declared_bytes: [u64; 3],
    /// Input elements.
    pub elements: usize,
    /// Output elements.
    pub outputs: usize,
    /// Outputs that differ from the plaintext reference in the ring.
    pub mismatches: usize,
}

impl NonlinearReport {
    /// Secure time over plaintext time.
    pub fn slowdown(&self) -> f64 {
        self.secure.as_secs_f64() / self.plaintext.as_secs_f64().max(1e-9)
    }
    /// Measured bytes per input element per party, largest first.
    pub fn bytes_per_elt(&self) -> [f64; 3] {
        let mut b = self.stats.bytes();
        b.sort_unstable_by(|x, y| y.cmp(x));
        b.map(|v| v as f64 / self.elements as f64)
    }
    /// Declared bytes per input element per party, largest first.
    pub fn declared_per_elt(&self) -> [f64; 3] {
        self.declared_bytes.map(|v| v as f64 / self.elements as f64)
    }
}

/// Share `x` (party 0), time `op` on the share, reveal the result; returns it with the time and communication.
fn run_unary(
    session: &Session,
    x: &Tensor,
    op: &(dyn Fn(&mut crate::Party, &crate::Share) -> Result<crate::Share> + Sync),
) -> Result<(RingTensor, Duration, PartyStats)> {
    let out = session.run(|p| {
        let xs = p.share_fixed(0, (p.id() == 0).then_some(x), x.shape())?;
        let sync = p.share(2, (p.id() == 2).then(|| RingTensor::new(&[1], vec![0]).expect("one")).as_ref(), &[1])?;
        p.reveal(&sync)?;
        let before = p.total_stats();
        let start = Instant::now();
        let y = op(p, &xs)?;
        let secure = start.elapsed();
        let spent = p.total_stats() - before;
        Ok((p.reveal(&y)?, secure, spent))
    })?;
    let secure = out.iter().map(|o| o.1).max().unwrap_or_default();
    let stats = PartyStats([out[0].2, out[1].2, out[2].2]);
    let [(value, _, _), _, _] = out;
    Ok((value, secure, stats))
}

/// The bound the ReLU workload declares: its values lie in `[−1, 1]`, i.e. `|x| < 2^40` in the ring at any `t` up to
/// 39, so its sign circuit reads 40 bits (10 digits).
pub const RELU_WORKLOAD_BOUND_BITS: u32 = 40;

/// Secure ReLU of `n` random values in `[-1, 1]` against plaintext f32 ReLU (and the exact ring reference), over the
/// sign range of the declared bound [`RELU_WORKLOAD_BOUND_BITS`].
pub fn relu(session: &Session, n: usize, rng: &mut impl Rng) -> Result<NonlinearReport> {
    use crate::runtime::protocols::{cost, SignBits};
    let x = random_tensor(&[n], 1.0, rng)?;
    let enc = x.encode(&session.fixed())?;
    let x32: Vec<f32> = x.data().iter().map(|&v| v as f32).collect();
    let start = Instant::now();
    let y32: Vec<f32> = x32.iter().map(|&v| v.max(0.0)).collect();
    let plaintext = start.elapsed();
    std::hint::black_box(&y32);
    let bits = SignBits::for_bound(RELU_WORKLOAD_BOUND_BITS)?;
    let (y, secure, stats) = run_unary(session, &x, &|p, xs| Ok(p.relu_with_mask(xs, bits)?.0))?;
    let mismatches =
        y.data().iter().zip(enc.data()).filter(|(&g, &v)| g != if (v as i64) >= 0 { v } else { 0 }).count();
    Ok(NonlinearReport {
        secure,
        plaintext,
        stats,
        declared_rounds: cost::relu_rounds_for(bits),
        declared_bytes: cost::relu_bytes(n, bits),
        elements: n,
        outputs: n,
        mismatches,
    })
}

/// Plaintext max pooling of `x` `[N, C, H, W]` (no padding), in whatever element type.
fn plain_max_pool<T: Copy + PartialOrd>(x: &[T], [n, c, h, w]: [usize; 4], k: usize, s: usize) -> Vec<T> {
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in x.chunks(h * w).take(n * c) {
        for y in 0..oh {
            for xq in 0..ow {
                let mut best = plane[y * s * w + xq * s];
                for i in 0..k {
                    for j in 0..k {
                        let v = plane[(y * s + i) * w + xq * s + j];
                        if v > best {
                            best = v;
                        }
                    }
                }
                out.push(best);
            }
        }
    }
    out
}

/// Secure `k × k` max pooling with stride `stride` (no padding) of a random batch `shape` (entries in `[-1, 1]`)
/// against plaintext f32 max pooling (and the exact ring reference).
pub fn max_pool(
    session: &Session,
    shape: [usize; 4],
    k: usize,
    stride: usize,
    rng: &mut impl Rng,
) -> Result<NonlinearReport> {
    use crate::runtime::protocols::cost;
    let x = random_tensor(&shape, 1.0, rng)?;
    let enc = x.encode(&session.fixed())?;
    let x32: Vec<f32> = x.data().iter().map(|&v| v as f32).collect();
    let start = Instant::now();
    let y32 = plain_max_pool(&x32, shape, k, stride);
    let plaintext = start.elapsed();
    std::hint::black_box(&y32);
    let signed: Vec<i64> = enc.data().iter().map(|&v| v as i64).collect();
    let want = plain_max_pool(&signed, shape, k, stride);
    let params = Conv2dParams { stride, padding: 0 };
    let (y, secure, stats) = run_unary(session, &x, &|p, xs| p.max_pool2d(xs, [k, k], params))?;
    let mismatches = y.data().iter().zip(&want).filter(|(&g, &v)| g as i64 != v).count();
    Ok(NonlinearReport {
        secure,
        plaintext,
        stats,
        declared_rounds: cost::max_rounds(k * k),
        declared_bytes: cost::max_bytes(k * k, want.len()),
        elements: x.len(),
        outputs: want.len(),
        mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_never_passes_over_a_nan() {
        assert_eq!(argmax(&[0.1, 3.0, -2.0, 3.0]), 1);
        assert_eq!(argmax(&[0.1, 3.0, f64::NAN, 5.0]), 2);
        assert_eq!(argmax(&[f64::NAN, 3.0]), 0);
    }
}
