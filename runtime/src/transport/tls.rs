//! TCP transport with mutual TLS (rustls, ring provider): one party per process, each pinning its two peers'
//! self-signed certificates.
//!
//! Party `i` listens on its address; it connects to every party with a smaller id (retrying with backoff until
//! the timeout, so start order does not matter) and accepts the parties with a larger id: one connection per pair.
//! Each side of a connection requires the other's end-entity certificate to equal, byte for byte, the one pinned
//! for that party ([`PeerConfig::certs`]); the handshake signatures are checked by rustls's own functions. After the
//! handshake the two exchange a hello frame naming their party id, checked against the certificate. Messages then
//! travel as frames ([`super::frame`]): a frame of another session, out of order or over the maximum size ends the
//! run with [`Error::Frame`] naming the peer.
//!
//! The sockets are non-blocking: a send buffers its frame and writes what the socket takes, a receive keeps
//! writing every pending frame and reading every peer while it waits, so two parties that send large messages to
//! each other at once never deadlock. A receive fails after [`PeerConfig::timeout`] without a frame from its peer,
//! at once when the peer closes its connection, ends its program ([`Error::PeerFinished`]) or aborts
//! ([`Error::Aborted`]), and within ~20 ms of the optional shared abort flag being set. Every frame carries the
//! number of the run it belongs to (one run per [`Transport::finish`]), so frames of an earlier, failed run are
//! dropped and [`Transport::reset`] needs no draining.

use super::frame::{self, FrameDecoder, Kind, DEFAULT_MAX_FRAME_WORDS};
use super::Transport;
use crate::{Error, PartyId, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, ClientConnection, Connection, DigitallySignedStruct, DistinguishedName, ServerConfig};
use rustls::{ServerConnection, SignatureScheme};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a waiting receive sleeps before it looks at the abort flag again.
const ABORT_POLL: Duration = Duration::from_millis(20);

/// Default time a party waits for a peer's message (and for connection set-up).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A party's TLS key pair and self-signed certificate (DER).
#[derive(Clone)]
pub struct TlsIdentity {
    /// The self-signed certificate (DER), the one its peers pin.
    pub cert_der: Vec<u8>,
    /// The private key (PKCS#8 DER).
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("cert_der", &self.cert_der.len()).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A fresh ECDSA P-256 key pair and a self-signed certificate for `party` (subject `cryptgpu party N`).
    pub fn generate(party: PartyId) -> Result<TlsIdentity> {
        let fail = |e: rcgen::Error| Error::Invalid(format!("cannot generate the certificate of party {party}: {e}"));
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(vec![format!("cryptgpu-party-{party}")]).map_err(fail)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("cryptgpu party {party}"));
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(TlsIdentity { cert_der: cert.der().to_vec(), key_der: key.serialize_der() })
    }

    /// The certificate in PEM.
    pub fn cert_pem(&self) -> String {
        pem_block("CERTIFICATE", &self.cert_der)
    }

    /// The private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        pem_block("PRIVATE KEY", &self.key_der)
    }

    /// Write `party-N.crt` and `party-N.key` (mode 0600 on Unix) into `dir`.
    pub fn save(&self, dir: &Path, party: PartyId) -> Result<()> {
        let io = |p: &Path, e: std::io::Error| Error::Invalid(format!("cannot write {}: {e}", p.display()));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let (cert, key) = (dir.join(format!("party-{party}.crt")), dir.join(format!("party-{party}.key")));
        std::fs::write(&cert, self.cert_pem()).map_err(|e| io(&cert, e))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&key).map_err(|e| io(&key, e))?;
        f.write_all(self.key_pem().as_bytes()).map_err(|e| io(&key, e))?;
        Ok(())
    }

    /// Read a certificate PEM file and a PKCS#8 private-key PEM file.
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<TlsIdentity> {
        let cert_der = load_cert(cert_pem)?;
        let key_der = PrivatePkcs8KeyDer::from_pem_file(key_pem)
            .map_err(|e| Error::Invalid(format!("{}: not a PKCS#8 private key in PEM: {e}", key_pem.display())))?
            .secret_pkcs8_der()
            .to_vec();
        Ok(TlsIdentity { cert_der, key_der })
    }
}

/// Read one certificate (DER) from a PEM file: a peer's certificate to pin.
pub fn load_cert(path: &Path) -> Result<Vec<u8>> {
    CertificateDer::from_pem_file(path)
        .map(|c| c.to_vec())
        .map_err(|e| Error::Invalid(format!("{}: not a certificate in PEM: {e}", path.display())))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Where the three parties are and whom to trust.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Each party's listening address (party `i` listens on `addresses[i]`).
    pub addresses: [SocketAddr; 3],
    /// Each party's pinned certificate (DER); a party's own entry is its own certificate.
    pub certs: [Vec<u8>; 3],
    /// How long connection set-up may take and a receive may wait (default 30 s).
    pub timeout: Duration,
    /// Largest frame payload accepted, in words (default 2^28).
    pub max_frame_words: u64,
    /// The session id every frame must carry (the three parties agree on it out of band).
    pub session_id: u64,
}

impl PeerConfig {
    /// Addresses and pinned certificates with the default timeout and frame limit.
    pub fn new(addresses: [SocketAddr; 3], certs: [Vec<u8>; 3], session_id: u64) -> PeerConfig {
        PeerConfig { addresses, certs, timeout: DEFAULT_TIMEOUT, max_frame_words: DEFAULT_MAX_FRAME_WORDS, session_id }
    }
}

/// Accepts exactly the pinned certificate(s); signatures are checked by rustls with the ring provider.
#[derive(Debug)]
struct Pinned {
    /// The acceptable end-entity certificates.
    certs: Vec<Vec<u8>>,
    /// Whose they are, for the refusal: `party 0`, `party 1 or party 2`.
    whose: String,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    /// The handshake signature, checked by rustls's own functions with the provider's algorithms (both verifier
    /// roles use it).
    fn signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        if tls13 {
            verify_tls13_signature(message, cert, dss, algs)
        } else {
            verify_tls12_signature(message, cert, dss, algs)
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        if self.certs.iter().any(|c| c.as_slice() == end_entity.as_ref()) {
            Ok(())
        } else {
            let why = format!("the presented certificate is not the pinned certificate of {}", self.whose);
            let other = rustls::OtherError(Arc::new(std::io::Error::other(why)));
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|_| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(false, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(true, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|_| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(false, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(true, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One authenticated connection to a peer.
struct Link {
    conn: Connection,
    sock: TcpStream,
    decoder: FrameDecoder,
    send_seq: u64,
    /// The peer closed the connection (cleanly or not): what it said.
    closed: Option<String>,
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
}

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
    let provider = Arc::new(provider::default_provider());
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone()));
    let chain = vec![CertificateDer::from(identity.cert_der.clone())];
    let invalid = |e: rustls::Error| Error::Invalid(format!("party {id}: unusable TLS identity: {e}"));
    let deadline = Instant::now() + config.timeout;
    let mut links: [Option<Link>; 3] = [None, None, None];
    // Connect to the parties with a smaller id.
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
        let who = format!("party {peer} ({addr})");
        let link = handshake(id, conn.into(), sock, &who, config, deadline)?;
        links[peer] = Some(hello(id, peer, link, &who, config, deadline)?);
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
        while later.iter().any(|&p| links[p].is_none()) {
            let (sock, addr) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<_> = later.iter().filter(|&&p| links[p].is_none()).collect();
                        return Err(Error::Transport {
                            party: id,
                            peer: *missing[0],
                            reason: format!("party {} did not connect within {:?}", missing[0], config.timeout),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => return Err(Error::Invalid(format!("party {id}: accept failed: {e}"))),
            };
            sock.set_nonblocking(false).map_err(|e| Error::Invalid(format!("party {id}: socket: {e}")))?;
            let conn = ServerConnection::new(server.clone()).map_err(invalid)?;
            let link = handshake(id, conn.into(), sock, &format!("unidentified client ({addr})"), config, deadline)?;
            // The certificate says who it is (the verifier accepted only pinned ones).
            let presented = link.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
            let peer = later.iter().copied().find(|&p| presented.as_deref() == Some(config.certs[p].as_slice()));
            let Some(peer) = peer else {
                return Err(Error::Peer {
                    party: id,
                    peer: format!("unidentified client ({addr})"),
                    reason: "its certificate is not pinned for any peer that connects to this party".into(),
                });
            };
            let who = format!("party {peer} ({addr})");
            if links[peer].is_some() {
                return Err(Error::Peer { party: id, peer: who, reason: "a second connection from this party".into() });
            }
            links[peer] = Some(hello(id, peer, link, &who, config, deadline)?);
        }
    }
    for link in links.iter().flatten() {
        link.sock.set_nonblocking(true).map_err(|e| Error::Invalid(format!("party {id}: socket: {e}")))?;
        let _ = link.sock.set_nodelay(true);
    }
    Ok(TlsTransport {
        id,
        links,
        session: config.session_id,
        timeout: config.timeout,
        run: 0,
        ended: [None; 3],
        abort: None,
    })
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

/// Complete the TLS handshake on a blocking socket with the set-up deadline.
fn handshake(
    id: PartyId,
    mut conn: Connection,
    mut sock: TcpStream,
    who: &str,
    config: &PeerConfig,
    deadline: Instant,
) -> Result<Link> {
    let refuse = |reason: String| Error::Peer { party: id, peer: who.to_string(), reason };
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
    sock.set_read_timeout(Some(left))
        .and_then(|_| sock.set_write_timeout(Some(left)))
        .map_err(|e| refuse(e.to_string()))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(refuse(format!("TLS handshake failed: {e}")));
        }
    }
    // Frames may be large: let rustls buffer whatever a send queues (the socket takes it as the peer reads).
    conn.set_buffer_limit(None);
    // The peer's verifier may refuse us only after our side finished: the hello exchange then fails.
    Ok(Link {
        conn,
        sock,
        decoder: FrameDecoder::new(id, usize::MAX, config.session_id, config.max_frame_words),
        send_seq: 0,
        closed: None,
    })
}

/// Exchange hello frames (sequence 0 each way) and check that the peer is `peer`.
fn hello(
    id: PartyId,
    peer: PartyId,
    mut link: Link,
    who: &str,
    config: &PeerConfig,
    deadline: Instant,
) -> Result<Link> {
    let refuse = |reason: String| Error::Peer { party: id, peer: who.to_string(), reason };
    link.decoder = FrameDecoder::new(id, peer, config.session_id, config.max_frame_words);
    let bytes = frame::encode(Kind::Hello, config.session_id, 0, 0, &[id as u64]);
    link.send_seq = 1;
    link.conn.writer().write_all(&bytes).map_err(|e| refuse(e.to_string()))?;
    while link.conn.wants_write() {
        link.conn.write_tls(&mut link.sock).map_err(|e| refuse(format!("cannot send hello: {e}")))?;
    }
    let mut buf = vec![0u8; 4096];
    loop {
        match link.decoder.next_frame() {
            Ok(Some(f)) if f.kind == Kind::Hello && f.words == [peer as u64] => return Ok(link),
            Ok(Some(f)) => {
                return Err(refuse(format!(
                    "its hello says {:?} {:?}, expected a hello from party {peer}",
                    f.kind, f.words
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(refuse(format!("bad hello: {e}"))),
        }
        if Instant::now() >= deadline {
            return Err(refuse("no hello within the set-up timeout".into()));
        }
        match link.conn.reader().read(&mut buf) {
            Ok(0) => return Err(refuse("closed the connection before its hello".into())),
            Ok(n) => {
                link.decoder.feed(&buf[..n]);
                continue;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(refuse(format!("connection failed before its hello: {e}"))),
        }
        match link.conn.read_tls(&mut link.sock) {
            Ok(0) => {
                return Err(refuse("closed the connection before its hello (did it refuse our certificate?)".into()))
            }
            Ok(_) => {
                link.conn.process_new_packets().map_err(|e| refuse(format!("TLS error: {e}")))?;
            }
            Err(e) => return Err(refuse(format!("connection failed before its hello: {e}"))),
        }
    }
}

impl TlsTransport {
    /// Watch `abort` (e.g. the flag given to [`crate::Session::with_transports`]): a waiting receive stops within
    /// ~20 ms of it being set, and [`Transport::finish`] then tells the peers to abort instead of ending normally.
    pub fn with_abort_flag(mut self, abort: Arc<AtomicBool>) -> TlsTransport {
        self.abort = Some(abort);
        self
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

    fn queue(&mut self, to: PartyId, kind: Kind, words: &[u64]) -> Result<()> {
        let (session, run, id) = (self.session, self.run, self.id);
        let link = self.link(to)?;
        let bytes = frame::encode(kind, session, run, link.send_seq, words);
        link.send_seq += 1;
        link.conn.writer().write_all(&bytes).map_err(|e| Error::Transport {
            party: id,
            peer: to,
            reason: format!("cannot send: {e}"),
        })
    }

    /// Write what the sockets take and read what they offer, on every link; true when anything moved.
    fn pump(&mut self) -> Result<bool> {
        let mut moved = false;
        let mut buf = [0u8; 64 * 1024];
        for peer in 0..3 {
            let id = self.id;
            let Some(link) = self.links[peer].as_mut() else { continue };
            let err = |reason: String| Error::Transport { party: id, peer, reason };
            while link.conn.wants_write() {
                match link.conn.write_tls(&mut link.sock) {
                    Ok(_) => moved = true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(err(format!("cannot send: {e}"))),
                }
            }
            if link.closed.is_some() {
                continue;
            }
            match link.conn.read_tls(&mut link.sock) {
                Ok(0) => link.closed = Some("closed the connection".into()),
                Ok(_) => {
                    moved = true;
                    if let Err(e) = link.conn.process_new_packets() {
                        link.closed = Some(format!("TLS error: {e}"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => link.closed = Some(format!("connection failed: {e}")),
            }
            loop {
                match link.conn.reader().read(&mut buf) {
                    Ok(0) => {
                        link.closed.get_or_insert_with(|| "closed the connection".into());
                        break;
                    }
                    Ok(n) => link.decoder.feed(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        link.closed.get_or_insert_with(|| format!("connection failed: {e}"));
                        break;
                    }
                }
            }
        }
        Ok(moved)
    }

    /// Push every pending byte out, up to the timeout.
    fn flush_all(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.pump()?;
            let pending = (0..3).find(|&p| self.links[p].as_ref().is_some_and(|l| l.conn.wants_write()));
            let Some(peer) = pending else { return Ok(()) };
            if Instant::now() >= deadline {
                return Err(self.error(peer, format!("could not deliver within {:?}", self.timeout)));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Transport for TlsTransport {
    fn send(&mut self, to: PartyId, words: Vec<u64>) -> Result<()> {
        self.queue(to, Kind::Data, &words)?;
        self.pump().map(|_| ())
    }

    fn recv(&mut self, from: PartyId) -> Result<Vec<u64>> {
        self.link(from)?;
        let deadline = Instant::now() + self.timeout;
        let mut idle = Duration::from_micros(5);
        loop {
            if let Some((run, kind)) = self.ended[from] {
                if run == self.run {
                    return Err(match kind {
                        Kind::Abort => Error::Aborted { party: self.id, peer: from },
                        _ => Error::PeerFinished { party: self.id, peer: from },
                    });
                }
            }
            let run = self.run;
            let link = self.links[from].as_mut().expect("checked");
            while let Some(f) = link.decoder.next_frame()? {
                match f.kind {
                    Kind::Data if f.run == run => return Ok(f.words),
                    Kind::Data | Kind::End | Kind::Abort if f.run < run => {} // an earlier run's leftovers
                    Kind::End | Kind::Abort if f.run == run => {
                        self.ended[from] = Some((f.run, f.kind));
                        break;
                    }
                    kind => {
                        let expected = format!("a data frame of run {run}, found run {}", f.run);
                        return Err(Error::Frame {
                            party: self.id,
                            peer: from,
                            problem: frame::FrameProblem::Unexpected { found: kind, expected },
                        });
                    }
                }
            }
            if self.ended[from].is_some_and(|(r, _)| r == run) {
                continue;
            }
            if let Some(why) = &link.closed {
                let why = why.clone();
                return Err(self.error(from, why));
            }
            if self.abort.as_ref().is_some_and(|a| a.load(Ordering::SeqCst)) {
                return Err(Error::Aborted { party: self.id, peer: from });
            }
            if Instant::now() >= deadline {
                return Err(self.error(from, format!("no message within {:?}", self.timeout)));
            }
            if self.pump()? {
                idle = Duration::from_micros(5);
            } else if self.links.iter().flatten().any(|l| l.conn.wants_write()) {
                // Bytes still to deliver to a peer that is not reading yet: keep polling both directions.
                std::thread::sleep(idle);
                idle = (idle * 2).min(Duration::from_millis(1));
            } else {
                // Nothing to write: sleep in the kernel until `from` sends something, at most until the deadline
                // and for at most 20 ms at a time (the abort flag is looked at between waits).
                let wait =
                    deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_micros(50), ABORT_POLL);
                let sock = &self.links[from].as_ref().expect("checked").sock;
                let io = |e: std::io::Error| Error::Transport { party: self.id, peer: from, reason: e.to_string() };
                sock.set_nonblocking(false).map_err(io)?;
                sock.set_read_timeout(Some(wait)).map_err(io)?;
                let _ = sock.peek(&mut [0u8; 1]); // data, end of stream or timeout: the next pump sees which
                sock.set_nonblocking(true).map_err(io)?;
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        let aborted = self.abort.as_ref().is_some_and(|a| a.load(Ordering::SeqCst));
        let kind = if aborted { Kind::Abort } else { Kind::End };
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
