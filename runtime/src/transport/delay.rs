//! A network emulator for benchmarks and tests: [`Delayed`] wraps any transport and makes every message arrive a
//! configured one-way latency after it was sent, optionally no faster than a bandwidth cap allows.
//!
//! The sender computes each message's arrival time — `max(now, link free) + size / bandwidth + latency`, the link
//! being busy until the message's last byte has left — and prepends it (nanoseconds since the Unix epoch) as one
//! extra word; the receiver strips it and waits until then. Both ends must be wrapped alike (all three parties of a
//! session). Sending never blocks, so a round whose messages go out together costs one latency, as on a real
//! network; the communication statistics count the protocol's words only (the parties count before the transport).

use super::Transport;
use crate::{Error, PartyId, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latency and bandwidth of every link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// One-way delay of every message (half the round-trip time).
    pub latency: Duration,
    /// Bytes per second of each direction of each link; `None`: unlimited.
    pub bandwidth: Option<f64>,
}

/// A transport whose messages arrive after the configured [`Link`] delay.
pub struct Delayed<T> {
    id: PartyId,
    inner: T,
    link: Link,
    /// When each outgoing link (to party 0, 1, 2) is free again.
    busy_until: [u128; 3],
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl<T: Transport> Delayed<T> {
    /// Wrap party `id`'s transport `inner` (wrap every party's transport with the same `link`).
    pub fn new(id: PartyId, inner: T, link: Link) -> Result<Self> {
        if link.bandwidth.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
            return Err(Error::Invalid(format!("bandwidth must be a positive number of bytes per second: {link:?}")));
        }
        Ok(Delayed { id, inner, link, busy_until: [0; 3] })
    }
}

impl<T: Transport> Transport for Delayed<T> {
    fn send(&mut self, to: PartyId, mut words: Vec<u64>) -> Result<()> {
        let start = now_nanos().max(self.busy_until.get(to).copied().unwrap_or(0));
        let transfer = self.link.bandwidth.map_or(0, |b| ((8 * words.len()) as f64 / b * 1e9) as u128);
        if let Some(busy) = self.busy_until.get_mut(to) {
            *busy = start + transfer;
        }
        let arrival = start + transfer + self.link.latency.as_nanos();
        words.insert(0, arrival.min(u64::MAX as u128) as u64);
        self.inner.send(to, words)
    }

    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
        let mut words = self.inner.recv(from)?;
        if words.is_empty() {
            return Err(Error::Transport {
                party: self.id,
                peer: from,
                reason: "a message without its arrival time: is the peer's transport wrapped in Delayed too?".into(),
            });
        }
        let arrival = words.remove(0) as u128;
        let now = now_nanos();
        if arrival > now {
            std::thread::sleep(Duration::from_nanos((arrival - now).min(u64::MAX as u128) as u64));
        }
        Ok(words)
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }

    fn reset(&mut self) -> Result<bool> {
        self.busy_until = [0; 3];
        self.inner.reset()
    }
}
