//! Who a party is and whom it trusts: its TLS identity ([`TlsIdentity`]: key pair and self-signed certificate,
//! generated, saved and loaded as PEM), the peers' certificates to pin ([`load_cert`]), and the rustls verifier that
//! accepts exactly the pinned certificates ([`Pinned`]), in both roles (client and server).

use crate::{Error, PartyId, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

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

/// Accepts exactly the pinned certificate(s); signatures are checked by rustls with the ring provider.
#[derive(Debug)]
pub(super) struct Pinned {
    /// The acceptable end-entity certificates.
    pub(super) certs: Vec<Vec<u8>>,
    /// Whose they are, for the refusal: `party 0`, `party 1 or party 2`.
    pub(super) whose: String,
    pub(super) provider: Arc<CryptoProvider>,
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
