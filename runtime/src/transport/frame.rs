//! The wire format of the network transports: every message is a fixed 40-byte header followed by its payload of
//! little-endian `u64` words.
//!
//! Header (all integers little-endian): magic `b"CGPU"`, version `u16` ([`VERSION`]), kind `u8` ([`Kind`]), one
//! zero byte, session id `u64`, run number `u64` (which [`crate::Session::run`] the frame belongs to, so frames of
//! an earlier, failed run are recognised and dropped), sequence number `u64` (per direction, from 0, no gaps),
//! payload length in words `u64`. [`FrameDecoder`] checks all of it, and the length against a configurable
//! maximum before it allocates anything, and names the peer and what was wrong in [`Error::Frame`].

use crate::{Error, PartyId, Result};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CGPU";
/// The wire-format version this build speaks.
pub const VERSION: u16 = 1;
/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 40;
/// Default largest payload, in words: 2^28 words (2 GiB), the default of [`crate::Config::max_elements`].
pub const DEFAULT_MAX_FRAME_WORDS: u64 = 1 << 28;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A protocol message.
    Data = 0,
    /// The sender's program of this run has returned: nothing more comes in this run.
    End = 1,
    /// The sender's program failed: the receiver stops waiting at once.
    Abort = 2,
    /// The first frame on a connection: payload `[party id]`.
    Hello = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Data),
            1 => Some(Kind::End),
            2 => Some(Kind::Abort),
            3 => Some(Kind::Hello),
            _ => None,
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: Kind,
    /// The run it belongs to.
    pub run: u64,
    /// Its sequence number in its direction.
    pub seq: u64,
    /// The payload.
    pub words: Vec<u64>,
}

/// What was wrong with a received frame ([`Error::Frame`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameProblem {
    /// The frame does not start with [`MAGIC`]: not a cryptgpu peer, or the stream is out of step.
    #[error("bad magic {found:02x?} (expected {MAGIC:02x?})")]
    Magic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// A wire-format version this build does not speak.
    #[error("wire-format version {found}, this build speaks {VERSION}")]
    Version {
        /// The version found.
        found: u16,
    },
    /// An unknown frame kind or a nonzero reserved byte.
    #[error("unknown frame kind {kind} (reserved byte {reserved})")]
    Kind {
        /// The kind byte.
        kind: u8,
        /// The reserved byte.
        reserved: u8,
    },
    /// A frame of another session.
    #[error("session id {found:#018x}, expected {expected:#018x}")]
    Session {
        /// This session's id.
        expected: u64,
        /// The id in the frame.
        found: u64,
    },
    /// A missing, repeated or reordered frame.
    #[error("sequence number {found}, expected {expected}")]
    Sequence {
        /// The next sequence number in this direction.
        expected: u64,
        /// The one in the frame.
        found: u64,
    },
    /// A payload over the configured maximum.
    #[error("payload of {words} words, more than the maximum of {max} words")]
    TooLong {
        /// Announced payload words.
        words: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A frame of a kind not expected at this point (e.g. a second hello).
    #[error("unexpected {found:?} frame: {expected}")]
    Unexpected {
        /// The kind received.
        found: Kind,
        /// What was expected instead.
        expected: String,
    },
}

/// The header of a frame of `words` payload words.
pub fn header(kind: Kind, session: u64, run: u64, seq: u64, words: usize) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6] = kind as u8;
    h[8..16].copy_from_slice(&session.to_le_bytes());
    h[16..24].copy_from_slice(&run.to_le_bytes());
    h[24..32].copy_from_slice(&seq.to_le_bytes());
    h[32..40].copy_from_slice(&(words as u64).to_le_bytes());
    h
}

/// Encode one frame (header and payload) into bytes.
pub fn encode(kind: Kind, session: u64, run: u64, seq: u64, words: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + 8 * words.len());
    out.extend_from_slice(&header(kind, session, run, seq, words.len()));
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Decodes the frames one peer sends to this party from a byte stream fed in pieces of any size.
#[derive(Debug)]
pub struct FrameDecoder {
    party: PartyId,
    peer: PartyId,
    session: u64,
    max_words: u64,
    next_seq: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
}

impl FrameDecoder {
    /// A decoder for frames from `peer` to `party` in session `session`, refusing payloads over `max_words`.
    pub fn new(party: PartyId, peer: PartyId, session: u64, max_words: u64) -> FrameDecoder {
        FrameDecoder { party, peer, session, max_words, next_seq: 0, buf: Vec::new(), start: 0 }
    }

    /// Append received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn problem(&self, problem: FrameProblem) -> Error {
        Error::Frame { party: self.party, peer: self.peer, problem }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or an error naming the peer when the
    /// header is wrong (checked as soon as the header is complete, before the payload is awaited or allocated).
    /// After an error the stream is out of step: the decoder must not be used again.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_BYTES {
            return Ok(None);
        }
        let h = &avail[..HEADER_BYTES];
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let magic: [u8; 4] = h[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(self.problem(FrameProblem::Magic { found: magic }));
        }
        let version = u16::from_le_bytes([h[4], h[5]]);
        if version != VERSION {
            return Err(self.problem(FrameProblem::Version { found: version }));
        }
        let kind = match (Kind::from_byte(h[6]), h[7]) {
            (Some(kind), 0) => kind,
            _ => return Err(self.problem(FrameProblem::Kind { kind: h[6], reserved: h[7] })),
        };
        let (session, run, seq, words) = (u64_at(8), u64_at(16), u64_at(24), u64_at(32));
        if session != self.session {
            return Err(self.problem(FrameProblem::Session { expected: self.session, found: session }));
        }
        if seq != self.next_seq {
            return Err(self.problem(FrameProblem::Sequence { expected: self.next_seq, found: seq }));
        }
        if words > self.max_words {
            return Err(self.problem(FrameProblem::TooLong { words, max: self.max_words }));
        }
        // words ≤ max_words; the product fits u64 for any max below 2^61, and usize on 64-bit targets.
        let bytes = usize::try_from(words.saturating_mul(8))
            .map_err(|_| self.problem(FrameProblem::TooLong { words, max: self.max_words }))?;
        if avail.len() - HEADER_BYTES < bytes {
            return Ok(None);
        }
        let payload = &avail[HEADER_BYTES..HEADER_BYTES + bytes];
        let words = payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        self.start += HEADER_BYTES + bytes;
        self.next_seq += 1;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) && self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(Frame { kind, run, seq, words }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let mut bytes = encode(Kind::Data, 7, 0, 0, &[1, u64::MAX, 3]);
        bytes.extend(encode(Kind::End, 7, 0, 1, &[]));
        let mut d = FrameDecoder::new(0, 1, 7, 16);
        let mut frames = Vec::new();
        for b in bytes.chunks(3) {
            d.feed(b);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].words, vec![1, u64::MAX, 3]);
        assert_eq!(frames[1].kind, Kind::End);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn refuses_bad_headers_naming_the_peer() {
        let cases: [(Vec<u8>, &str); 4] = [
            (encode(Kind::Data, 8, 0, 0, &[1]), "session id"),
            (encode(Kind::Data, 7, 0, 1, &[1]), "sequence number 1, expected 0"),
            (encode(Kind::Data, 7, 0, 0, &[0; 17]), "17 words, more than the maximum of 16"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef".to_vec(), "bad magic"),
        ];
        for (bytes, want) in cases {
            let mut d = FrameDecoder::new(0, 2, 7, 16);
            d.feed(&bytes);
            let e = d.next_frame().unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want) && msg.contains("party 2"), "{msg}");
        }
    }
}
