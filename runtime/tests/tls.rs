//! The mutual-TLS transport on loopback: three parties in three threads, pinned certificates, faults, framing.

use cryptgpu_runtime::transport::frame::{self, FrameDecoder, Kind};
use cryptgpu_runtime::transport::tls::{connect_tls_on, PeerConfig, TlsIdentity, TlsTransport};
use cryptgpu_runtime::transport::Transport;
use cryptgpu_runtime::{Config, Error, RingTensor, Session};
use proptest::prelude::*;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: u32 = 20;

/// Three listeners on ephemeral loopback ports, three identities, and the config that pins them.
fn setup(timeout: Duration) -> ([TcpListener; 3], [TlsIdentity; 3], PeerConfig) {
    let listeners: [TcpListener; 3] = core::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").unwrap());
    let addresses: [SocketAddr; 3] = core::array::from_fn(|i| listeners[i].local_addr().unwrap());
    let ids: [TlsIdentity; 3] = core::array::from_fn(|i| TlsIdentity::generate(i).unwrap());
    let certs = core::array::from_fn(|i| ids[i].cert_der.clone());
    let mut config = PeerConfig::new(addresses, certs, rand::random());
    config.timeout = timeout;
    (listeners, ids, config)
}

/// Connect the three parties in three threads; party `i` uses `identities[i]` (possibly not the pinned one).
fn connect_all(
    listeners: [TcpListener; 3],
    identities: &[TlsIdentity; 3],
    config: &PeerConfig,
) -> [cryptgpu_runtime::Result<TlsTransport>; 3] {
    let mut out: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| s.spawn(move || connect_tls_on(i, &identities[i], config, l)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    core::array::from_fn(|_| out.remove(0))
}

fn fixed(rng: &mut impl rand::Rng, n: usize, bits: u32) -> Vec<i64> {
    (0..n).map(|_| rng.gen_range(-(1i64 << bits)..(1i64 << bits))).collect()
}

fn ring(v: &[i64]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

/// A private mul and matmul: the revealed results of each party.
fn mul_and_matmul(s: &Session, x: &RingTensor, y: &RingTensor, a: &RingTensor, b: &RingTensor) -> Vec<Vec<u64>> {
    let out = s
        .run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(x), x.shape())?;
            let ys = p.share(1, (p.id() == 1).then_some(y), y.shape())?;
            let z = p.mul(&xs, &ys)?;
            let as_ = p.share(2, (p.id() == 2).then_some(a), a.shape())?;
            let bs = p.share(0, (p.id() == 0).then_some(b), b.shape())?;
            let c = p.matmul(&as_, &bs)?;
            Ok((p.reveal(&z)?, p.reveal(&c)?))
        })
        .unwrap();
    out.iter().flat_map(|(z, c)| [z.data().to_vec(), c.data().to_vec()]).collect()
}

#[test]
fn three_parties_over_mutual_tls_match_the_in_memory_session() {
    let (listeners, ids, peers) = setup(Duration::from_secs(20));
    let transports = connect_all(listeners, &ids, &peers).map(|t| t.unwrap());
    let abort = Arc::new(AtomicBool::new(false));
    let nets = transports.map(|t| Box::new(t.with_abort_flag(abort.clone())) as Box<dyn Transport>);
    let config = Config { insecure_test_seed: Some(7), ..Config::default() };
    let tls = Session::with_transports(config.clone(), nets, abort).unwrap();
    let memory = Session::new(config).unwrap();

    let mut rng = rand::thread_rng();
    let (m, k, n) = (5, 33, 7);
    let (xv, yv) = (fixed(&mut rng, 64, T + 8), fixed(&mut rng, 64, T + 1));
    let (av, bv) = (fixed(&mut rng, m * k, T + 3), fixed(&mut rng, k * n, T + 3));
    let x = RingTensor::new(&[8, 8], ring(&xv)).unwrap();
    let y = RingTensor::new(&[8, 8], ring(&yv)).unwrap();
    let a = RingTensor::new(&[m, k], ring(&av)).unwrap();
    let b = RingTensor::new(&[k, n], ring(&bv)).unwrap();
    for _ in 0..2 {
        // Twice: the second run starts after the first run's end-of-program frames.
        let got = mul_and_matmul(&tls, &x, &y, &a, &b);
        let want = mul_and_matmul(&memory, &x, &y, &a, &b);
        assert_eq!(got, want, "same keys, same protocol: identical results");
        // And both are the plaintext products within one unit in the last place.
        let mul: Vec<i128> = xv.iter().zip(&yv).map(|(&p, &q)| (p as i128 * q as i128) >> T).collect();
        let mm: Vec<i128> = (0..m * n)
            .map(|e| (0..k).map(|kk| av[e / n * k + kk] as i128 * bv[kk * n + e % n] as i128).sum::<i128>() >> T)
            .collect();
        for (words, exact) in [(&got[0], &mul), (&got[1], &mm)] {
            for (w, e) in words.iter().zip(exact) {
                assert!((*w as i64 as i128 - e).abs() <= 1, "{} vs {e}", *w as i64);
            }
        }
    }
}

#[test]
fn a_certificate_other_than_the_pinned_one_is_refused_before_any_data() {
    let (listeners, mut ids, peers) = setup(Duration::from_secs(3));
    // Party 2 presents a fresh certificate, not the one its peers pinned.
    ids[2] = TlsIdentity::generate(2).unwrap();
    let [r0, r1, r2] = connect_all(listeners, &ids, &peers);
    // Party 2 connects to party 0 first: 0 refuses it in the handshake and goes on waiting for the real party 2;
    // at its set-up deadline it names party 2 as missing and the refused client, saying whose certificate it
    // expected.
    let e = r0.err().expect("party 0 accepted an unpinned certificate");
    let msg = e.to_string();
    assert!(matches!(&e, Error::NotConnected { party: 0, missing, refused: 1, .. } if missing == &[2]), "{msg}");
    assert!(msg.contains("party 2 did not connect within 3s"), "{msg}");
    assert!(msg.contains("unidentified client (127.0.0.1"), "{msg}");
    assert!(msg.contains("not the pinned certificate of party 1 or party 2"), "{msg}");
    // Party 2 learns it was refused. Party 1 never hears from party 2 and names it at its set-up deadline.
    let e = r2.err().expect("party 2 cannot finish set-up");
    assert!(matches!(e, Error::Peer { party: 2, .. }) && e.to_string().contains("party 0 (127.0.0.1"), "{e}");
    let e = r1.err().expect("party 1 cannot finish set-up");
    assert!(matches!(&e, Error::NotConnected { party: 1, missing, refused: 0, .. } if missing == &[2]), "{e}");
}

#[test]
fn a_party_refuses_a_peer_whose_pinned_certificate_is_not_what_it_presents_as_server() {
    // Party 0 presents an unpinned certificate to the parties that connect to it: they refuse it, naming party 0.
    let (listeners, mut ids, peers) = setup(Duration::from_secs(3));
    ids[0] = TlsIdentity::generate(0).unwrap();
    let [r0, r1, _] = connect_all(listeners, &ids, &peers);
    let e = r1.err().expect("party 1 accepted an unpinned server certificate");
    let msg = e.to_string();
    assert!(matches!(e, Error::Peer { party: 1, .. }) && msg.contains("party 0 (127.0.0.1"), "{msg}");
    assert!(msg.contains("not the pinned certificate of party 0"), "{msg}");
    // Party 0 sees both clients hang up on it (they refused it) and names them as missing at its deadline.
    let e = r0.err().expect("party 0 cannot finish set-up");
    assert!(matches!(&e, Error::NotConnected { party: 0, missing, .. } if missing == &[1, 2]), "{e}");
}

#[test]
fn plain_tcp_clients_are_refused_and_named_when_the_real_peers_never_come() {
    let (listeners, ids, mut peers) = setup(Duration::from_secs(3));
    peers.handshake_timeout = Duration::from_secs(1);
    let [l0, _, _] = listeners;
    let addr = peers.addresses[0];
    // One client sends HTTP, the other connects and stays silent; each reports when the party closed it.
    let client = |talk: bool| {
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            use std::io::{Read, Write};
            let start = Instant::now();
            if talk {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: party0\r\n\r\n");
            }
            let _ = s.read_to_end(&mut Vec::new());
            start.elapsed()
        })
    };
    let (http, silent) = (client(true), client(false));
    let start = Instant::now();
    let e = connect_tls_on(0, &ids[0], &peers, l0).err().expect("set-up ended without the peers");
    let (http, silent) = (http.join().unwrap(), silent.join().unwrap());
    assert!(http < Duration::from_millis(800), "the HTTP client was held for {http:?}");
    assert!(silent >= Duration::from_millis(900) && silent < Duration::from_millis(2500), "silent: {silent:?}");
    let msg = e.to_string();
    assert!(matches!(&e, Error::NotConnected { party: 0, missing, refused: 2, .. } if missing == &[1, 2]), "{msg}");
    assert!(msg.contains("parties 1 and 2 did not connect within 3s"), "{msg}");
    // The last refused: the silent one, at its own handshake deadline.
    assert!(msg.contains("unidentified client (127.0.0.1"), "{msg}");
    assert!(msg.contains("did not complete its TLS handshake within 1s"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(5), "gave up only after {:?}", start.elapsed());
}

/// Run the mul/matmul program on a TLS session over `transports` and on the in-memory session: identical.
fn matches_the_in_memory_session(transports: [TlsTransport; 3]) {
    let abort = Arc::new(AtomicBool::new(false));
    let nets = transports.map(|t| Box::new(t.with_abort_flag(abort.clone())) as Box<dyn Transport>);
    let config = Config { insecure_test_seed: Some(11), ..Config::default() };
    let tls = Session::with_transports(config.clone(), nets, abort).unwrap();
    let memory = Session::new(config).unwrap();
    let mut rng = rand::thread_rng();
    let x = RingTensor::new(&[4, 4], ring(&fixed(&mut rng, 16, T + 4))).unwrap();
    let y = RingTensor::new(&[4, 4], ring(&fixed(&mut rng, 16, T + 1))).unwrap();
    let a = RingTensor::new(&[3, 9], ring(&fixed(&mut rng, 27, T + 3))).unwrap();
    let b = RingTensor::new(&[9, 2], ring(&fixed(&mut rng, 18, T + 3))).unwrap();
    assert_eq!(mul_and_matmul(&tls, &x, &y, &a, &b), mul_and_matmul(&memory, &x, &y, &a, &b));
}

#[test]
fn stray_clients_are_refused_and_the_real_peers_still_connect() {
    let (listeners, ids, mut peers) = setup(Duration::from_secs(20));
    peers.handshake_timeout = Duration::from_secs(5);
    use std::io::{Read, Write};
    // Before the parties start: a plain TCP client that sends garbage to party 0, and one that connects to party 1
    // and stays silent. Each reports how long until the party closed its connection.
    let (a0, a1) = (peers.addresses[0], peers.addresses[1]);
    let garbage = std::thread::spawn(move || {
        let mut s = TcpStream::connect(a0).unwrap();
        let _ = s.write_all(&[0x16, 3, 1, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]); // a TLS record header, then junk
        let start = Instant::now();
        let _ = s.read_to_end(&mut Vec::new());
        start.elapsed()
    });
    let silent = std::thread::spawn(move || {
        let mut s = TcpStream::connect(a1).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = Instant::now();
        let _ = s.read_to_end(&mut Vec::new());
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let transports = connect_all(listeners, &ids, &peers).map(|t| t.unwrap());
    // The silent client did not delay the real peers (handshakes go on side by side), and it was closed when
    // set-up ended.
    assert!(start.elapsed() < Duration::from_secs(3), "set-up took {:?}", start.elapsed());
    let (g, q) = (garbage.join().unwrap(), silent.join().unwrap());
    assert!(g < Duration::from_secs(1), "the garbage client was held for {g:?}");
    assert!(q < Duration::from_secs(4), "the silent client was held for {q:?}");
    matches_the_in_memory_session(transports);
}

#[test]
fn a_client_with_an_unpinned_certificate_is_refused_and_the_real_peer_still_gets_in() {
    let (listeners, ids, peers) = setup(Duration::from_secs(20));
    let [l0, l1, l2] = listeners;
    let (ids, peers) = (&ids, &peers);
    std::thread::scope(|s| {
        let p0 = s.spawn(move || connect_tls_on(0, &ids[0], peers, l0));
        let p1 = s.spawn(move || connect_tls_on(1, &ids[1], peers, l1));
        // An impostor claims to be party 2 with a certificate of its own: party 0 refuses it in the handshake.
        let rogue = TlsIdentity::generate(2).unwrap();
        let e = connect_tls_on(2, &rogue, peers, TcpListener::bind("127.0.0.1:0").unwrap()).err().unwrap();
        assert!(matches!(e, Error::Peer { party: 2, .. }) && e.to_string().contains("party 0 (127.0.0.1"), "{e}");
        // The real party 2 then connects, and the three run a session.
        let p2 = connect_tls_on(2, &ids[2], peers, l2).unwrap();
        let (p0, p1) = (p0.join().unwrap().unwrap(), p1.join().unwrap().unwrap());
        matches_the_in_memory_session([p0, p1, p2]);
    });
}

/// Connect three transports with `timeout` and run `programs[i]` on party i (plain transport calls).
fn run_raw(
    timeout: Duration,
    program: impl Fn(usize, TlsTransport) -> cryptgpu_runtime::Result<()> + Sync,
) -> [cryptgpu_runtime::Result<()>; 3] {
    let (listeners, ids, peers) = setup(timeout);
    run_with(peers, listeners, ids, program)
}

/// Party 2 is the hub: parties 0 and 1 send to it and wait for its answer, `rounds` times.
fn exchange(i: usize, t: &mut TlsTransport, rounds: usize, words: usize) -> cryptgpu_runtime::Result<()> {
    for r in 0..rounds {
        if i == 2 {
            for from in [0, 1] {
                assert_eq!(t.recv(from)?, vec![r as u64; words]);
            }
            for to in [0, 1] {
                t.send(to, vec![r as u64; words])?;
            }
        } else {
            t.send(2, vec![r as u64; words])?;
            assert_eq!(t.recv(2)?, vec![r as u64; words]);
        }
    }
    Ok(())
}

#[test]
fn large_simultaneous_sends_do_not_deadlock() {
    // 4 M words = 32 MiB each way at once, far above the socket buffers.
    let r = run_raw(Duration::from_secs(20), |i, mut t| {
        for to in [(i + 1) % 3, (i + 2) % 3] {
            t.send(to, vec![i as u64; 1 << 22])?;
        }
        for from in [(i + 1) % 3, (i + 2) % 3] {
            assert_eq!(t.recv(from)?, vec![from as u64; 1 << 22]);
        }
        t.finish()
    });
    for r in r {
        r.unwrap();
    }
}

/// Connect three transports with `peers` (whose timeout and buffers the caller set) and run `program` on each.
fn run_with(
    peers: PeerConfig,
    listeners: [TcpListener; 3],
    ids: [TlsIdentity; 3],
    program: impl Fn(usize, TlsTransport) -> cryptgpu_runtime::Result<()> + Sync,
) -> [cryptgpu_runtime::Result<()>; 3] {
    let transports = connect_all(listeners, &ids, &peers).map(|t| t.unwrap());
    let mut out: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = transports
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let program = &program;
                s.spawn(move || program(i, t))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    core::array::from_fn(|_| out.remove(0))
}

#[test]
fn sends_far_over_the_send_buffer_bound_both_ways_at_once_complete_within_the_bound() {
    let (listeners, ids, mut peers) = setup(Duration::from_secs(20));
    let bound = 64 << 10;
    peers.send_buffer_bytes = bound;
    // Every party sends 2 M random words (16 MiB, 256 times the bound) to both others, then receives theirs.
    let msgs: [Vec<u64>; 3] = core::array::from_fn(|_| (0..1 << 21).map(|_| rand::random()).collect());
    let peaks = std::sync::Mutex::new([0usize; 3]);
    let r = run_with(peers, listeners, ids, |i, mut t| {
        for to in [(i + 1) % 3, (i + 2) % 3] {
            t.send(to, msgs[i].clone())?;
        }
        for from in [(i + 1) % 3, (i + 2) % 3] {
            assert!(t.recv(from)? == msgs[from], "party {i}: the message of party {from} differs");
        }
        t.finish()?;
        peaks.lock().unwrap()[i] = t.send_buffer_peak();
        Ok(())
    });
    for r in r {
        r.unwrap();
    }
    // Encrypted bytes waiting for a peer never exceeded the bound (plus the TLS record overhead of one write).
    for (i, &peak) in peaks.lock().unwrap().iter().enumerate() {
        assert!(peak > bound / 2 && peak <= bound + 1024, "party {i}: {peak} bytes pending, bound {bound}");
    }
}

#[test]
fn a_send_to_a_peer_that_does_not_read_fails_within_the_timeout_naming_it() {
    let (listeners, ids, mut peers) = setup(Duration::from_secs(1));
    peers.send_buffer_bytes = 64 << 10;
    let r = run_with(peers, listeners, ids, |i, mut t| {
        match i {
            0 => {
                let start = Instant::now();
                let r = t.send(1, vec![7; 1 << 22]); // 32 MiB: far more than the socket and send buffers hold
                assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
                r
            }
            1 => {
                std::thread::sleep(Duration::from_secs(3)); // alive, connected, not reading
                Ok(())
            }
            _ => Ok(()),
        }
    });
    let e = r[0].as_ref().expect_err("a send of 32 MiB completed while the peer read nothing");
    assert!(matches!(e, Error::Transport { party: 0, peer: 1, .. }), "{e}");
    assert!(e.to_string().contains("read nothing of what this party sent within 1s"), "{e}");
}

#[test]
fn a_send_waiting_for_room_stops_when_the_run_is_aborted() {
    let (listeners, ids, mut peers) = setup(Duration::from_secs(20));
    peers.send_buffer_bytes = 64 << 10;
    let abort = Arc::new(AtomicBool::new(false));
    let r = run_with(peers, listeners, ids, |i, t| {
        match i {
            0 => {
                let mut t = t.with_abort_flag(abort.clone());
                let flag = abort.clone();
                let setter = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                });
                let start = Instant::now();
                let r = t.send(1, vec![7; 1 << 22]); // 32 MiB to a peer that does not read
                setter.join().unwrap();
                assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
                r
            }
            1 => {
                std::thread::sleep(Duration::from_secs(2)); // alive, connected, not reading
                Ok(())
            }
            _ => Ok(()),
        }
    });
    assert!(matches!(r[0], Err(Error::Aborted { party: 0, peer: 1 })), "{:?}", r[0]);
}

#[test]
fn a_peer_that_closes_mid_run_is_named_within_the_timeout() {
    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let r = run_raw(timeout, |i, mut t| {
        if i == 2 {
            exchange(i, &mut t, 3, 100)?;
            drop(t); // dies mid-run: no end-of-program frame, the sockets close
            return Ok(());
        }
        exchange(i, &mut t, 10, 100)
    });
    let elapsed = start.elapsed();
    assert!(r[2].is_ok());
    for (party, r) in r.into_iter().enumerate().take(2) {
        let e = r.expect_err("a party kept running after its peer died");
        let msg = e.to_string();
        assert!(matches!(e, Error::Transport { peer: 2, .. }), "{msg}");
        assert!(msg.contains(&format!("party {party}")) && msg.contains("party 2"), "{msg}");
    }
    assert!(elapsed < timeout + Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn a_stalled_peer_is_named_within_the_timeout() {
    let timeout = Duration::from_secs(2);
    let r = run_raw(timeout, |i, mut t| {
        if i == 2 {
            exchange(i, &mut t, 1, 10)?;
            std::thread::sleep(Duration::from_secs(4)); // alive but silent
            return Ok(());
        }
        let start = Instant::now();
        let r = exchange(i, &mut t, 5, 10);
        assert!(start.elapsed() < timeout + Duration::from_secs(1), "{:?}", start.elapsed());
        r
    });
    let e = r[1].as_ref().expect_err("party 1 waits for party 2");
    assert!(
        matches!(e, Error::Transport { party: 1, peer: 2, .. }) && e.to_string().contains("no message within"),
        "{e}"
    );
}

#[test]
fn an_abort_frame_stops_the_peers_at_once() {
    let r = run_raw(Duration::from_secs(20), |i, mut t| {
        if i == 2 {
            exchange(i, &mut t, 1, 10)?;
            t.abort()?;
            // Keep the connection open a moment: closing a socket with unread data resets it, and a reset can
            // discard the abort frame before the peers read it (they would then fail naming party 2 all the same).
            std::thread::sleep(Duration::from_millis(500));
            return Ok(());
        }
        let start = Instant::now();
        let r = exchange(i, &mut t, 5, 10);
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        r
    });
    assert!(r[2].is_ok());
    assert!(matches!(r[0], Err(Error::Aborted { party: 0, peer: 2 })), "{:?}", r[0]);
    assert!(
        matches!(r[1], Err(Error::Aborted { party: 1, peer: 2 }) | Err(Error::Aborted { party: 1, peer: 0 })),
        "{:?}",
        r[1]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes, fed in arbitrary pieces: the decoder never panics, and a frame it accepts respects the
    /// maximum (it checks the length before it allocates the payload).
    #[test]
    fn the_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                                   cut in 1usize..64) {
        let mut d = FrameDecoder::new(0, 1, 42, 8);
        for piece in bytes.chunks(cut) {
            d.feed(piece);
            match d.next_frame() {
                Ok(Some(f)) => prop_assert!(f.words.len() <= 8),
                Ok(None) => {}
                Err(e) => { prop_assert!(e.to_string().contains("party 1")); break; }
            }
        }
    }

    /// Valid frames with one byte changed or the stream cut: an error naming the peer, or fewer frames; never a
    /// panic, never a payload over the maximum, never a wrong frame accepted as the next in sequence.
    #[test]
    fn the_decoder_never_panics_on_mutated_frames(lens in proptest::collection::vec(0usize..12, 1..5),
                                                  at in any::<prop::sample::Index>(), byte in any::<u8>(),
                                                  cut in 1usize..50) {
        let mut bytes = Vec::new();
        for (seq, &n) in lens.iter().enumerate() {
            bytes.extend(frame::encode(Kind::Data, 42, 0, seq as u64, &vec![seq as u64; n]));
        }
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let mut d = FrameDecoder::new(0, 1, 42, 8);
        let mut seq = 0;
        'outer: for piece in bytes.chunks(cut) {
            d.feed(piece);
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        prop_assert!(f.words.len() <= 8);
                        prop_assert_eq!(f.seq, seq);
                        seq += 1;
                    }
                    Ok(None) => break,
                    Err(e) => { prop_assert!(e.to_string().contains("from party 1")); break 'outer; }
                }
            }
        }
    }

    /// An announced length over the maximum is refused from the header alone (before the payload arrives).
    #[test]
    fn an_oversized_length_is_refused_from_the_header(words in 9u64..u64::MAX) {
        let mut h = frame::encode(Kind::Data, 42, 0, 0, &[]);
        h[32..40].copy_from_slice(&words.to_le_bytes());
        let mut d = FrameDecoder::new(0, 1, 42, 8);
        d.feed(&h);
        let e = d.next_frame().unwrap_err();
        prop_assert!(matches!(e, Error::Frame { peer: 1, .. }), "{}", e);
    }
}

#[test]
fn a_failed_run_over_tls_stops_the_others_at_once_and_the_next_run_is_correct() {
    let (listeners, ids, peers) = setup(Duration::from_secs(20));
    let transports = connect_all(listeners, &ids, &peers).map(|t| t.unwrap());
    let abort = Arc::new(AtomicBool::new(false));
    let nets = transports.map(|t| Box::new(t.with_abort_flag(abort.clone())) as Box<dyn Transport>);
    let s = Session::with_transports(Config::default(), nets, abort).unwrap();
    let mut rng = rand::thread_rng();
    let (xv, yv) = (fixed(&mut rng, 64, T + 8), fixed(&mut rng, 64, T + 1));
    let x = RingTensor::new(&[64], ring(&xv)).unwrap();
    let y = RingTensor::new(&[64], ring(&yv)).unwrap();
    let start = Instant::now();
    let e = s
        .run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[64])?;
            if p.id() == 1 {
                // Party 1 fails mid-run, leaving the others' messages of this run unread.
                return Err(Error::Invalid("party 1 gives up".into()));
            }
            let ys = p.share(1, None, &[64])?;
            let z = p.mul(&xs, &ys)?;
            Ok(p.reveal(&z)?.data().to_vec())
        })
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    assert_eq!(e.party(), Some(1), "{e}");
    assert!(e.to_string().contains("party 1 gives up"), "{e}");
    // The failed run's leftovers are dropped: the next run is exact.
    let out = s
        .run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[64])?;
            let ys = p.share(1, (p.id() == 1).then_some(&y), &[64])?;
            let z = p.mul(&xs, &ys)?;
            Ok(p.reveal(&z)?.data().to_vec())
        })
        .unwrap();
    for (w, (&a, &b)) in out[0].iter().zip(xv.iter().zip(&yv)) {
        assert!((*w as i64 as i128 - ((a as i128 * b as i128) >> T)).abs() <= 1);
    }
}

#[test]
fn a_party_whose_hello_contradicts_its_certificate_is_refused() {
    // Party 1 presents party 2's (pinned) certificate; party 2 never starts. Party 0 takes the client for party 2
    // by its certificate, and refuses its hello (which says party 1).
    let (listeners, mut ids, peers) = setup(Duration::from_secs(3));
    ids[1] = ids[2].clone();
    let [l0, l1, _] = listeners;
    let (ids, peers) = (&ids, &peers);
    let r0 = std::thread::scope(|s| {
        let p0 = s.spawn(move || connect_tls_on(0, &ids[0], peers, l0));
        let _p1 = s.spawn(move || connect_tls_on(1, &ids[1], peers, l1));
        p0.join().unwrap()
    });
    let e = r0.err().expect("party 0 accepted a hello that contradicts the certificate");
    let msg = e.to_string();
    assert!(matches!(&e, Error::NotConnected { party: 0, missing, refused: 1, .. } if missing == &[1, 2]), "{msg}");
    assert!(msg.contains("party 2 (127.0.0.1") && msg.contains("expected a hello from party 2"), "{msg}");
}
