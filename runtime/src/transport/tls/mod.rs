//! TCP transport with mutual TLS (rustls, ring provider): one party per process, each pinning its two peers'
//! self-signed certificates.
//!
//! Party `i` listens on its address; it connects to every party with a smaller id (retrying with backoff until
//! the timeout, so start order does not matter) and accepts the parties with a larger id: one connection per pair.
//! Each side of a connection requires the other's end-entity certificate to equal, byte for byte, the one pinned
//! for that party ([`PeerConfig::certs`]); the handshake signatures are checked by rustls's own functions. After the
//! handshake the two exchange a hello frame naming their party id, checked against the certificate. Messages then
//! travel as frames ([`super::frame`]): a frame of another session, out of order or over the maximum size ends the
//! run with [`crate::Error::Frame`] naming the peer.
//!
//! Three parts:
//! - `identity`: a party's key pair and certificate ([`TlsIdentity`], [`load_cert`]) and the verifier that
//!   accepts exactly the pinned certificates;
//! - `setup`: listening, connecting with backoff, the handshakes and hellos ([`connect_tls`], [`connect_tls_on`]).
//!   A client that is not a peer (a port scanner, a wrong certificate, a handshake that never completes within
//!   [`PeerConfig::handshake_timeout`]) is refused and the listener keeps waiting for the real peers;
//! - `link`: the running transport ([`TlsTransport`]): non-blocking sockets, bounded send buffers
//!   ([`PeerConfig::send_buffer_bytes`]), receive timeouts, end-of-program and abort frames.

mod identity;
mod link;
mod setup;

pub use identity::{load_cert, TlsIdentity};
pub use link::TlsTransport;
pub use setup::{connect_tls, connect_tls_on};

use super::frame::DEFAULT_MAX_FRAME_WORDS;
use std::net::SocketAddr;
use std::time::Duration;

/// Default time a party waits for a peer's message (and for connection set-up).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest time one incoming connection may take for its TLS handshake and hello during set-up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest amount of encrypted bytes buffered for one peer before a send waits for the peer to read.
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 64 << 20;
/// Smallest accepted [`PeerConfig::send_buffer_bytes`]: one TLS record.
pub const MIN_SEND_BUFFER_BYTES: usize = 16 << 10;

/// Where the three parties are and whom to trust.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Each party's listening address (party `i` listens on `addresses[i]`).
    pub addresses: [SocketAddr; 3],
    /// Each party's pinned certificate (DER); a party's own entry is its own certificate.
    pub certs: [Vec<u8>; 3],
    /// How long connection set-up may take and a receive may wait (default 30 s).
    pub timeout: Duration,
    /// How long one incoming connection may take for its handshake and hello (default 10 s, and never past the
    /// set-up deadline): a client that is slower is refused and the listener goes on waiting for the real peers.
    pub handshake_timeout: Duration,
    /// Encrypted bytes buffered per peer before a send waits for that peer to read (default 64 MiB, at least
    /// [`MIN_SEND_BUFFER_BYTES`]).
    pub send_buffer_bytes: usize,
    /// Largest frame payload accepted, in words (default 2^28).
    pub max_frame_words: u64,
    /// The session id every frame must carry (the three parties agree on it out of band).
    pub session_id: u64,
}

impl PeerConfig {
    /// Addresses and pinned certificates with the default timeouts, send buffer and frame limit.
    pub fn new(addresses: [SocketAddr; 3], certs: [Vec<u8>; 3], session_id: u64) -> PeerConfig {
        PeerConfig {
            addresses,
            certs,
            timeout: DEFAULT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            send_buffer_bytes: DEFAULT_SEND_BUFFER_BYTES,
            max_frame_words: DEFAULT_MAX_FRAME_WORDS,
            session_id,
        }
    }
}
