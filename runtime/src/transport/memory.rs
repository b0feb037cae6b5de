//! In-process transport: three parties as threads, one buffered channel per direction.
//!
//! A channel carries the parties' messages and, after a party's program has returned, its end-of-program notice
//! ([`Transport::finish`]): a peer still waiting for a message from it then fails at once, after receiving
//! everything it had sent before. [`Transport::reset`] empties the channels between runs.

use super::Transport;
use crate::{Error, PartyId, Result};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a waiting receive looks at the abort flag.
const ABORT_POLL: Duration = Duration::from_millis(20);

/// What travels on a channel.
enum Message {
    /// A protocol message.
    Words(Vec<u64>),
    /// The sender's program has returned: nothing more will come in this run.
    Finished,
}

/// One party's ends of the in-memory channels.
pub struct MemoryTransport {
    id: PartyId,
    to: [Option<Sender<Message>>; 3],
    from: [Option<Receiver<Message>>; 3],
    timeout: Duration,
    abort: Arc<AtomicBool>,
}

/// Connect three parties. A receive waiting longer than `timeout` fails with an error naming both parties; one
/// that sees `abort` set (another party failed) fails within 20 ms; one whose peer has finished its program with
/// nothing more in the channel fails at once.
pub fn connect(timeout: Duration, abort: Arc<AtomicBool>) -> [MemoryTransport; 3] {
    let mut ends: [MemoryTransport; 3] = core::array::from_fn(|id| MemoryTransport {
        id,
        to: [None, None, None],
        from: [None, None, None],
        timeout,
        abort: abort.clone(),
    });
    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                let (tx, rx) = unbounded();
                ends[a].to[b] = Some(tx);
                ends[b].from[a] = Some(rx);
            }
        }
    }
    ends
}

impl MemoryTransport {
    fn error(&self, peer: PartyId, reason: impl Into<String>) -> Error {
        Error::Transport { party: self.id, peer, reason: reason.into() }
    }
}

impl Transport for MemoryTransport {
    fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()> {
        let tx = self.to.get(to).and_then(Option::as_ref).ok_or_else(|| self.error(to, "no such peer"))?;
        tx.send(Message::Words(words)).map_err(|_| self.error(to, "peer has hung up"))
    }

    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
        let rx = self.from.get(from).and_then(Option::as_ref).ok_or_else(|| self.error(from, "no such peer"))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(ABORT_POLL);
            match rx.recv_timeout(wait) {
                Ok(Message::Words(words)) => return Ok(words),
                Ok(Message::Finished) => return Err(Error::PeerFinished { party: self.id, peer: from }),
                Err(RecvTimeoutError::Disconnected) => return Err(self.error(from, "peer has hung up")),
                Err(RecvTimeoutError::Timeout) if self.abort.load(Ordering::SeqCst) => {
                    return Err(Error::Aborted { party: self.id, peer: from })
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    return Err(self.error(from, format!("no message within {:?}", self.timeout)))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        for (to, tx) in self.to.iter().enumerate() {
            if let Some(tx) = tx {
                tx.send(Message::Finished).map_err(|_| self.error(to, "peer has hung up"))?;
            }
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<bool> {
        for rx in self.from.iter().flatten() {
            while rx.try_recv().is_ok() {}
        }
        Ok(true)
    }
}
