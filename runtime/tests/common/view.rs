//! The privacy check: what one party sees must not depend on the secret.
//!
//! A protocol runs many times with fresh keys on each of two secrets. Every party records its **view**: each message
//! piece it receives (a protocol's part of a round, separately from other protocols riding in the same round), what
//! it sends, and the pieces it holds at the end (its pieces of the inputs and of every result). Then, per party:
//!
//! 1. **Each received piece alone** must look uniform: no bit of any word is the same in every run (a fresh mask
//!    makes each bit a coin flip: constant over 60 runs with probability 2^-59), and every bit position is set in
//!    about half of all words (|z| < 7 over all words and runs), under both secrets and equally under both.
//! 2. **Each combination the party can form** — a received piece plus, minus or XOR another received piece, a sent
//!    piece or a held piece of the same length — must not tell the secrets apart: a bit that is constant over the
//!    runs must be constant under both secrets with the same value (`v − v = 0` is fine, `c ⊕ β_mine = β` is not).
//! 3. **Reconstruction probe**: every received piece alone, with one other received or held piece, and with one more
//!    held piece (`r ± u ± h`, `r ⊕ u ⊕ h`) is compared with every secret the party does not own — the inputs and
//!    the plaintext of every result — and must not match it in 90% of the runs: arithmetic within ±4 modulo
//!    2^(64 − t) (a truncated value whose top bits are lost is still a leak; small integers exactly), binary bit for
//!    bit (99% of bits).
//!
//! **Packed pieces.** The exact truncation's wrap terms travel as `k`-bit values packed several to a word (see
//! `cryptgpu_runtime::protocols::exact`): an element's wrap value and its other words then sit at different positions.
//! The receiver records what it reads out of such a piece — its `k`-bit values, one per element
//! ([`cryptgpu_runtime::party::ViewEntry::unpacked_bits`]) — and those take part in every check like a received piece,
//! on their low `k` bits: check 1 tests those bits, check 2 combines them with the element's other words modulo
//! `2^k`, and the probe compares modulo `2^min(k, 44)` (arithmetic targets only). The packed words themselves are
//! checked as received (check 1 covers their padding bits too).
//!
//! A failure names the party, the piece (its index in the view, its round and peer) and what was found, so the
//! leaking message can be read off. The checks return errors instead of panicking so the mutation tests can assert
//! that a deliberate break fails them.

use cryptgpu_runtime::mutation::Mutation;
use cryptgpu_runtime::protocols::BinShare;
use cryptgpu_runtime::{Config, Party, PartyId, Result, RingTensor, Session, Share};
use rand::{Rng, SeedableRng};

/// Sessions per secret.
pub const RUNS: usize = 60;
/// |z| above which a bit frequency counts as biased (p ≈ 2.6·10^-12 per test).
const Z_LIMIT: f64 = 7.0;
/// Low bits compared by the reconstruction probe: a value truncated by t = 20 keeps 44 meaningful bits.
const PROBE_BITS: u32 = 44;

/// What a program leaves a party holding (its pieces are part of its view; the plaintext is a probe target).
pub enum Held {
    /// An arithmetic share.
    Arith(Share),
    /// A binary share (bit planes).
    Bin(BinShare),
}

/// A protocol under test: gets the shares of `x` and `y` and returns what the party holds afterwards.
pub type Program = dyn Fn(&mut Party, &Share, &Share) -> Result<Vec<Held>> + Sync;

/// A privacy check: a protocol, the owners of its two inputs and the two secrets.
pub struct ViewCheck<'a> {
    pub name: &'a str,
    pub x: [RingTensor; 2],
    pub y: [RingTensor; 2],
    /// Owners of `x` and `y` (party 0 and 1 unless a test needs one owner for both).
    pub owners: [PartyId; 2],
    pub program: &'a Program,
    /// A deliberate break switched on in every party (mutation tests only).
    pub mutation: Option<Mutation>,
}

/// Secrets for a check: A is all zeros (leaks show as constants), B random fixed-point values of both signs with
/// |v| < 2^`log_mag` real units at t = 20 (a fresh seed each time the suite runs).
pub fn secrets(shape: &[usize], log_mag: u32, seed_salt: u64) -> [RingTensor; 2] {
    let n: usize = shape.iter().product();
    let seed = rand::random::<u64>() ^ seed_salt;
    eprintln!("secret B of shape {shape:?}: seed {seed} (printed so that a failure can be reproduced)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bound = 1u64 << (log_mag + 20);
    let b = (0..n).map(|_| rng.gen_range(0..2 * bound).wrapping_sub(bound)).collect();
    [RingTensor::new(shape, vec![0; n]).expect("shape"), RingTensor::new(shape, b).expect("shape")]
}

/// One piece of a view with where it came from.
#[derive(Clone)]
struct Piece {
    label: String,
    words: Vec<u64>,
    /// The low bits that carry anything: 64, or `k` for the values read out of a packed piece.
    bits: u32,
}

/// `2^bits − 1`.
fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// One party's view in one run.
struct PartyRun {
    /// Pieces received during the protocol under test (after the inputs were shared).
    in_protocol: usize,
    received: Vec<Piece>,
    sent: Vec<Piece>,
    held: Vec<Piece>,
}

/// A value the probe tries to reconstruct.
struct Target {
    label: String,
    words: Vec<u64>,
    binary: bool,
    /// The party that knows it legitimately (an input's owner).
    owner: Option<PartyId>,
}

struct Run {
    parties: Vec<PartyRun>,
    targets: Vec<Target>,
}

fn run_once(c: &ViewCheck, secret: usize) -> std::result::Result<Run, String> {
    let session = Session::new(Config::default()).map_err(|e| e.to_string())?;
    let (x, y) = (&c.x[secret], &c.y[secret]);
    let out = session
        .run(|p| {
            p.set_mutation(c.mutation);
            let log = p.record_view();
            let id = p.id();
            let xs = p.share(c.owners[0], (id == c.owners[0]).then_some(x), x.shape())?;
            let ys = p.share(c.owners[1], (id == c.owners[1]).then_some(y), y.shape())?;
            let shared = log.lock().expect("view log").len();
            let held = (c.program)(p, &xs, &ys)?;
            p.stop_recording_view();
            let entries = log.lock().expect("view log").clone();
            let in_protocol = entries[shared..].iter().filter(|e| e.received).count();
            Ok((entries, [xs, ys], held, in_protocol))
        })
        .map_err(|e| format!("{}: the run failed: {e}", c.name))?;
    let mut parties = Vec::new();
    let mut pieces_by_party: Vec<Vec<(Vec<u64>, bool)>> = Vec::new();
    for (entries, inputs, held, in_protocol) in out {
        let (mut received, mut sent) = (Vec::new(), Vec::new());
        for (i, e) in entries.into_iter().enumerate() {
            let dir = if e.received { "from" } else { "to" };
            let label = match e.unpacked_bits {
                Some(k) => format!("piece #{i} (round {}, {k}-bit values unpacked, from party {})", e.round, e.peer),
                None => format!("piece #{i} (round {}, {dir} party {})", e.round, e.peer),
            };
            let piece = Piece { label, words: e.words, bits: e.unpacked_bits.unwrap_or(64) };
            if e.received {
                received.push(piece)
            } else {
                sent.push(piece)
            }
        }
        let mut hp = Vec::new();
        let mut mine = Vec::new();
        for (k, s) in inputs.iter().enumerate() {
            let name = ["x", "y"][k];
            hp.push(Piece { label: format!("held {name}.mine"), words: s.mine().to_vec(), bits: 64 });
            hp.push(Piece { label: format!("held {name}.next"), words: s.next().to_vec(), bits: 64 });
            mine.push((s.mine().to_vec(), false));
        }
        for (k, h) in held.iter().enumerate() {
            let (m, n, binary) = match h {
                Held::Arith(s) => (s.mine(), s.next(), false),
                Held::Bin(b) => (b.mine(), b.next(), true),
            };
            hp.push(Piece { label: format!("held result {k}.mine"), words: m.to_vec(), bits: 64 });
            hp.push(Piece { label: format!("held result {k}.next"), words: n.to_vec(), bits: 64 });
            mine.push((m.to_vec(), binary));
        }
        parties.push(PartyRun { received, sent, held: hp, in_protocol });
        pieces_by_party.push(mine);
    }
    // Targets: the inputs, and every result's plaintext (the sum, or XOR, of the three parties' own pieces).
    let mut targets = vec![
        Target { label: "secret x".into(), words: x.data().to_vec(), binary: false, owner: Some(c.owners[0]) },
        Target { label: "secret y".into(), words: y.data().to_vec(), binary: false, owner: Some(c.owners[1]) },
    ];
    for k in 0..pieces_by_party[0].len() {
        let binary = pieces_by_party[0][k].1;
        let words = (0..pieces_by_party[0][k].0.len())
            .map(|i| {
                let w = pieces_by_party.iter().map(|p| p[k].0[i]);
                if binary {
                    w.fold(0, |a, b| a ^ b)
                } else {
                    w.fold(0, u64::wrapping_add)
                }
            })
            .collect();
        if k >= 2 {
            targets.push(Target { label: format!("result {}", k - 2), words, binary, owner: None });
        }
    }
    Ok(Run { parties, targets })
}

/// Run the check; `Err` names the first leak found.
pub fn check_view(c: &ViewCheck) -> std::result::Result<(), String> {
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for (s, runs) in runs.iter_mut().enumerate() {
        for _ in 0..RUNS {
            runs.push(run_once(c, s)?);
        }
    }
    for party in 0..3 {
        let shape = |r: &Run| {
            let p = &r.parties[party];
            let lens = |v: &[Piece]| v.iter().map(|x| x.words.len()).collect::<Vec<_>>();
            (lens(&p.received), lens(&p.sent), lens(&p.held))
        };
        let first = shape(&runs[0][0]);
        if runs.iter().flatten().any(|r| shape(r) != first) {
            return Err(format!("{}: party {party}'s view has a different structure from run to run", c.name));
        }
        if runs[0][0].parties[party].in_protocol == 0 {
            return Err(format!(
                "{}: party {party} received nothing during the protocol (only its input pieces), so the protocol's \
                 messages to it were never tested",
                c.name
            ));
        }
        check_party(c.name, party, &runs)?;
    }
    Ok(())
}

/// Per-word statistics of one vector over the runs of one secret.
struct Stats {
    and: Vec<u64>,
    or: Vec<u64>,
}

impl Stats {
    fn new(len: usize) -> Stats {
        Stats { and: vec![u64::MAX; len], or: vec![0; len] }
    }
    fn add(&mut self, w: impl Iterator<Item = u64>) {
        for ((a, o), v) in self.and.iter_mut().zip(self.or.iter_mut()).zip(w) {
            *a &= v;
            *o |= v;
        }
    }
    /// Whether no bit of `mask` of any word has been the same in every run so far.
    fn all_vary(&self, mask: u64) -> bool {
        self.and.iter().zip(&self.or).all(|(a, o)| !(a ^ o) & mask == 0)
    }
    /// Bits that were the same in every run.
    fn constant(&self, i: usize) -> u64 {
        !(self.and[i] ^ self.or[i])
    }
}

/// First word where the two secrets' constant bits disagree: a bit constant under one secret and not the other,
/// or constant under both with different values.
fn differs(a: &Stats, b: &Stats) -> Option<(usize, u64)> {
    (0..a.and.len()).find_map(|i| {
        let (ca, cb) = (a.constant(i), b.constant(i));
        let bad = (ca ^ cb) | (ca & cb & (a.and[i] ^ b.and[i]));
        (bad != 0).then_some((i, bad))
    })
}

/// Per-bit-position counts of ones over every word of every run.
fn bit_counts(runs: &[Run], f: impl Fn(&Run) -> &[u64]) -> ([u64; 64], u64) {
    let mut counts = [0u64; 64];
    let mut total = 0;
    for r in runs {
        for &w in f(r) {
            total += 1;
            for (b, c) in counts.iter_mut().enumerate() {
                *c += (w >> b) & 1;
            }
        }
    }
    (counts, total)
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Xor,
}

fn combine(op: Op, a: u64, b: u64) -> u64 {
    match op {
        Op::Add => a.wrapping_add(b),
        Op::Sub => a.wrapping_sub(b),
        Op::Xor => a ^ b,
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Add => "+",
        Op::Sub => "−",
        Op::Xor => "⊕",
    }
}

fn pv(r: &Run, party: usize) -> &PartyRun {
    &r.parties[party]
}

fn others(r: &Run, party: usize) -> Vec<&Piece> {
    let v = pv(r, party);
    v.received.iter().chain(&v.sent).chain(&v.held).collect()
}

fn check_party(name: &str, party: usize, runs: &[Vec<Run>; 2]) -> std::result::Result<(), String> {
    let received = pv(&runs[0][0], party).received.len();
    // 1. Each received piece alone: uniform under both secrets.
    for k in 0..received {
        let label = &pv(&runs[0][0], party).received[k].label;
        let bits = pv(&runs[0][0], party).received[k].bits;
        let mask = low_mask(bits);
        let mut st = [Stats::new(0), Stats::new(0)];
        let mut counts = [([0u64; 64], 0u64); 2];
        for s in 0..2 {
            let len = pv(&runs[s][0], party).received[k].words.len();
            st[s] = Stats::new(len);
            for r in &runs[s] {
                st[s].add(pv(r, party).received[k].words.iter().copied());
            }
            counts[s] = bit_counts(&runs[s], |r| &pv(r, party).received[k].words);
            if let Some(i) = (0..len).find(|&i| st[s].constant(i) & mask != 0) {
                return Err(format!(
                    "{name}: party {party}, received {label}: word {i} has bits {:#018x} that are the same in all \
                     {RUNS} runs under secret {}: not masked by fresh randomness",
                    st[s].constant(i) & mask,
                    ["A", "B"][s]
                ));
            }
            for (b, &ones) in counts[s].0.iter().enumerate().take(bits as usize) {
                let n = counts[s].1 as f64;
                let z = (ones as f64 - n / 2.0) / (n / 4.0).sqrt();
                if z.abs() > Z_LIMIT {
                    return Err(format!(
                        "{name}: party {party}, received {label}: bit {b} is set in {ones} of {n} words under secret \
                         {} (z = {z:.1}): not uniform",
                        ["A", "B"][s]
                    ));
                }
            }
        }
        for b in 0..bits as usize {
            let (na, nb) = (counts[0].1 as f64, counts[1].1 as f64);
            let (pa, pb) = (counts[0].0[b] as f64 / na, counts[1].0[b] as f64 / nb);
            let p = (counts[0].0[b] + counts[1].0[b]) as f64 / (na + nb);
            if p > 0.0 && p < 1.0 {
                let z = (pa - pb) / (p * (1.0 - p) * (1.0 / na + 1.0 / nb)).sqrt();
                if z.abs() > Z_LIMIT {
                    return Err(format!(
                        "{name}: party {party}, received {label}: bit {b} is set with frequency {pa:.3} under secret \
                         A and {pb:.3} under B (z = {z:.1}): depends on the secret"
                    ));
                }
            }
        }
    }
    // 2. Combinations with every other piece of the view of the same length.
    let views: [Vec<Vec<&[u64]>>; 2] = core::array::from_fn(|s| {
        runs[s].iter().map(|r| others(r, party).into_iter().map(|p| p.words.as_slice()).collect()).collect()
    });
    let labels: Vec<&str> = others(&runs[0][0], party).iter().map(|p| p.label.as_str()).collect();
    let bits: Vec<u32> = others(&runs[0][0], party).iter().map(|p| p.bits).collect();
    for k in 0..received {
        for j in k + 1..labels.len() {
            let len = views[0][0][k].len();
            if views[0][0][j].len() != len {
                continue;
            }
            // Values read out of a packed piece matter modulo 2^k: so does any combination with them.
            let mask = low_mask(bits[k].min(bits[j]));
            for op in [Op::Add, Op::Sub, Op::Xor] {
                // Most combinations vary in every bit after a few runs: stop early then, as nothing can differ.
                let stats = |s: usize| {
                    let mut st = Stats::new(len);
                    for (i, v) in views[s].iter().enumerate() {
                        st.add(v[k].iter().zip(v[j]).map(|(&u, &w)| combine(op, u, w) & mask));
                        if i >= 2 && st.all_vary(mask) {
                            break;
                        }
                    }
                    st
                };
                let (a, b) = (stats(0), stats(1));
                if a.all_vary(mask) && b.all_vary(mask) {
                    continue;
                }
                // Constant bits found: recount over every run of both secrets.
                let full = |s: usize| {
                    let mut st = Stats::new(len);
                    for v in &views[s] {
                        st.add(v[k].iter().zip(v[j]).map(|(&u, &w)| combine(op, u, w) & mask));
                    }
                    st
                };
                if let Some((i, bits)) = differs(&full(0), &full(1)) {
                    return Err(format!(
                        "{name}: party {party}: received {} {} {}: word {i}, bits {bits:#018x} are fixed by the \
                         secret (constant over the runs, differently for the two secrets)",
                        labels[k],
                        op_name(op),
                        labels[j]
                    ));
                }
            }
        }
    }
    // 3. Reconstruction probe.
    for runs in runs.iter() {
        probe(name, party, runs)?;
    }
    Ok(())
}

/// Whether the candidate (element `i` is `cand(i)`) reveals `t` in one run.
/// Arithmetic targets are compared on their low `bits` bits (at most [`PROBE_BITS`]).
fn matches(cand: impl Fn(usize) -> u64, t: &Target, bits: u32) -> bool {
    if t.binary {
        let bits = 64 * t.words.len() as u64;
        let ones: u64 = t.words.iter().map(|w| w.count_ones() as u64).sum();
        if bits < 128 || ones < 16 || bits - ones < 16 {
            return false; // too few or too uniform bits to tell a match from chance
        }
        if (cand(0) ^ t.words[0]).count_ones() > 8 {
            return false;
        }
        let wrong: u64 = (0..t.words.len()).map(|i| (cand(i) ^ t.words[i]).count_ones() as u64).sum();
        wrong * 100 <= bits
    } else {
        let mask = low_mask(bits.min(PROBE_BITS));
        // Fixed-point values may be off by a few ulps after truncation; small integers (indices, bits) must match
        // exactly, or a piece that is all zeros would "match" them.
        let magnitude = |w: u64| {
            let d = w & mask;
            d.min(mask - d + 1)
        };
        let large = t.words.iter().filter(|&&w| magnitude(w) >= 1 << 10).count();
        let tol = if large * 2 >= t.words.len() { 4 } else { 0 };
        let close = |a: u64, b: u64| {
            let d = a.wrapping_sub(b) & mask;
            d <= tol || d > mask - tol
        };
        let nonzero: Vec<usize> = (0..t.words.len()).filter(|&i| t.words[i] & mask != 0).collect();
        if nonzero.len() < 16 {
            return false;
        }
        // Most candidates differ at once: look at a few elements before counting.
        if nonzero.iter().take(4).all(|&i| !close(cand(i), t.words[i])) {
            return false;
        }
        let hit = nonzero.iter().filter(|&&i| close(cand(i), t.words[i])).count();
        hit * 10 >= nonzero.len() * 9
    }
}

fn probe(name: &str, party: usize, runs: &[Run]) -> std::result::Result<(), String> {
    let first = &runs[0];
    let v = &first.parties[party];
    let pool: Vec<&Piece> = v.received.iter().chain(&v.held).collect();
    let nrecv = v.received.len();
    let targets: Vec<usize> = (0..first.targets.len()).filter(|&t| first.targets[t].owner != Some(party)).collect();
    // A candidate: a received piece, optionally ± / ⊕ one or two other pieces of the pool.
    type Terms = (usize, Option<(Op, usize)>, Option<(Op, usize)>);
    let value = |r: &Run, (k, a, b): Terms, i: usize| -> u64 {
        let p = &r.parties[party];
        let get = |j: usize| if j < nrecv { p.received[j].words[i] } else { p.held[j - nrecv].words[i] };
        let mut out = get(k);
        for (op, j) in [a, b].into_iter().flatten() {
            out = combine(op, out, get(j));
        }
        out
    };
    // The low bits a candidate carries: the fewest of its terms'.
    let cand_bits = |(k, a, b): Terms| [a, b].into_iter().flatten().fold(pool[k].bits, |m, (_, j)| m.min(pool[j].bits));
    let describe = |(k, a, b): Terms| {
        let mut s = pool[k].label.clone();
        for (op, j) in [a, b].into_iter().flatten() {
            s += &format!(" {} {}", op_name(op), pool[j].label);
        }
        s
    };
    let mut candidates: Vec<Terms> = Vec::new();
    for k in 0..nrecv {
        candidates.push((k, None, None));
        for j in 0..pool.len() {
            if j == k || pool[j].words.len() != pool[k].words.len() {
                continue;
            }
            for op in [Op::Add, Op::Sub, Op::Xor] {
                candidates.push((k, Some((op, j)), None));
                for i in (j + 1).max(nrecv)..pool.len() {
                    if pool[i].words.len() != pool[k].words.len() {
                        continue;
                    }
                    let ops: &[Op] = if op == Op::Xor { &[Op::Xor] } else { &[Op::Add, Op::Sub] };
                    for &op2 in ops {
                        candidates.push((k, Some((op, j)), Some((op2, i))));
                    }
                }
            }
        }
    }
    for &t in &targets {
        let len = first.targets[t].words.len();
        for &c in &candidates {
            let bits = cand_bits(c);
            // A candidate made of k-bit values read out of packed pieces is an arithmetic value modulo 2^k.
            if pool[c.0].words.len() != len || (bits < 64 && first.targets[t].binary) {
                continue;
            }
            // A leak matches in (nearly) every run: stop counting once a tenth of the runs missed.
            let (mut hits, mut misses) = (0, 0);
            for r in runs {
                if matches(|i| value(r, c, i), &r.targets[t], bits) {
                    hits += 1;
                } else {
                    misses += 1;
                    if misses * 10 > runs.len() {
                        break;
                    }
                }
            }
            if misses * 10 <= runs.len() {
                return Err(format!(
                    "{name}: party {party} reconstructs {} from its view: {} matches it in {hits} of {} runs",
                    first.targets[t].label,
                    describe(c),
                    runs.len()
                ));
            }
        }
    }
    Ok(())
}
