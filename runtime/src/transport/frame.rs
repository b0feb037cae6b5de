//! The wire format of the network transports: every message is a fixed 40-byte header followed by its payload of
//! little-endian `u64` words.
//!
//! Header (all integers little-endian): magic `b"CGPU"`, version `u16` ([`VERSION`]), kind `u8` ([`Kind`]), one
//! zero byte, session id `u64`, run number `u64` (which [`crate::Session::run`] the frame belongs to, so frames of
//! an earlier, failed run are recognised and dropped), sequence number `u64` (per direction, from 0, no gaps),
//! payload length in words `u64`. [`FrameDecoder`] checks all of it, and the length against a configurable
//! maximum before it allocates anything, and names the peer and what was wrong in [`Error::Frame`].

use crate::{Error, PartyId, Result};
use std::collections::VecDeque;

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
///
/// Each frame's header is checked as soon as it is complete, before its payload is awaited or allocated; the
/// payload is decoded straight into its words as the bytes arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    party: PartyId,
    peer: PartyId,
    session: u64,
    max_words: u64,
    next_seq: u64,
    /// The header of the frame being received, and how much of it has arrived.
    header: [u8; HEADER_BYTES],
    header_len: usize,
    /// The frame whose payload is being received (its header checked).
    body: Option<Body>,
    /// Complete frames not yet taken.
    ready: VecDeque<Frame>,
    /// The stream broke here: reported after the frames before it.
    failed: Option<FrameProblem>,
}

/// A frame whose payload is arriving.
#[derive(Debug)]
struct Body {
    kind: Kind,
    run: u64,
    seq: u64,
    /// Payload words announced.
    total: usize,
    words: Vec<u64>,
    /// The bytes of a word that arrived in part.
    partial: [u8; 8],
    partial_len: usize,
}

impl FrameDecoder {
    /// A decoder for frames from `peer` to `party` in session `session`, refusing payloads over `max_words`.
    pub fn new(party: PartyId, peer: PartyId, session: u64, max_words: u64) -> FrameDecoder {
        FrameDecoder {
            party,
            peer,
            session,
            max_words,
            next_seq: 0,
            header: [0; HEADER_BYTES],
            header_len: 0,
            body: None,
            ready: VecDeque::new(),
            failed: None,
        }
    }

    /// Append received bytes: decode every frame they complete (nothing more after a wrong header).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.failed.is_none() {
            let Some(body) = &mut self.body else {
                let take = (HEADER_BYTES - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len == HEADER_BYTES {
                    self.header_len = 0;
                    match self.check_header() {
                        Ok(body) if body.total == 0 => self.complete(body),
                        Ok(body) => self.body = Some(body),
                        Err(problem) => self.failed = Some(problem),
                    }
                }
                continue;
            };
            if body.partial_len > 0 || bytes.len() < 8 {
                let take = (8 - body.partial_len).min(bytes.len());
                body.partial[body.partial_len..body.partial_len + take].copy_from_slice(&bytes[..take]);
                body.partial_len += take;
                bytes = &bytes[take..];
                if body.partial_len == 8 {
                    body.words.push(u64::from_le_bytes(body.partial));
                    body.partial_len = 0;
                }
            } else {
                let n = (body.total - body.words.len()).min(bytes.len() / 8);
                let (whole, rest) = bytes.split_at(n * 8);
                push_le_words(&mut body.words, whole);
                bytes = rest;
            }
            if body.words.len() == body.total {
                let body = self.body.take().expect("receiving a payload");
                self.complete(body);
            }
        }
    }

    fn complete(&mut self, body: Body) {
        self.ready.push_back(Frame { kind: body.kind, run: body.run, seq: body.seq, words: body.words });
    }

    /// Bytes fed but not yet decoded into a complete frame.
    pub fn pending(&self) -> usize {
        match &self.body {
            Some(b) => HEADER_BYTES + 8 * b.words.len() + b.partial_len,
            None => self.header_len,
        }
    }

    fn problem(&self, problem: FrameProblem) -> Error {
        Error::Frame { party: self.party, peer: self.peer, problem }
    }

    /// Check a complete header; the payload to receive.
    fn check_header(&mut self) -> std::result::Result<Body, FrameProblem> {
        let h = &self.header;
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let magic: [u8; 4] = h[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(FrameProblem::Magic { found: magic });
        }
        let version = u16::from_le_bytes([h[4], h[5]]);
        if version != VERSION {
            return Err(FrameProblem::Version { found: version });
        }
        let kind = match (Kind::from_byte(h[6]), h[7]) {
            (Some(kind), 0) => kind,
            _ => return Err(FrameProblem::Kind { kind: h[6], reserved: h[7] }),
        };
        let (session, run, seq, words) = (u64_at(8), u64_at(16), u64_at(24), u64_at(32));
        if session != self.session {
            return Err(FrameProblem::Session { expected: self.session, found: session });
        }
        if seq != self.next_seq {
            return Err(FrameProblem::Sequence { expected: self.next_seq, found: seq });
        }
        if words > self.max_words {
            return Err(FrameProblem::TooLong { words, max: self.max_words });
        }
        // words ≤ max_words; the byte count fits usize for any max below 2^61 on 64-bit targets.
        let total = usize::try_from(words)
            .ok()
            .filter(|w| w.checked_mul(8).is_some())
            .ok_or(FrameProblem::TooLong { words, max: self.max_words })?;
        self.next_seq += 1;
        Ok(Body { kind, run, seq, total, words: Vec::with_capacity(total), partial: [0; 8], partial_len: 0 })
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or an error naming the peer when a header
    /// was wrong (checked as soon as the header was complete, before the payload was awaited or allocated; the
    /// frames before it are returned first). After an error the stream is out of step: nothing more is decoded.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if let Some(f) = self.ready.pop_front() {
            return Ok(Some(f));
        }
        match &self.failed {
            Some(problem) => Err(self.problem(problem.clone())),
            None => Ok(None),
        }
    }
}

/// Append the little-endian words of `bytes` (a multiple of 8 bytes) to `words`.
fn push_le_words(words: &mut Vec<u64>, bytes: &[u8]) {
    let n = bytes.len() / 8;
    #[cfg(target_endian = "little")]
    {
        words.reserve(n);
        let spare = words.spare_capacity_mut();
        // SAFETY: `reserve` made room for `n` more words, so `spare` holds at least `8 n` bytes, which cannot overlap
        // `bytes` (a slice borrowed from elsewhere). On a little-endian target a word's memory is its little-endian
        // encoding, and every bit pattern is a valid u64, so the first `n` spare words are initialised by the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), spare.as_mut_ptr().cast::<u8>(), 8 * n);
            words.set_len(words.len() + n);
        }
    }
    #[cfg(not(target_endian = "little"))]
    words.extend(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))));
}

/// The little-endian encoding of `words`, borrowed where the target is little-endian (no copy) and encoded into
/// `scratch` elsewhere.
pub(crate) fn le_bytes<'a>(words: &'a [u64], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    #[cfg(target_endian = "little")]
    {
        let _ = scratch;
        // SAFETY: the slice covers exactly the `8 words.len()` initialised bytes of `words`, borrowed for as long
        // as `words`; u8 has alignment 1; on a little-endian target these bytes are the little-endian encoding.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 8 * words.len()) }
    }
    #[cfg(not(target_endian = "little"))]
    {
        scratch.clear();
        scratch.extend(words.iter().flat_map(|w| w.to_le_bytes()));
        scratch
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
