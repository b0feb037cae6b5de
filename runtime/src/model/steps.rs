//! The record of one step (a layer, a residual add, a setup phase): wall time and communication, per party and
//! merged over the three parties.

use crate::party::Party;
use crate::stats::{PartyStats, Stats};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// Wall time and one party's communication of one step (a layer, a residual add, or a setup phase).
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Full layer name (`layer1.0.conv1`), `<block>.add` for a residual add, or the phase name
    /// (`share weights`, `share input`, `reveal logits`).
    pub name: String,
    /// Layer kind (`Conv2d`, `ReLU`, …), `ResidualAdd` or `Setup`.
    pub kind: &'static str,
    /// Wall time on this party.
    pub time: Duration,
    /// This party's communication.
    pub stats: Stats,
}

/// One step's cost over all three parties.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    /// Full layer name, `<block>.add`, or a setup phase name.
    pub name: String,
    /// Layer kind, `ResidualAdd` or `Setup`.
    pub kind: &'static str,
    /// The slowest party's wall time.
    pub time: Duration,
    /// Each party's communication.
    pub stats: PartyStats,
}

impl LayerStats {
    /// Communication rounds (the largest count of any party).
    pub fn rounds(&self) -> u64 {
        self.stats.rounds()
    }
    /// Bytes sent by all parties together.
    pub fn bytes(&self) -> u64 {
        self.stats.total_bytes()
    }
}

/// Runs `f`, recording its wall time and this party's communication as a step.
pub(crate) fn timed<R>(
    p: &mut Party,
    steps: &mut Vec<StepStats>,
    name: &str,
    kind: &'static str,
    f: impl FnOnce(&mut Party) -> Result<R>,
) -> Result<R> {
    if let Some(hook) = p.step_hook() {
        hook(name, kind);
    }
    let (t0, s0) = (Instant::now(), p.total_stats());
    let r = f(p)?;
    steps.push(StepStats { name: name.to_string(), kind, time: t0.elapsed(), stats: p.total_stats() - s0 });
    Ok(r)
}

/// Merges the three parties' step lists (they run the same steps in the same order).
pub(crate) fn merge<'a>(mut parties: impl Iterator<Item = &'a [StepStats]>) -> Result<Vec<LayerStats>> {
    let (Some(a), Some(b), Some(c)) = (parties.next(), parties.next(), parties.next()) else {
        return Err(Error::Internal("merge: expected the steps of three parties".into()));
    };
    if a.len() != b.len() || a.len() != c.len() {
        return Err(Error::Internal(format!("parties ran {}, {} and {} steps", a.len(), b.len(), c.len())));
    }
    Ok(a.iter()
        .zip(b)
        .zip(c)
        .map(|((a, b), c)| LayerStats {
            name: a.name.clone(),
            kind: a.kind,
            time: a.time.max(b.time).max(c.time),
            stats: PartyStats([a.stats, b.stats, c.stats]),
        })
        .collect())
}
