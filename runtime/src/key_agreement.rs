//! Building one party: key agreement with its two peers over its connections, then a [`Party`] ready to run
//! protocols. The in-process [`crate::Session`] builds its three parties with [`Party::connect`]; a process that runs
//! one party of a deployment calls it directly with its network transport.
//!
//! Key agreement sends each key's contribution in the clear of the transport it is given: over in-memory channels
//! (one process) that is private; over a network it must be a transport that authenticates and encrypts (mutual
//! TLS), or an observer learns the keys.

use crate::backend::Backend;
use crate::party::Party;
use crate::prg::{os_seed, Contribution, PartyKeys, PrfKey, Purpose, Stream};
use crate::session::Config;
use crate::share::{next_party, prev_party};
use crate::transport::Transport;
use crate::{Error, FixedPoint, PartyId, Result};
use std::sync::Arc;

impl Party {
    /// Party `id` of a session with `config`, connected to its two peers by `net`: agrees the PRF keys with them
    /// (every key combines fresh randomness from each of its holders; see [`crate::prg`]) and returns the party,
    /// ready to run the same per-party programs as the in-process session (the peers call `connect` at the same
    /// time with the same `config`).
    pub fn connect(
        id: PartyId,
        config: &Config,
        mut net: Box<dyn Transport>,
        backend: Arc<dyn Backend>,
    ) -> Result<Party> {
        if id > 2 {
            return Err(Error::PartyId { what: "this party".into(), found: id });
        }
        let fixed = FixedPoint::new(config.frac_bits)?;
        if config.max_elements as u64 > crate::prg::MAX_STREAM_WORDS {
            return Err(Error::Invalid(format!(
                "max_elements must be at most {} (the words of one PRF stream), found {}",
                crate::prg::MAX_STREAM_WORDS,
                config.max_elements
            )));
        }
        let keys = agree_keys(id, net.as_mut(), config.insecure_test_seed)?;
        let mut party = Party::new(id, fixed, config.max_elements, net, keys, backend);
        party.set_truncation(config.truncation);
        Ok(party)
    }
}

/// Key agreement: each party sends a fresh 32-byte contribution for each pairwise key and one for the common key
/// to each neighbour; each key combines the contributions of all its holders (see [`crate::prg`]).
fn agree_keys(id: usize, net: &mut dyn Transport, test_seed: Option<u64>) -> Result<PartyKeys> {
    let seeds: [[u8; 32]; 4] = match test_seed {
        None => [os_seed()?, os_seed()?, os_seed()?, os_seed()?],
        Some(seed) => {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&seed.to_le_bytes());
            let w = Stream::new(PrfKey(key), Purpose::Input, id as u64).words(16);
            core::array::from_fn(|j| {
                let mut s = [0u8; 32];
                for (c, x) in s.chunks_mut(8).zip(&w[4 * j..4 * j + 4]) {
                    c.copy_from_slice(&x.to_le_bytes());
                }
                s
            })
        }
    };
    let [to_prev, to_next, common, own] = seeds;
    let words = |a: &[u8; 32], b: &[u8; 32]| -> Vec<u64> {
        a.chunks(8).chain(b.chunks(8)).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    };
    let bytes = |w: &[u64]| -> [u8; 32] {
        let mut s = [0u8; 32];
        for (c, x) in s.chunks_mut(8).zip(w) {
            c.copy_from_slice(&x.to_le_bytes());
        }
        s
    };
    let (prev, next) = (prev_party(id), next_party(id));
    net.send(next, words(&to_next, &common))?;
    net.send(prev, words(&to_prev, &common))?;
    let from = |net: &mut dyn Transport, peer| -> Result<Contribution> {
        let w = net.recv(peer)?;
        if w.len() != 8 {
            return Err(Error::Protocol { party: id, peer, expected: 8, found: w.len() });
        }
        Ok(Contribution { pair: bytes(&w[..4]), common: bytes(&w[4..]) })
    };
    let from_prev = from(net, prev)?;
    let from_next = from(net, next)?;
    Ok(PartyKeys::agree(to_prev, to_next, common, own, from_prev, from_next))
}
