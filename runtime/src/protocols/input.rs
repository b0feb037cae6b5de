//! Sharing a tensor that one party (its owner) knows.
//!
//! The owner `o` derives `x_o` from the key it shares with `o−1` and `x_{o+1}` from the key it shares with `o+1`
//! (so those parties derive the same pieces without a message), and sends `x_{o+2} = x − x_o − x_{o+1}` to both
//! other parties. Each non-owner sees one PRF piece it can compute and one piece masked by a PRF word it cannot.
//! Cost: [`cost::SHARE`](super::cost::SHARE), one round, the owner sends 8 bytes per element to each peer.

use super::base::{buffers, single};
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::tensor::{numel, RingTensor, Tensor};
use crate::{Error, PartyId, Result};
use cryptgpu_codegen::MapBuilder;

impl Party {
    /// Secret-share a ring tensor of `shape` owned by `owner`: the owner passes `Some(value)`, every other party
    /// `None`. All parties must pass the same shape.
    pub fn share(&mut self, owner: PartyId, value: Option<&RingTensor>, shape: &[usize]) -> Result<Share> {
        if owner > 2 {
            return Err(Error::PartyId { what: "owner".into(), found: owner });
        }
        let n = numel(shape)?;
        self.check_size("shared input", n)?;
        match (self.id() == owner, value) {
            (true, None) | (false, Some(_)) => {
                return Err(Error::Ownership { what: "input", party: self.id(), owner, supplied: value.is_some() })
            }
            (true, Some(v)) if v.shape() != shape => {
                return Err(Error::Shape {
                    op: "share".into(),
                    expected: format!("{shape:?}"),
                    found: format!("{:?}", v.shape()),
                })
            }
            _ => {}
        }
        self.call(|p| {
            let step = p.next_step();
            // A test mutation draws every input's pads at one fixed step (never in a normal build).
            let step = if p.mutated(crate::mutation::Mutation::InputStepReuse) { 0 } else { step };
            let (prev, next) = (p.prev(), p.next());
            if let Some(v) = value {
                // Owner: (x_o, x_{o+1}) from the PRF, x_{o+2} to both peers.
                let mut b = MapBuilder::new("share_owner");
                let (x, lo, hi) = (b.input(0), b.prg(0), b.prg(1));
                let t = b.sub(x, lo);
                let rest = b.sub(t, hi);
                b.output(lo).output(hi).output(rest);
                let streams =
                    [p.stream(KeyWith::Prev, Purpose::Input, step), p.stream(KeyWith::Next, Purpose::Input, step)];
                let [mine, nxt, rest] = buffers(p.map(&b.build(), &[&Buffer::from(v.data())], &[], &streams, n)?)?;
                p.round(vec![(next, rest.clone()), (prev, rest)], &[])?;
                Ok(Share::from_pieces(shape, mine, nxt))
            } else {
                // o+1 knows x_{o+1} (key with o, its previous party) and receives x_{o+2};
                // o+2 receives x_{o+2} and knows x_o (key with o, its next party).
                let owner_is_prev = prev == owner;
                let key = if owner_is_prev { KeyWith::Prev } else { KeyWith::Next };
                let mut b = MapBuilder::new("share_peer");
                let r = b.prg(0);
                b.output(r);
                let known = single(p.map(&b.build(), &[], &[], &[p.stream(key, Purpose::Input, step)], n)?)?;
                let rest = single(p.round(vec![], &[(owner, n)])?)?;
                Ok(if owner_is_prev {
                    Share::from_pieces(shape, known, rest)
                } else {
                    Share::from_pieces(shape, rest, known)
                })
            }
        })
    }

    /// Encode (with the session's fixed point) and share a real tensor of `shape` owned by `owner`.
    pub fn share_fixed(&mut self, owner: PartyId, value: Option<&Tensor>, shape: &[usize]) -> Result<Share> {
        let encoded = value.map(|v| v.encode(&self.fixed())).transpose()?;
        self.share(owner, encoded.as_ref(), shape)
    }
}
