//! How parties move messages: the [`Transport`] trait and its implementations.
//!
//! A message is a vector of ring words. The in-memory transport ([`memory`]) connects three threads of one process
//! (the embedded default); [`tls`] connects parties in separate processes or hosts over TCP with mutual TLS and
//! pinned certificates, in length-prefixed [`frame`]s; [`delay`] emulates a network's latency and bandwidth around
//! any transport; [`Recording`] wraps any transport and keeps a copy of every received message (for debugging; the
//! privacy tests record each party's view with [`crate::Party::record_view`]).

pub mod delay;
pub mod frame;
pub mod memory;
pub mod tls;

use crate::{PartyId, Result};
use std::sync::{Arc, Mutex};

/// A party's connections to its two peers.
pub trait Transport: Send {
    /// Send `words` to party `to` (never blocks on the receiver for long: channels are buffered).
    fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()>;
    /// Receive the next message from party `from`.
    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>>;
    /// Tell both peers that this party's program has returned: a peer still waiting for one of its messages then
    /// fails at once ([`crate::Error::PeerFinished`]) instead of waiting for its timeout, while messages sent before
    /// stay receivable. The default does nothing (peers then stop on the session's abort flag or their timeout).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// Called by the session after every run, once all three programs have returned (nothing is in flight):
    /// discard every message still pending from the peers, [`Transport::finish`]'s notices included, so the next
    /// run starts on empty connections. Returns `Ok(false)` when this transport cannot (the default): the session
    /// then refuses further runs after a failed one.
    fn reset(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// Every message a party received: `(sender, words)`, in arrival order.
pub type ReceivedLog = Arc<Mutex<Vec<(PartyId, Vec<u64>)>>>;

/// A transport that records every message it receives (for privacy tests and debugging).
pub struct Recording<T> {
    inner: T,
    log: ReceivedLog,
}

impl<T: Transport> Recording<T> {
    /// Wrap `inner`; the returned log fills as messages arrive.
    pub fn new(inner: T) -> (Self, ReceivedLog) {
        let log = ReceivedLog::default();
        (Recording { inner, log: log.clone() }, log)
    }
}

impl<T: Transport> Transport for Recording<T> {
    fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()> {
        self.inner.send(to, words)
    }
    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
        let words = self.inner.recv(from)?;
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push((from, words.clone()));
        Ok(words)
    }
    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }
    fn reset(&mut self) -> Result<bool> {
        self.inner.reset()
    }
}
