//! Loopback throughput of the transports (a measurement, not a check): the mutual-TLS transport, plain TCP pumping
//! the same bytes, and the in-memory transport, for messages of 64 KiB, 1 MiB and 16 MiB, one direction (party 0 to
//! party 1, each in its own thread), plus the round trip of a 4-word message. Each figure is the median of
//! [`REPS`] measurements, the transports taking turns (so a busy machine slows them alike). Run:
//! `cargo test -p cryptgpu-runtime --release --test transport_throughput -- --ignored --nocapture`.

use cryptgpu_runtime::transport::tls::{connect_tls_on, PeerConfig, TlsIdentity, TlsTransport};
use cryptgpu_runtime::transport::{memory, Transport};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Bytes moved per message size and measurement (so every size takes a comparable time).
const TOTAL_BYTES: usize = 256 << 20;
/// Measurements per figure.
const REPS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(60);

fn tls_pair() -> [TlsTransport; 3] {
    let listeners: [TcpListener; 3] = core::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").unwrap());
    let addresses: [SocketAddr; 3] = core::array::from_fn(|i| listeners[i].local_addr().unwrap());
    let ids: [TlsIdentity; 3] = core::array::from_fn(|i| TlsIdentity::generate(i).unwrap());
    let certs = core::array::from_fn(|i| ids[i].cert_der.clone());
    let mut config = PeerConfig::new(addresses, certs, 1);
    config.timeout = TIMEOUT;
    let (ids, config) = (&ids, &config);
    let mut out: Vec<TlsTransport> = std::thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| s.spawn(move || connect_tls_on(i, &ids[i], config, l).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    core::array::from_fn(|_| out.remove(0))
}

/// Party 0 sends `count` messages of `words` words to party 1 through `a` and `b`: seconds from the start barrier
/// until the last one arrived.
fn one_way<T: Transport>(mut a: T, mut b: T, words: usize, count: usize) -> f64 {
    let msg: Vec<u64> = (0..words as u64).collect();
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            for _ in 0..count {
                a.send(1, msg.clone()).unwrap();
            }
            a.finish().unwrap();
        });
        let receiver = s.spawn(|| {
            barrier.wait();
            let start = Instant::now();
            for _ in 0..count {
                assert_eq!(b.recv(0).unwrap().len(), words);
            }
            start.elapsed().as_secs_f64()
        });
        receiver.join().unwrap()
    })
}

/// A connected plain TCP pair.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// Plain TCP moving the same bytes as the transports: a length word, then the words little-endian, encoded and
/// decoded through a 64 KiB buffer (no TLS, no frame header checks).
struct Tcp(TcpStream, Vec<u8>);

impl Transport for Tcp {
    fn send(&mut self, _to: usize, words: Vec<u64>) -> cryptgpu_runtime::Result<()> {
        self.0.write_all(&(words.len() as u64).to_le_bytes()).unwrap();
        for chunk in words.chunks(self.1.len() / 8) {
            for (b, w) in self.1.chunks_exact_mut(8).zip(chunk) {
                b.copy_from_slice(&w.to_le_bytes());
            }
            self.0.write_all(&self.1[..chunk.len() * 8]).unwrap();
        }
        Ok(())
    }
    fn recv(&mut self, _from: usize) -> cryptgpu_runtime::Result<Vec<u64>> {
        let mut len = [0u8; 8];
        self.0.read_exact(&mut len).unwrap();
        let n = u64::from_le_bytes(len) as usize;
        let mut words = Vec::with_capacity(n);
        while words.len() < n {
            let take = (n - words.len()).min(self.1.len() / 8);
            self.0.read_exact(&mut self.1[..take * 8]).unwrap();
            words.extend(self.1[..take * 8].chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())));
        }
        Ok(words)
    }
}

fn tcp() -> (Tcp, Tcp) {
    let (a, b) = tcp_pair();
    (Tcp(a, vec![0; 64 << 10]), Tcp(b, vec![0; 64 << 10]))
}

/// Round trips of a 4-word message between party 0 and party 1: microseconds each.
fn ping<T: Transport>(mut a: T, mut b: T, rounds: usize) -> f64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..rounds {
                let m = b.recv(0).unwrap();
                b.send(0, m).unwrap();
            }
        });
        let start = Instant::now();
        for r in 0..rounds {
            a.send(1, vec![r as u64; 4]).unwrap();
            assert_eq!(a.recv(1).unwrap(), vec![r as u64; 4]);
        }
        start.elapsed().as_secs_f64() * 1e6 / rounds as f64
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
#[ignore]
fn throughput() {
    let memory = || {
        let [a, b, c] = memory::connect(TIMEOUT, Arc::new(AtomicBool::new(false)));
        std::mem::forget(c); // party 2 stays connected, idle
        (a, b)
    };
    let tls = || {
        let [a, b, c] = tls_pair();
        std::mem::forget(c); // party 2 stays connected, idle
        (a, b)
    };
    println!("| message | TLS GB/s | plain TCP GB/s | in-memory GB/s | TLS / TCP |");
    println!("|---|---|---|---|---|");
    for bytes in [64 << 10, 1 << 20, 16 << 20] {
        let (words, count) = (bytes / 8, TOTAL_BYTES / bytes);
        let gb = (bytes * count) as f64 / 1e9;
        let (mut t, mut p, mut m) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPS {
            let (a, b) = tls();
            t.push(gb / one_way(a, b, words, count));
            let (a, b) = tcp();
            p.push(gb / one_way(a, b, words, count));
            let (a, b) = memory();
            m.push(gb / one_way(a, b, words, count));
        }
        let (t, p, m) = (median(t), median(p), median(m));
        println!("| {} KiB | {t:.2} | {p:.2} | {m:.2} | {:.2} |", bytes >> 10, t / p);
    }
    let rounds = 2000;
    let (mut t, mut p, mut m) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        let (a, b) = tls();
        t.push(ping(a, b, rounds));
        let (a, b) = tcp();
        p.push(ping(a, b, rounds));
        let (a, b) = memory();
        m.push(ping(a, b, rounds));
    }
    let (t, p, m) = (median(t), median(p), median(m));
    println!("| 4-word round trip | {t:.1} µs | {p:.1} µs | {m:.1} µs | {:.2} |", t / p);
}
