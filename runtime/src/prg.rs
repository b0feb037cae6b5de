//! Counter-based PRF streams: AES-128 in counter mode (FIPS-197; the `aes` crate, which uses AES-NI when the CPU
//! has it, and the `ctr` crate) keyed per pair of parties.
//!
//! A [`Stream`] is (key, 96-bit nonce). Its keystream is AES-128 under the key's first 16 bytes of the counter
//! blocks `nonce || b` (`b` a 32-bit big-endian block counter from 0, the nonce in the high 96 bits). Word `e` of a
//! stream is bytes `8e..8e+8` (little endian) of that keystream, i.e. half `e mod 2` of block `e / 2`. Any word can
//! be computed on its own, so the CPU backend and generated GPU kernels (which emit the same AES-128 in CUDA C,
//! `cryptgpu_codegen::cuda::prelude`) draw identical words. One stream holds at most 2^33 words (the 32-bit block
//! counter). AES-128-CTR replaced ChaCha20 (RFC 8439) here: with AES-NI it draws words about twice as fast on the
//! CPUs this project is measured on (BENCHMARKS.md, issue 12).
//!
//! Keys: party `i` holds `k_i` (shared with party `i−1`) and `k_{i+1}` (shared with party `i+1`), plus a key
//! common to all three. Each is derived from randomness contributed by every party that holds it during session
//! set-up ([`PartyKeys::agree`], [`PrfKey::derive`]); the nonce is `(purpose, counter)` where the counter advances
//! in lock step at every protocol step that draws randomness, so no (key, nonce) pair is ever used twice.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

/// AES-128 in counter mode, the counter block a 128-bit big-endian integer starting at `nonce || 0`: block `b` is
/// `nonce || b` (32-bit big endian) for every `b < 2^32`, the only blocks a stream draws ([`MAX_STREAM_WORDS`]).
/// (`Ctr32BE` would give the same blocks but refuses to produce the last one, `b = 2^32 − 1`.)
type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Most words one stream can produce (2^32 blocks of 2 words).
pub const MAX_STREAM_WORDS: u64 = 1 << 33;

/// A 256-bit key: its first 16 bytes are the AES-128 key of the streams drawn under it (the other 16 are unused;
/// all 32 are uniform, see [`PrfKey::derive`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PrfKey(pub [u8; 32]);

impl std::fmt::Debug for PrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrfKey(..)") // never print key material
    }
}

impl PrfKey {
    /// Derive a key from contributions (XOR-combined, so it is uniform if any contributor's share is) and a label
    /// for domain separation: the first 32 keystream bytes of ChaCha20 (RFC 8439) under the combined key with the
    /// label as nonce. This runs once per key at set-up; the streams themselves are AES-128-CTR.
    pub fn derive(contributions: &[[u8; 32]], label: &[u8; 12]) -> PrfKey {
        let mut k = [0u8; 32];
        for c in contributions {
            for (a, b) in k.iter_mut().zip(c) {
                *a ^= b;
            }
        }
        let mut out = [0u8; 32];
        ChaCha20::new(&k.into(), label.into()).apply_keystream(&mut out);
        PrfKey(out)
    }
}

/// What a stream's randomness is for; part of the nonce, so streams drawn at the same step never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Purpose {
    /// Arithmetic or binary zero shares.
    ZeroShare = 1,
    /// Pieces of an input being shared.
    Input = 2,
    /// The mask of a truncation or division message.
    TruncMask = 3,
    /// Re-randomisation of a 2-out-of-2 split.
    Split = 4,
    /// A party's private random bits (masks only it knows).
    Private = 5,
    /// Sharing a value one party knows into a binary or arithmetic share.
    Reshare = 6,
    /// Re-replication of the wrap bit's product in exact truncation.
    Wrap = 7,
    /// A sender's private bits filling the unused top of a packed message word (its own key, a counter only it
    /// advances).
    Padding = 8,
}

/// One PRF stream: a key and a 96-bit nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Key.
    pub key: PrfKey,
    /// Nonce: purpose (u32 LE) then counter (u64 LE); the high 96 bits of every counter block.
    pub nonce: [u8; 12],
}

impl Stream {
    /// The stream of `key` for `purpose` at protocol step `counter`.
    pub fn new(key: PrfKey, purpose: Purpose, counter: u64) -> Stream {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&(purpose as u32).to_le_bytes());
        nonce[4..].copy_from_slice(&counter.to_le_bytes());
        Stream { key, nonce }
    }

    /// Words `first .. first + out.len()` of the stream.
    ///
    /// Panics if the range passes [`MAX_STREAM_WORDS`]; callers bound tensor sizes well below it.
    pub fn fill(&self, first: u64, out: &mut [u64]) {
        assert!(first + out.len() as u64 <= MAX_STREAM_WORDS, "PRF stream exhausted");
        let mut iv = [0u8; 16];
        iv[..12].copy_from_slice(&self.nonce);
        let mut cipher = Aes128Ctr::new(self.key.0[..16].into(), &iv.into());
        cipher.seek(first * 8);
        let mut buf = [0u8; 4096];
        for chunk in out.chunks_mut(buf.len() / 8) {
            let bytes = &mut buf[..chunk.len() * 8];
            bytes.fill(0);
            cipher.apply_keystream(bytes);
            for (w, b) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
                *w = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
    }

    /// The first `n` words, as a vector.
    pub fn words(&self, n: usize) -> Vec<u64> {
        let mut v = vec![0; n];
        self.fill(0, &mut v);
        v
    }
}

/// The PRF keys one party holds.
#[derive(Debug, Clone)]
pub struct PartyKeys {
    /// `k_i`: shared with the previous party (`i−1`).
    pub prev: PrfKey,
    /// `k_{i+1}`: shared with the next party (`i+1`).
    pub next: PrfKey,
    /// Known to all three parties.
    pub common: PrfKey,
    /// Known to this party alone (fresh, never sent).
    pub own: PrfKey,
}

/// Fresh 32 random bytes from the operating system.
pub fn os_seed() -> crate::Result<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::getrandom(&mut s).map_err(|e| crate::Error::Randomness(e.to_string()))?;
    Ok(s)
}

/// Contributions a party sends during key agreement: `(to_peer, common)`.
#[derive(Debug, Clone, Copy)]
pub struct Contribution {
    /// For the pairwise key with that peer.
    pub pair: [u8; 32],
    /// For the common key.
    pub common: [u8; 32],
}

impl PartyKeys {
    /// Combine this party's contributions with those received from its neighbours.
    pub fn agree(
        mine_to_prev: [u8; 32],
        mine_to_next: [u8; 32],
        mine_common: [u8; 32],
        mine_own: [u8; 32],
        from_prev: Contribution,
        from_next: Contribution,
    ) -> PartyKeys {
        PartyKeys {
            own: PrfKey::derive(&[mine_own], b"cryptgpuown_"),
            prev: PrfKey::derive(&[from_prev.pair, mine_to_prev], b"cryptgpupair"),
            next: PrfKey::derive(&[mine_to_next, from_next.pair], b"cryptgpupair"),
            common: PrfKey::derive(&[mine_common, from_prev.common, from_next.common], b"cryptgpucomm"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        ::hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    fn bytes(stream: &Stream, first_word: u64, n: usize) -> Vec<u8> {
        let mut w = vec![0u64; n];
        stream.fill(first_word, &mut w);
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A stream whose AES key is `key` (16 bytes; the unused key half is filled with 0xff).
    fn aes_stream(key: &str, nonce: &str) -> Stream {
        let mut k = [0xff; 32];
        k[..16].copy_from_slice(&hex(key));
        Stream { key: PrfKey(k), nonce: hex(nonce).try_into().unwrap() }
    }

    #[test]
    fn fips197_c1_aes128_known_answer() {
        // AES-128(000102…0f, 00112233…eeff) = 69c4e0d8…c55a: counter block = nonce 00112233…bb, block 0xccddeeff.
        let s = aes_stream("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabb");
        assert_eq!(bytes(&s, 2 * 0xccdd_eeff, 2), hex("69c4e0d86a7b0430d8cdb78070b4c55a"));
    }

    #[test]
    fn sp800_38a_f51_ctr_aes128_keystream() {
        // Keystream blocks 1 and 2 (plaintext XOR ciphertext of F.5.1) from the initial counter f0f1…fcfdfeff.
        let s = aes_stream("2b7e151628aed2a6abf7158809cf4f3c", "f0f1f2f3f4f5f6f7f8f9fafb");
        let expect = hex("ec8cdf7398607cb0f2d21675ea9ea1e4 362b7c3c6773516318a077d7fc5073ae");
        assert_eq!(bytes(&s, 2 * 0xfcfd_feff, 4), expect);
    }

    #[test]
    fn the_last_words_of_a_stream_can_be_drawn_and_no_more() {
        let s = Stream::new(PrfKey([9; 32]), Purpose::Split, 5);
        let mut last = [0u64; 3];
        s.fill(MAX_STREAM_WORDS - 3, &mut last);
        let mut one = [0u64; 1];
        s.fill(MAX_STREAM_WORDS - 1, &mut one);
        assert_eq!(one[0], last[2]);
        assert!(std::panic::catch_unwind(|| s.fill(MAX_STREAM_WORDS - 1, &mut [0u64; 2])).is_err());
    }

    #[test]
    fn key_derivation_is_chacha20_rfc8439_a1() {
        // One all-zero contribution and an all-zero label: the first 32 bytes of RFC 8439's A.1 keystream.
        let expect = hex("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7");
        assert_eq!(PrfKey::derive(&[[0; 32]], &[0; 12]).0.to_vec(), expect);
    }

    #[test]
    fn any_word_range_matches_the_whole_stream() {
        let s = Stream::new(PrfKey([7; 32]), Purpose::ZeroShare, 42);
        let all = s.words(1000);
        for (first, len) in [(0, 1), (3, 17), (8, 8), (511, 489), (999, 1)] {
            let mut part = vec![0; len];
            s.fill(first as u64, &mut part);
            assert_eq!(part, all[first..first + len]);
        }
        assert_ne!(Stream::new(PrfKey([7; 32]), Purpose::TruncMask, 42).words(4), all[..4]);
        assert_ne!(Stream::new(PrfKey([7; 32]), Purpose::ZeroShare, 43).words(4), all[..4]);
    }

    #[test]
    fn agreement_gives_pairwise_and_common_keys() {
        let w = Stream::new(PrfKey([1; 32]), Purpose::Input, 0).words(48);
        let seed = |j: usize| -> [u8; 32] { core::array::from_fn(|b| w[4 * j + b / 8].to_le_bytes()[b % 8]) };
        let seeds: Vec<[[u8; 32]; 4]> =
            (0..3).map(|i| [seed(4 * i), seed(4 * i + 1), seed(4 * i + 2), seed(4 * i + 3)]).collect();
        // seeds[i] = [to_prev, to_next, common]
        let keys: Vec<PartyKeys> = (0..3)
            .map(|i| {
                let (p, n) = ((i + 2) % 3, (i + 1) % 3);
                PartyKeys::agree(
                    seeds[i][0],
                    seeds[i][1],
                    seeds[i][2],
                    seeds[i][3],
                    Contribution { pair: seeds[p][1], common: seeds[p][2] },
                    Contribution { pair: seeds[n][0], common: seeds[n][2] },
                )
            })
            .collect();
        for i in 0..3 {
            let n = (i + 1) % 3;
            assert_eq!(keys[i].next, keys[n].prev);
            assert_eq!(keys[i].common, keys[n].common);
            assert_ne!(keys[i].next, keys[i].prev);
            assert_ne!(keys[i].own, keys[n].own);
        }
    }
}
