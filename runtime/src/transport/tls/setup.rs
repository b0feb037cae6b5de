//! Connection set-up: party `i` dials every party with a smaller id (retrying with backoff until the set-up
//! deadline, so start order does not matter) and accepts the parties with a larger id, then each pair runs the TLS
//! handshake (both certificates pinned) and exchanges hello frames naming their party ids.
//!
//! The listener drives every incoming connection's handshake and hello at once, without blocking, each with its own
//! deadline (`min(set-up deadline, now + PeerConfig::handshake_timeout)`). A client that is not one of the expected
//! peers — plain TCP that does not speak TLS, a certificate other than the pinned ones, a handshake or hello that
//! does not complete in time, a hello that contradicts the certificate, a second connection of a connected peer —
//! is refused (closed before any job data moves) and remembered, and the listener keeps accepting until the
//! expected peers are in or the set-up deadline passes; the deadline error ([`Error::NotConnected`]) names the
//! missing parties and the refused clients (how many, the last one and why).

use super::super::frame::{self, FrameDecoder, Kind};
use super::identity::Pinned;
use super::link::{Link, TlsTransport};
use super::{PeerConfig, TlsIdentity, MIN_SEND_BUFFER_BYTES};
use crate::{Error, PartyId, Result};
use rustls::crypto::ring as provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most incoming connections in set-up at once; more wait in the listen backlog.
const MAX_PENDING: usize = 16;
/// How long set-up sleeps when no connection made progress.
const POLL: Duration = Duration::from_millis(1);

/// Connect party `id` to its two peers over mutual TLS, listening on `config.addresses[id]`.
pub fn connect_tls(id: PartyId, identity: &TlsIdentity, config: &PeerConfig) -> Result<TlsTransport> {
    let addr = config.addresses.get(id).ok_or_else(|| Error::Invalid(format!("party id {id} is not 0, 1 or 2")))?;
    let listener =
        TcpListener::bind(addr).map_err(|e| Error::Invalid(format!("party {id}: cannot listen on {addr}: {e}")))?;
    connect_tls_on(id, identity, config, listener)
}

/// [`connect_tls`] on an already bound listener (e.g. one bound to port 0, whose address was then shared).
pub fn connect_tls_on(
    id: PartyId,
    identity: &TlsIdentity,
    config: &PeerConfig,
    listener: TcpListener,
) -> Result<TlsTransport> {
    if id > 2 {
        return Err(Error::Invalid(format!("party id {id} is not 0, 1 or 2")));
    }
    if config.send_buffer_bytes < MIN_SEND_BUFFER_BYTES {
        return Err(Error::Invalid(format!(
            "PeerConfig::send_buffer_bytes is {}, less than the minimum of {MIN_SEND_BUFFER_BYTES} (one TLS record)",
            config.send_buffer_bytes
        )));
    }
    let provider = Arc::new(provider::default_provider());
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone()));
    let chain = vec![CertificateDer::from(identity.cert_der.clone())];
    let invalid = |e: rustls::Error| Error::Invalid(format!("party {id}: unusable TLS identity: {e}"));
    let deadline = Instant::now() + config.timeout;
    let mut links: [Option<Link>; 3] = [None, None, None];
    // Dial the parties with a smaller id.
    #[allow(clippy::needless_range_loop)] // `peer` indexes three arrays of the config and the links
    for peer in 0..id {
        let verifier = Arc::new(Pinned {
            certs: vec![config.certs[peer].clone()],
            whose: format!("party {peer}"),
            provider: provider.clone(),
        });
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain.clone(), key())
            .map_err(invalid)?;
        let addr = config.addresses[peer];
        let name = ServerName::try_from(format!("cryptgpu-party-{peer}")).expect("a valid DNS name");
        let sock = connect_retrying(id, peer, addr, deadline)?;
        let conn = ClientConnection::new(Arc::new(client), name).map_err(invalid)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let mut dialled = Pending::new(id, conn.into(), sock, addr, Some(peer), left)
            .map_err(|e| Error::Transport { party: id, peer, reason: format!("socket: {e}") })?;
        links[peer] = Some(loop {
            match dialled.step(config, &[]) {
                Ok(Step::Ready) => break dialled.into_link(),
                Ok(Step::Waiting { moved }) => {
                    if Instant::now() >= deadline {
                        let reason = "no TLS handshake and hello within the set-up timeout".to_string();
                        return Err(Error::Peer { party: id, peer: dialled.who, reason });
                    }
                    if !moved {
                        std::thread::sleep(POLL);
                    }
                }
                Err(reason) => return Err(Error::Peer { party: id, peer: dialled.who, reason }),
            }
        });
    }
    // Accept the parties with a larger id.
    let later: Vec<PartyId> = (id + 1..3).collect();
    if !later.is_empty() {
        let verifier = Arc::new(Pinned {
            certs: later.iter().map(|&p| config.certs[p].clone()).collect(),
            whose: later.iter().map(|p| format!("party {p}")).collect::<Vec<_>>().join(" or "),
            provider,
        });
        let server = Arc::new(
            ServerConfig::builder_with_provider(verifier.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(invalid)?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key())
                .map_err(invalid)?,
        );
        listener.set_nonblocking(true).map_err(|e| Error::Invalid(format!("party {id}: listener: {e}")))?;
        accept(id, &listener, &server, config, &later, deadline, &mut links)?;
    }
    TlsTransport::new(id, links, config)
}

/// Clients refused so far: how many, and the last one with its reason.
#[derive(Default)]
struct Refused {
    count: usize,
    last: Option<String>,
}

impl Refused {
    fn note(&mut self, who: &str, reason: &str) {
        self.count += 1;
        self.last = Some(format!("{who}: {reason}"));
    }
}

/// Accept connections until every party of `later` has completed its handshake and hello, refusing every other
/// client, or until `deadline`.
fn accept(
    id: PartyId,
    listener: &TcpListener,
    server: &Arc<ServerConfig>,
    config: &PeerConfig,
    later: &[PartyId],
    deadline: Instant,
    links: &mut [Option<Link>; 3],
) -> Result<()> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut refused = Refused::default();
    while later.iter().any(|&p| links[p].is_none()) {
        let mut moved = false;
        while pending.len() < MAX_PENDING {
            let (sock, addr) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // A client that hung up before it was accepted.
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::Interrupted) => continue,
                Err(e) => return Err(Error::Invalid(format!("party {id}: accept failed: {e}"))),
            };
            moved = true;
            let left = deadline.saturating_duration_since(Instant::now());
            let allowed = Duration::from_millis(config.handshake_timeout.min(left).as_millis() as u64);
            let conn = ServerConnection::new(server.clone())
                .map_err(|e| Error::Invalid(format!("party {id}: unusable TLS identity: {e}")))?;
            match Pending::new(id, conn.into(), sock, addr, None, allowed) {
                Ok(p) => pending.push(p),
                Err(e) => refused.note(&format!("unidentified client ({addr})"), &e.to_string()),
            }
        }
        let mut i = 0;
        while i < pending.len() {
            let p = &mut pending[i];
            match p.step(config, later) {
                Ok(Step::Waiting { moved: m }) if Instant::now() < p.deadline => {
                    moved |= m;
                    i += 1;
                }
                Ok(Step::Waiting { .. }) => {
                    let what = if p.conn.is_handshaking() { "its TLS handshake" } else { "its hello" };
                    refused.note(&p.who, &format!("did not complete {what} within {:?}", p.allowed));
                    pending.swap_remove(i);
                }
                Ok(Step::Ready) => {
                    let p = pending.swap_remove(i);
                    let peer = p.peer.expect("a ready connection knows its peer");
                    if links[peer].is_some() {
                        refused.note(&p.who, "a second connection from this party");
                    } else {
                        links[peer] = Some(p.into_link());
                    }
                    moved = true;
                }
                Err(reason) => {
                    refused.note(&p.who, &reason);
                    pending.swap_remove(i); // dropped: the socket closes
                    moved = true;
                }
            }
        }
        if later.iter().all(|&p| links[p].is_some()) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::NotConnected {
                party: id,
                missing: later.iter().copied().filter(|&p| links[p].is_none()).collect(),
                waited: config.timeout,
                refused: refused.count,
                last_refusal: refused.last,
            });
        }
        if !moved {
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

fn connect_retrying(id: PartyId, peer: PartyId, addr: SocketAddr, deadline: Instant) -> Result<TcpStream> {
    let mut wait = Duration::from_millis(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1))) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() + wait >= deadline => {
                return Err(Error::Transport { party: id, peer, reason: format!("cannot connect to {addr}: {e}") })
            }
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// What a step of a connection in set-up reached.
enum Step {
    /// Handshake or hello still under way; `moved`: bytes moved in this step.
    Waiting { moved: bool },
    /// The handshake is done and the peer's hello checked.
    Ready,
}

/// A connection whose TLS handshake or hello exchange is under way, on a non-blocking socket.
struct Pending {
    conn: Connection,
    sock: TcpStream,
    addr: SocketAddr,
    /// `party N (address)` once known, `unidentified client (address)` before.
    who: String,
    /// The peer: known when dialled, from its certificate (after the handshake) when accepted.
    peer: Option<PartyId>,
    /// This party's id.
    id: PartyId,
    /// How long it may take, and until when.
    allowed: Duration,
    deadline: Instant,
    /// The hello exchange: started once the handshake is done.
    hello: Option<FrameDecoder>,
}

impl Pending {
    fn new(
        id: PartyId,
        conn: Connection,
        sock: TcpStream,
        addr: SocketAddr,
        peer: Option<PartyId>,
        allowed: Duration,
    ) -> std::io::Result<Pending> {
        sock.set_nonblocking(true)?;
        let who = match peer {
            Some(p) => format!("party {p} ({addr})"),
            None => format!("unidentified client ({addr})"),
        };
        let deadline = Instant::now() + allowed;
        Ok(Pending { conn, sock, addr, who, peer, id, allowed, deadline, hello: None })
    }

    /// Move what the socket allows; `Err(reason)` refuses the connection. `later`: the peers an accepted client
    /// may be (its certificate says which).
    fn step(&mut self, config: &PeerConfig, later: &[PartyId]) -> std::result::Result<Step, String> {
        let mut moved = self.write()?;
        match self.conn.read_tls(&mut self.sock) {
            Ok(0) if self.conn.is_handshaking() => return Err("closed the connection during the TLS handshake".into()),
            Ok(0) => return Err("closed the connection before its hello (did it refuse our certificate?)".into()),
            Ok(_) => {
                moved = true;
                if let Err(e) = self.conn.process_new_packets() {
                    let _ = self.conn.write_tls(&mut self.sock); // the alert that tells the client why, if it fits
                    let when = if self.hello.is_some() { "TLS error before its hello" } else { "TLS handshake failed" };
                    return Err(format!("{when}: {e}"));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("connection failed during set-up: {e}")),
        }
        if self.conn.is_handshaking() {
            return Ok(Step::Waiting { moved });
        }
        let peer = match self.peer {
            Some(p) => p,
            None => {
                // The verifier accepted only pinned certificates: the certificate says who it is.
                let presented = self.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                let found = later.iter().copied().find(|&p| presented.as_deref() == Some(config.certs[p].as_slice()));
                let p = found.ok_or("its certificate is not pinned for any peer that connects to this party")?;
                self.who = format!("party {p} ({})", self.addr);
                self.peer = Some(p);
                p
            }
        };
        let id = self.id;
        let decoder = match &mut self.hello {
            Some(d) => d,
            None => {
                let hello = frame::encode(Kind::Hello, config.session_id, 0, 0, &[id as u64]);
                self.conn.writer().write_all(&hello).map_err(|e| format!("cannot send hello: {e}"))?;
                moved |= self.write()?;
                self.hello.insert(FrameDecoder::new(id, peer, config.session_id, config.max_frame_words))
            }
        };
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return Err("closed the connection before its hello".into()),
                Ok(n) => decoder.feed(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("connection failed before its hello: {e}")),
            }
        }
        match decoder.next_frame() {
            Ok(Some(f)) if f.kind == Kind::Hello && f.words == [peer as u64] => {
                // Deliver the rest of our side now: the link is not pumped until set-up is done.
                while self.conn.wants_write() && Instant::now() < self.deadline {
                    std::thread::sleep(POLL);
                    self.write()?;
                }
                Ok(Step::Ready)
            }
            Ok(Some(f)) => {
                Err(format!("its hello says {:?} {:?}, expected a hello from party {peer}", f.kind, f.words))
            }
            Ok(None) => Ok(Step::Waiting { moved }),
            Err(e) => Err(format!("bad hello: {e}")),
        }
    }

    /// Write what the socket takes; true when anything was written.
    fn write(&mut self) -> std::result::Result<bool, String> {
        let mut moved = false;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("connection failed during set-up: {e}")),
            }
        }
        Ok(moved)
    }

    /// The established link (the hello frame has sequence number 0 each way).
    fn into_link(self) -> Link {
        let decoder = self.hello.expect("a ready connection exchanged hellos");
        Link::new(self.conn, self.sock, decoder, 1)
    }
}
