//! This process's connections as the party sees them: the TLS transport behind a lock the deployment keeps a handle
//! to, so that after a failed run it can find out which peer failed first ([`LinkHandle::culprit`]); and the test hook
//! that makes the process die abruptly after a given number of sends ([`FaultPoint`]).

use cryptgpu_runtime::transport::tls::TlsTransport;
use cryptgpu_runtime::transport::Transport;
use cryptgpu_runtime::{Error, PartyId, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// TEST HOOK (the hidden `cryptgpu party --fault-exit-at` flag): where this process exits abruptly
/// (`std::process::exit(101)`: no abort frame, no TLS close, no flush, as if killed) so the tests can check that the
/// other two fail naming it and that `--resume` then finishes the job exactly. Never set it in a real deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// During key agreement: right after sending the first of its two key contributions.
    Keys,
    /// In the middle of training step `n` (1-based): after its first few messages of that step.
    Step(usize),
    /// After training step `n` (1-based) and before writing its checkpoint of it (the others may hold it).
    BeforeCheckpoint(usize),
    /// Not an exit: fail at the start of training step `n` (1-based) with an error, like a party whose disk broke,
    /// sending its abort frame to the others.
    Fail(usize),
}

impl std::str::FromStr for FaultPoint {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let number = |n: &str| n.parse::<usize>().map_err(|_| format!("`{s}`: expected a step number after `:`"));
        match s.split_once(':') {
            None if s == "keys" => Ok(FaultPoint::Keys),
            Some(("step", n)) => Ok(FaultPoint::Step(number(n)?)),
            Some(("before-checkpoint", n)) => Ok(FaultPoint::BeforeCheckpoint(number(n)?)),
            Some(("fail", n)) => Ok(FaultPoint::Fail(number(n)?)),
            _ => Err(format!("`{s}`: expected keys, step:N, before-checkpoint:N or fail:N")),
        }
    }
}

/// Messages a party sends into a step before [`FaultPoint::Step`] stops it (mid-protocol: after sharing the batch).
const SENDS_INTO_STEP: u64 = 5;

/// Exit code of a [`FaultPoint`] exit.
pub const FAULT_EXIT_CODE: i32 = 101;

/// Exit now, as abruptly as a kill (the test hook).
pub fn fault_exit(why: &str) -> ! {
    eprintln!("TEST HOOK --fault-exit-at: exiting abruptly {why}");
    std::process::exit(FAULT_EXIT_CODE)
}

/// The party's transport: the TLS connections behind a lock shared with the deployment, and the fault hook.
pub struct Link {
    inner: Arc<Mutex<TlsTransport>>,
    /// Sends left before the process exits (`u64::MAX`: never).
    exit_after: Arc<AtomicU64>,
}

/// The deployment's handle on a [`Link`] the party owns.
#[derive(Clone)]
pub struct LinkHandle {
    inner: Arc<Mutex<TlsTransport>>,
    exit_after: Arc<AtomicU64>,
    /// The abort flag `tls` watches (see [`TlsTransport::with_abort_flag`]).
    abort: Arc<AtomicBool>,
}

impl Link {
    /// Wrap `tls`, which watches `abort`; the handle stays with the caller.
    pub fn new(tls: TlsTransport, abort: Arc<AtomicBool>) -> (Link, LinkHandle) {
        let inner = Arc::new(Mutex::new(tls));
        let exit_after = Arc::new(AtomicU64::new(u64::MAX));
        (Link { inner: inner.clone(), exit_after: exit_after.clone() }, LinkHandle { inner, exit_after, abort })
    }
}

fn lock(m: &Mutex<TlsTransport>) -> MutexGuard<'_, TlsTransport> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport for Link {
    fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()> {
        let sent = lock(&self.inner).send(to, words);
        if self.exit_after.load(Ordering::SeqCst) != u64::MAX && self.exit_after.fetch_sub(1, Ordering::SeqCst) == 1 {
            fault_exit("in the middle of the protocol (test hook)");
        }
        sent
    }
    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
        lock(&self.inner).recv(from)
    }
    fn finish(&mut self) -> Result<()> {
        lock(&self.inner).finish()
    }
    fn reset(&mut self) -> Result<bool> {
        lock(&self.inner).reset()
    }
}

impl LinkHandle {
    /// TEST HOOK: exit abruptly after `sends` more messages.
    pub fn exit_after_sends(&self, sends: u64) {
        self.exit_after.store(sends, Ordering::SeqCst);
    }

    /// TEST HOOK: exit in the middle of the step about to start.
    pub fn exit_mid_step(&self) {
        self.exit_after_sends(SENDS_INTO_STEP);
    }

    /// End this party's run on the connections (an abort frame when the abort flag is set): for a failure before
    /// the party exists (during key agreement), when no [`cryptgpu_runtime::Party::finish_program`] can.
    pub fn finish(&self) -> Result<()> {
        lock(&self.inner).finish()
    }

    /// After this party's program failed with `error` naming a peer that only reacted to a failure elsewhere (it
    /// aborted, ended its program, or its connection went away after it did): read what is left from the third
    /// party until its connection says why it stopped. Returns that party and its error when it failed on its own
    /// (its connection closed or broke), `None` otherwise. Looks for 500 ms at most: then this party's abort
    /// flag is set (it is failing anyway), which also ends the look of two parties probing each other.
    pub fn culprit(&self, me: PartyId, error: &Error) -> Option<(PartyId, Error)> {
        let abort = self.abort.clone();
        std::thread::spawn(move || {
            std::thread::sleep(PROBE);
            abort.store(true, Ordering::SeqCst);
        });
        let mut t = lock(&self.inner);
        let other = match error {
            Error::Aborted { peer, .. } | Error::PeerFinished { peer, .. } => *peer,
            // A peer whose connection failed may have aborted first: its abort frame may still be unread.
            Error::Transport { peer, .. } | Error::Frame { peer, .. } => match drain(&mut t, *peer) {
                Error::Aborted { .. } | Error::PeerFinished { .. } => *peer,
                _ => return None,
            },
            _ => return None,
        };
        let third = (0..3).find(|&p| p != me && p != other)?;
        match drain(&mut t, third) {
            e @ (Error::Transport { .. } | Error::Frame { .. }) => Some((third, e)),
            _ => None,
        }
    }

    /// After a failed run: keep the connections open for a moment so the peers read this party's abort frame
    /// before its connections close (closing a TCP socket with unread incoming bytes resets the connection, and a
    /// peer still writing to it fails on the reset instead of reading the abort).
    pub fn linger(&self) {
        std::thread::sleep(LINGER);
    }
}

/// How long a failed party looks for the party that failed first.
const PROBE: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a failed party keeps its connections open after its abort frame.
const LINGER: std::time::Duration = std::time::Duration::from_millis(300);

/// Read and drop the failed run's messages still in flight from `peer` until its connection reports why it
/// stopped.
fn drain(t: &mut TlsTransport, peer: PartyId) -> Error {
    loop {
        if let Err(e) = t.recv(peer) {
            return e;
        }
    }
}
