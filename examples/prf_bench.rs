//! PRF measurements: the raw throughput of AES-128-CTR and ChaCha20 as the CPU backend draws stream words, and the
//! time of a secure ReLU over 2^20 elements (the project's stream implementation, `cryptgpu_runtime::prg`).
//!
//! `cargo run --release --example prf_bench -- ciphers` prints words per second of both ciphers (one thread) for
//! bulk generation (one call for 2^20 consecutive words), the CPU backend's pattern (a fresh cipher seeked to each
//! 1 024-word chunks, as the CPU backend's map interpreter draws them) and random access (one word per fresh cipher,
//! the GPU kernels' pattern), then the project's `Stream::fill` in the backend's pattern;
//! `cargo run --release --example prf_bench -- relu 5` times five secure ReLUs over 2^20 elements.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use cryptgpu::runtime::prg::{PrfKey, Purpose, Stream};
use cryptgpu::runtime::{Config, Session};
use std::time::{Duration, Instant};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Elements of the workloads (2^20).
const N: usize = 1 << 20;
/// Words per chunk of the CPU backend's map interpreter.
const CHUNK: usize = 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.get(1).map(|r| r.parse()).transpose()?.unwrap_or(5);
    match args.first().map(String::as_str) {
        Some("ciphers") => ciphers(reps),
        Some("relu") => relu(reps)?,
        _ => return Err("usage: prf_bench ciphers|relu [reps]".into()),
    }
    Ok(())
}

/// Fill `out` with keystream words from a cipher seeked to word `first`.
fn fill<C: StreamCipher + StreamCipherSeek>(mut c: C, first: u64, out: &mut [u64]) {
    c.seek(first * 8);
    let bytes: &mut [u8] = bytemuck_words(out);
    bytes.fill(0);
    c.apply_keystream(bytes);
}

/// The bytes of a word slice (u64 has no padding and any byte pattern is a valid u64).
fn bytemuck_words(w: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding, alignment of u8 is 1, the length covers exactly the words.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), w.len() * 8) }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median over `reps` of `f`'s time, as million words per second for `words` words.
fn rate(reps: usize, words: usize, mut f: impl FnMut()) -> String {
    f();
    let t = median(
        (0..reps)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .collect(),
    );
    let mw = words as f64 / t.as_secs_f64() / 1e6;
    format!("{mw:.0} Mword/s ({:.2} GB/s)", mw * 8.0 / 1e3)
}

fn ciphers(reps: usize) {
    let key = [7u8; 32];
    let nonce = [3u8; 12];
    let aes = || {
        Aes128Ctr::new(key[..16].into(), &{
            let mut iv = [0u8; 16];
            iv[..12].copy_from_slice(&nonce);
            iv.into()
        })
    };
    let cha = || chacha20::ChaCha20::new(&key.into(), &nonce.into());
    let mut out = vec![0u64; N];
    let few = 1 << 14;
    println!("| pattern | AES-128-CTR | ChaCha20 |\n|---|---|---|");
    let a = rate(reps, N, || fill(aes(), 0, &mut out));
    let c = rate(reps, N, || fill(cha(), 0, &mut out));
    println!("| bulk, 2^20 consecutive words | {a} | {c} |");
    let a = rate(reps, N, || out.chunks_mut(CHUNK).enumerate().for_each(|(j, o)| fill(aes(), (j * CHUNK) as u64, o)));
    let c = rate(reps, N, || out.chunks_mut(CHUNK).enumerate().for_each(|(j, o)| fill(cha(), (j * CHUNK) as u64, o)));
    println!("| fresh cipher per 1 024-word chunk (CPU backend) | {a} | {c} |");
    let a = rate(reps, few, || out[..few].chunks_mut(1).enumerate().for_each(|(j, o)| fill(aes(), j as u64, o)));
    let c = rate(reps, few, || out[..few].chunks_mut(1).enumerate().for_each(|(j, o)| fill(cha(), j as u64, o)));
    println!("| one word per fresh cipher (random access) | {a} | {c} |");
    let s = Stream::new(PrfKey(key), Purpose::ZeroShare, 1);
    let r = rate(reps, N, || out.chunks_mut(CHUNK).enumerate().for_each(|(j, o)| s.fill((j * CHUNK) as u64, o)));
    println!("\nThe project's prg::Stream::fill, 1 024-word chunks, one thread: {r}");
}

fn relu(reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    let session = Session::new(Config::default())?;
    let mut rng = rand::thread_rng();
    let mut times = Vec::new();
    for _ in 0..reps {
        let r = cryptgpu::workloads::relu(&session, N, &mut rng)?;
        assert_eq!(r.mismatches, 0, "ReLU gave wrong outputs");
        times.push(r.secure);
    }
    let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1e3)).collect();
    println!("ReLU 2^20 secure ms: {} (median {:.0})", ms.join(" "), median(times).as_secs_f64() * 1e3);
    Ok(())
}
