//! Opening a shared tensor to every party or to one named party.
//!
//! Party `i` lacks only `x_{i+2}`, which party `i+1` holds as its second piece; so opening to `i` is one message of
//! one word per element from `i+1`. Costs: [`cost::REVEAL_ALL`](super::cost::REVEAL_ALL) and
//! [`cost::REVEAL_TO_ONE`](super::cost::REVEAL_TO_ONE).

use super::base::single;
use crate::buffer::Buffer;
use crate::party::Party;
use crate::share::{next_party, Share};
use crate::tensor::{RingTensor, Tensor};
use crate::{Error, PartyId, Result};
use cryptgpu_codegen::MapBuilder;

impl Party {
    /// Reveal `x` to all three parties.
    pub fn reveal(&mut self, x: &Share) -> Result<RingTensor> {
        self.call(|p| {
            let (prev, next) = (p.prev(), p.next());
            let missing = single(p.round(vec![(prev, p.copy_of(x.next()))], &[(next, x.len())])?)?;
            p.sum_pieces(x, &missing)
        })
    }

    /// Reveal `x` to party `to` only: it gets `Some(value)`, the others `None`.
    pub fn reveal_to(&mut self, x: &Share, to: PartyId) -> Result<Option<RingTensor>> {
        if to > 2 {
            return Err(Error::PartyId { what: "the receiver of reveal_to".into(), found: to });
        }
        self.call(|p| {
            if p.id() == to {
                let missing = single(p.round(vec![], &[(next_party(to), x.len())])?)?;
                p.sum_pieces(x, &missing).map(Some)
            } else if p.id() == next_party(to) {
                p.round(vec![(to, p.copy_of(x.next()))], &[])?;
                Ok(None)
            } else {
                p.round(vec![], &[])?;
                Ok(None)
            }
        })
    }

    /// Reveal `x` to all and decode it as fixed point.
    pub fn reveal_fixed(&mut self, x: &Share) -> Result<Tensor> {
        let fp = self.fixed();
        Ok(self.reveal(x)?.decode(&fp))
    }

    /// Reveal `x` to party `to` only and decode it as fixed point there.
    pub fn reveal_fixed_to(&mut self, x: &Share, to: PartyId) -> Result<Option<Tensor>> {
        let fp = self.fixed();
        Ok(self.reveal_to(x, to)?.map(|v| v.decode(&fp)))
    }

    fn sum_pieces(&self, x: &Share, missing: &Buffer) -> Result<RingTensor> {
        let mut b = MapBuilder::new("reveal_sum");
        let (a, c, m) = (b.input(0), b.input(1), b.input(2));
        let s = b.add(a, c);
        let t = b.add(s, m);
        b.output(t);
        let v = single(self.map(&b.build(), &[x.mine(), x.next(), missing], &[], &[], x.len())?)?;
        RingTensor::new(x.shape(), v.into_host()?) // the result: on the host
    }
}
