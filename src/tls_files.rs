//! rustls configurations from PEM files: a server certificate chain and key, and optionally a CA
//! bundle that client certificates must chain to (TS-0003 mutual authentication). The certificate
//! and the client CA sit behind swappable slots, so that [`ReloadableTls::reload`] (SIGHUP) puts new
//! files into effect for new handshakes without touching established sessions; files that do not
//! load, or a key that does not match its certificate, are refused and the old ones stay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use m2m_rt::ListenerTls;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate every new handshake gets.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The client-certificate verifier new handshakes use.
#[derive(Debug)]
struct VerifierSlot(RwLock<Arc<dyn ClientCertVerifier>>);

impl VerifierSlot {
    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientCertVerifier for VerifierSlot {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    /// No CA names in the CertificateRequest (they would borrow from the slot's current verifier);
    /// a device presents its one certificate anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading key {}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .with_context(|| format!("loading key {}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .context("certificate and key do not match")?;
    Ok(Arc::new(certified))
}

fn load_verifier(ca: &Path) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(c.with_context(|| format!("parsing {}", ca.display()))?)?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no CA certificate",
        ca.display()
    );
    Ok(
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()?,
    )
}

/// A listener's TLS files and the slots its configuration reads them from.
#[derive(Debug)]
pub struct ReloadableTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    cert_slot: Arc<CertSlot>,
    verifier_slot: Option<Arc<VerifierSlot>>,
}

impl ReloadableTls {
    /// Load the files; the returned configuration keeps reading the slots that [`Self::reload`]
    /// fills.
    pub fn load(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<(Self, ListenerTls)> {
        let cert_slot = Arc::new(CertSlot(RwLock::new(load_certified_key(cert, key)?)));
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let (builder, verifier_slot) = match client_ca {
            Some(ca) => {
                let slot = Arc::new(VerifierSlot(RwLock::new(load_verifier(ca)?)));
                (builder.with_client_cert_verifier(slot.clone()), Some(slot))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut config = builder.with_cert_resolver(cert_slot.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if client_ca.is_some() {
            // A resumed session is not verified against the client CA again: after a reload that
            // removes a CA, a device holding a ticket would still get in. No resumption, then.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        let me = Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: client_ca.map(Path::to_path_buf),
            cert_slot,
            verifier_slot,
        };
        Ok((me, ListenerTls(Arc::new(config))))
    }

    /// Read the files again; nothing changes until [`PreparedTls::commit`], so that a reload of
    /// several listeners is all or nothing.
    pub fn prepare(&self) -> anyhow::Result<PreparedTls<'_>> {
        let certified = load_certified_key(&self.cert, &self.key)?;
        let verifier = match &self.client_ca {
            Some(ca) => Some(load_verifier(ca)?),
            None => None,
        };
        Ok(PreparedTls {
            to: self,
            certified,
            verifier,
        })
    }
}

/// Files read by [`ReloadableTls::prepare`], not in effect yet.
pub struct PreparedTls<'a> {
    to: &'a ReloadableTls,
    certified: Arc<CertifiedKey>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl PreparedTls<'_> {
    /// New handshakes use them from now on.
    pub fn commit(self) {
        *self
            .to
            .cert_slot
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner()) = self.certified;
        if let (Some(slot), Some(v)) = (&self.to.verifier_slot, self.verifier) {
            *slot.0.write().unwrap_or_else(|e| e.into_inner()) = v;
        }
    }
}

/// A listener TLS configuration; with `client_ca`, clients must present a certificate from it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<ListenerTls> {
    Ok(ReloadableTls::load(cert, key, client_ca)?.1)
}

/// Take SIGHUP over from its default (which ends the process): call this first thing, so that a
/// reload sent while the edge starts does not kill it; [`reload_on_sighup`] then acts on it.
pub fn catch_sighup() -> std::io::Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
}
