//! The running TLS transport ([`TlsTransport`]): a party's two authenticated connections once set-up is done.
//!
//! The sockets are non-blocking. Every wait — a receive, or a send whose peer's buffer is full — keeps pumping
//! every link: it writes what the sockets take and reads and decodes every frame the peers offer into per-peer
//! queues, so two parties that send large messages to each other at once never deadlock; when nothing moves it
//! sleeps in `poll(2)` on all the sockets. Bytes go from the message's words to rustls and from rustls into the
//! received message's words without intermediate buffers (on little-endian targets). A send buffers at most
//! [`super::PeerConfig::send_buffer_bytes`] encrypted bytes per peer (rustls's buffer limit); past that it waits
//! for the peer to read, with the receive's failure rules: after [`super::PeerConfig::timeout`] without progress,
//! at once when the peer closes its connection, ends its program ([`Error::PeerFinished`]) or aborts
//! ([`Error::Aborted`]), and within ~20 ms of the optional shared abort flag being set. Every frame carries the
//! number of the run it belongs to (one run per [`Transport::finish`]), so frames of an earlier, failed run are
//! dropped and [`Transport::reset`] needs no draining.

use super::super::frame::{self, Frame, FrameDecoder, FrameProblem, Kind};
use super::super::Transport;
use super::PeerConfig;
use crate::{Error, PartyId, Result};
use rustls::Connection;
use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a waiting receive or send sleeps before it looks at the abort flag again.
const ABORT_POLL: Duration = Duration::from_millis(20);
/// Payload bytes handed to rustls per write.
const CHUNK_BYTES: usize = 128 << 10;
/// Plaintext bytes of a full TLS record.
const RECORD_BYTES: usize = 16 << 10;
/// Bytes one socket read may take (rustls alone would read 4 KiB at a time).
const READ_BYTES: usize = 256 << 10;
/// Bytes one pump reads from a link before it looks at the others.
const READ_BUDGET: usize = 4 << 20;

/// One authenticated connection to a peer.
pub(super) struct Link {
    conn: Connection,
    sock: TcpStream,
    decoder: FrameDecoder,
    send_seq: u64,
    /// Frames received and not yet taken by a receive, in order.
    inbox: VecDeque<Frame>,
    /// The peer sent a frame that is wrong: the stream is out of step (reported after the frames before it).
    broken: Option<FrameProblem>,
    /// The peer closed the connection (cleanly or not), or reading from it failed: what happened.
    closed: Option<String>,
    /// Writing to the peer failed: why.
    unwritable: Option<String>,
    /// Bytes written to the socket so far.
    written: u64,
    /// Bytes read from the socket, `rbuf[rpos..rlen]` not yet handed to rustls.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
}

impl Link {
    /// A link whose handshake and hello exchange are done.
    pub(super) fn new(conn: Connection, sock: TcpStream, decoder: FrameDecoder, send_seq: u64) -> Link {
        Link {
            conn,
            sock,
            decoder,
            send_seq,
            inbox: VecDeque::new(),
            broken: None,
            closed: None,
            unwritable: None,
            written: 0,
            rbuf: vec![0; READ_BYTES],
            rpos: 0,
            rlen: 0,
        }
    }

    /// Write what the socket takes, read what it offers and decode the complete frames; true when bytes moved.
    fn pump(&mut self) -> bool {
        let mut moved = self.write();
        let mut budget = READ_BUDGET;
        while self.closed.is_none() && budget > 0 {
            if self.rpos == self.rlen {
                match self.sock.read(&mut self.rbuf) {
                    Ok(0) => self.closed = Some("closed the connection".into()),
                    Ok(n) => {
                        (self.rpos, self.rlen) = (0, n);
                        budget = budget.saturating_sub(n);
                        moved = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => self.closed = Some(format!("connection failed: {e}")),
                }
                if self.closed.is_some() {
                    break;
                }
            }
            let mut unread = &self.rbuf[self.rpos..self.rlen];
            match self.conn.read_tls(&mut unread) {
                Ok(0) => break, // the peer's close_notify came: nothing more is read
                Ok(n) => self.rpos += n,
                Err(e) => self.closed = Some(format!("TLS error: {e}")),
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.closed.get_or_insert_with(|| format!("TLS error: {e}"));
            }
            self.take_plaintext();
        }
        self.take_plaintext();
        while self.broken.is_none() {
            match self.decoder.next_frame() {
                Ok(Some(f)) => self.inbox.push_back(f),
                Ok(None) => break,
                Err(Error::Frame { problem, .. }) => self.broken = Some(problem),
                Err(e) => self.broken = Some(FrameProblem::Unexpected { found: Kind::Data, expected: e.to_string() }),
            }
        }
        moved
    }

    /// Write what the socket takes; true when anything was written.
    fn write(&mut self) -> bool {
        let mut moved = false;
        while self.unwritable.is_none() && self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(n) => {
                    self.written += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => self.unwritable = Some(format!("cannot send: {e}")),
            }
        }
        moved
    }

    /// Feed the decrypted bytes to the frame decoder.
    fn take_plaintext(&mut self) {
        loop {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok([]) => {
                    self.closed.get_or_insert_with(|| "closed the connection".into());
                    break;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    self.decoder.feed(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.closed.get_or_insert_with(|| format!("connection failed: {e}"));
                    break;
                }
            }
        }
    }

    /// The socket events to wait for: readable unless closed, writable while bytes wait for it.
    fn poll_events(&self) -> i16 {
        let mut events = 0;
        if self.closed.is_none() {
            events |= libc::POLLIN;
        }
        if self.unwritable.is_none() && self.conn.wants_write() {
            events |= libc::POLLOUT;
        }
        events
    }

    /// Encrypted bytes waiting for the socket (rustls's own count).
    fn pending(&mut self) -> usize {
        match self.conn.process_new_packets() {
            Ok(state) => state.tls_bytes_to_write(),
            Err(e) => {
                self.closed.get_or_insert_with(|| format!("TLS error: {e}"));
                0
            }
        }
    }
}

/// A party's mutual-TLS connections to its two peers.
pub struct TlsTransport {
    id: PartyId,
    links: [Option<Link>; 3],
    session: u64,
    timeout: Duration,
    /// The current run (incremented by [`Transport::finish`]).
    run: u64,
    /// The last end-of-program or abort frame seen from each peer: `(run, kind)`.
    ended: [Option<(u64, Kind)>; 3],
    abort: Option<Arc<AtomicBool>>,
    /// The most encrypted bytes ever waiting for one peer's socket.
    send_peak: usize,
    /// Scratch space for a frame's header and first bytes.
    out: Vec<u8>,
}

impl TlsTransport {
    /// The transport over `links` (set-up done): sockets made non-blocking, send buffers bounded.
    pub(super) fn new(id: PartyId, mut links: [Option<Link>; 3], config: &PeerConfig) -> Result<TlsTransport> {
        for link in links.iter_mut().flatten() {
            link.sock.set_nonblocking(true).map_err(|e| Error::Invalid(format!("party {id}: socket: {e}")))?;
            let _ = link.sock.set_nodelay(true);
            link.conn.set_buffer_limit(Some(config.send_buffer_bytes));
        }
        Ok(TlsTransport {
            id,
            links,
            session: config.session_id,
            timeout: config.timeout,
            run: 0,
            ended: [None; 3],
            abort: None,
            send_peak: 0,
            out: Vec::with_capacity(RECORD_BYTES),
        })
    }

    /// Watch `abort` (e.g. the flag given to [`crate::Session::with_transports`]): a waiting receive stops within
    /// ~20 ms of it being set, and [`Transport::finish`] then tells the peers to abort instead of ending normally.
    pub fn with_abort_flag(mut self, abort: Arc<AtomicBool>) -> TlsTransport {
        self.abort = Some(abort);
        self
    }

    /// The most encrypted bytes that ever waited for one peer's socket (bounded by
    /// [`super::PeerConfig::send_buffer_bytes`] plus one write's TLS record overhead).
    pub fn send_buffer_peak(&self) -> usize {
        self.send_peak
    }

    fn error(&self, peer: PartyId, reason: impl Into<String>) -> Error {
        Error::Transport { party: self.id, peer, reason: reason.into() }
    }

    fn link(&mut self, peer: PartyId) -> Result<&mut Link> {
        let id = self.id;
        self.links.get_mut(peer).and_then(Option::as_mut).ok_or_else(|| Error::Transport {
            party: id,
            peer,
            reason: "no such peer".into(),
        })
    }

    fn aborted(&self) -> bool {
        self.abort.as_ref().is_some_and(|a| a.load(Ordering::SeqCst))
    }

    /// Pump every link; true when anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        for link in self.links.iter_mut().flatten() {
            moved |= link.pump();
        }
        moved
    }

    /// Nothing moved: sleep in the kernel until a socket can be read or written (one whose bytes wait for it), at
    /// most until `deadline` and for at most 20 ms at a time (the abort flag is looked at between waits).
    fn wait(&self, deadline: Instant) {
        let mut fds: Vec<libc::pollfd> = self
            .links
            .iter()
            .flatten()
            .map(|l| libc::pollfd { fd: l.sock.as_raw_fd(), events: l.poll_events(), revents: 0 })
            .filter(|p| p.events != 0)
            .collect();
        let wait = deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), ABORT_POLL);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that lives across the call, and every fd in it
        // is an open socket owned by a link of `self`. A failed or interrupted poll only ends the wait early.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis() as libc::c_int) };
    }

    /// Why a wait on `peer` must end now, if it must: its frame stream broke, it ended or aborted this run (for a
    /// send: also when its end-of-program or abort frame is still queued behind data), it closed its connection,
    /// or this party's run was aborted.
    fn stop(&self, peer: PartyId, sending: bool) -> Option<Error> {
        let link = self.links[peer].as_ref().expect("checked");
        if let Some(problem) = &link.broken {
            return Some(Error::Frame { party: self.id, peer, problem: problem.clone() });
        }
        let queued = || link.inbox.iter().find(|f| f.run == self.run && matches!(f.kind, Kind::End | Kind::Abort));
        let ended = self.ended[peer].or_else(|| if sending { queued().map(|f| (f.run, f.kind)) } else { None });
        if let Some((run, kind)) = ended {
            if run == self.run {
                return Some(match kind {
                    Kind::Abort => Error::Aborted { party: self.id, peer },
                    _ => Error::PeerFinished { party: self.id, peer },
                });
            }
        }
        let gone = if sending { link.unwritable.as_ref().or(link.closed.as_ref()) } else { link.closed.as_ref() };
        if let Some(why) = gone {
            return Some(self.error(peer, why.clone()));
        }
        if self.aborted() {
            return Some(Error::Aborted { party: self.id, peer });
        }
        None
    }

    /// Queue one frame for `to`, waiting for `to` to read whenever its send buffer is full.
    fn queue(&mut self, to: PartyId, kind: Kind, words: &[u64]) -> Result<()> {
        let (session, run) = (self.session, self.run);
        let link = self.link(to)?;
        let header = frame::header(kind, session, run, link.send_seq, words.len());
        link.send_seq += 1;
        // The header and the first bytes go in one write (a small frame is one TLS record), the rest straight from
        // the words' bytes, in chunks (the socket takes one while the next is encrypted).
        let mut encoded = Vec::new();
        let bytes = frame::le_bytes(words, &mut encoded);
        let (first, rest) = bytes.split_at(bytes.len().min(RECORD_BYTES - frame::HEADER_BYTES));
        let mut scratch = std::mem::take(&mut self.out);
        scratch.clear();
        scratch.extend_from_slice(&header);
        scratch.extend_from_slice(first);
        let result = self.write_bounded(to, &scratch);
        self.out = scratch;
        result?;
        rest.chunks(CHUNK_BYTES).try_for_each(|chunk| self.write_bounded(to, chunk))
    }

    /// Hand `bytes` to rustls for `to`; while `to`'s send buffer is full, pump every link until it has room.
    fn write_bounded(&mut self, to: PartyId, mut bytes: &[u8]) -> Result<()> {
        let mut deadline = Instant::now() + self.timeout;
        loop {
            let link = self.links[to].as_mut().expect("checked");
            let n = link.conn.writer().write(bytes).map_err(|e| Error::Transport {
                party: self.id,
                peer: to,
                reason: format!("cannot send: {e}"),
            })?;
            bytes = &bytes[n..];
            if n > 0 {
                let pending = link.pending();
                self.send_peak = self.send_peak.max(pending);
                link.write(); // start delivering while the rest is encrypted
            }
            if bytes.is_empty() {
                return Ok(());
            }
            if n > 0 {
                continue;
            }
            // Full: deliver to `to` (and keep reading both peers) until rustls takes more.
            let before = self.links[to].as_ref().expect("checked").written;
            let moved = self.pump();
            if let Some(e) = self.stop(to, true) {
                return Err(e);
            }
            if self.links[to].as_ref().expect("checked").written > before {
                deadline = Instant::now() + self.timeout;
            } else if Instant::now() >= deadline {
                return Err(self.error(to, format!("read nothing of what this party sent within {:?}", self.timeout)));
            } else if !moved {
                self.wait(deadline);
            }
        }
    }

    /// Push every pending byte out, up to the timeout (nothing is owed to a peer that closed its connection).
    fn flush_all(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let moved = self.pump();
            let owed = |l: &Link| l.closed.is_none() && l.conn.wants_write();
            let pending = (0..3).find(|&p| self.links[p].as_ref().is_some_and(owed));
            let Some(peer) = pending else { return Ok(()) };
            if let Some(why) = &self.links[peer].as_ref().expect("found").unwritable {
                return Err(self.error(peer, why.clone()));
            }
            if Instant::now() >= deadline {
                return Err(self.error(peer, format!("could not deliver within {:?}", self.timeout)));
            }
            if !moved {
                self.wait(deadline);
            }
        }
    }
}

impl Transport for TlsTransport {
    fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()> {
        self.queue(to, Kind::Data, &words)?;
        // The frame's bytes went to the socket as they were queued; incoming ones are read by the next wait.
        for link in self.links.iter_mut().flatten() {
            link.write();
        }
        match &self.links[to].as_ref().expect("checked").unwritable {
            Some(why) => Err(self.error(to, why.clone())),
            None => Ok(()),
        }
    }

    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
        self.link(from)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let run = self.run;
            let link = self.links[from].as_mut().expect("checked");
            while !matches!(self.ended[from], Some((r, _)) if r == run) {
                let Some(f) = link.inbox.pop_front() else { break };
                match f.kind {
                    Kind::Data if f.run == run => return Ok(f.words),
                    Kind::Data | Kind::End | Kind::Abort if f.run < run => {} // an earlier run's leftovers
                    Kind::End | Kind::Abort if f.run == run => self.ended[from] = Some((f.run, f.kind)),
                    kind => {
                        let expected = format!("a data frame of run {run}, found run {}", f.run);
                        let problem = FrameProblem::Unexpected { found: kind, expected };
                        return Err(Error::Frame { party: self.id, peer: from, problem });
                    }
                }
            }
            if let Some(e) = self.stop(from, false) {
                return Err(e);
            }
            if Instant::now() >= deadline {
                return Err(self.error(from, format!("no message within {:?}", self.timeout)));
            }
            if !self.pump() {
                self.wait(deadline);
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        let kind = if self.aborted() { Kind::Abort } else { Kind::End };
        let mut first = None;
        for peer in 0..3 {
            if self.links[peer].is_some() {
                if let Err(e) = self.queue(peer, kind, &[]) {
                    first.get_or_insert(e);
                }
            }
        }
        self.run += 1;
        let flushed = self.flush_all();
        match first {
            Some(e) => Err(e),
            None => flushed,
        }
    }

    /// Nothing to drain: frames of an earlier run are recognised by their run number and dropped.
    fn reset(&mut self) -> Result<bool> {
        Ok(true)
    }
}

impl TlsTransport {
    /// Tell both peers that this party failed (an abort frame): a peer waiting for this party stops at once with
    /// [`Error::Aborted`]. Ends this party's run like [`Transport::finish`].
    pub fn abort(&mut self) -> Result<()> {
        for peer in 0..3 {
            if self.links[peer].is_some() {
                self.queue(peer, Kind::Abort, &[])?;
            }
        }
        self.run += 1;
        self.flush_all()
    }

    /// Close both connections (TLS close_notify), after delivering what is pending.
    pub fn close(mut self) -> Result<()> {
        for link in self.links.iter_mut().flatten() {
            link.conn.send_close_notify();
        }
        self.flush_all()
    }
}
