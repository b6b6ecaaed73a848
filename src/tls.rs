//! Transport security: TLS on every server, mutual TLS between the services.
//!
//! The certificates are PEM files named by the shared settings (`TLS_CERT`, `TLS_KEY`,
//! `TLS_CLIENT_CA`, `TLS_CA`). They are re-read when they change, checked at most once per
//! [`RELOAD_CHECK`] when a handshake needs them: a connection opened after a rotation uses
//! the new files, and connections already open go on with their calls. A changed file that
//! cannot be read or does not parse leaves the last good one in use, with one warning.
//!
//! One crypto backend: rustls with ring. This module never decides who may call what: the
//! caller's certificate chain reaches each request's extensions as tonic's
//! `TlsConnectInfo` (see [`crate::grpc::GrpcServer`]), for the authorization layer to read.

use crate::settings::CommonSettings;
use anyhow::Context as _;
use std::{
    fmt, fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant, SystemTime},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
        client::{
            WebPkiServerVerifier,
            danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        },
        crypto::CryptoProvider,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
        server::{
            ClientHello, ResolvesServerCert, WebPkiClientVerifier,
            danger::{ClientCertVerified, ClientCertVerifier},
        },
        sign::CertifiedKey,
    },
};
use tonic::transport::{ClientTlsConfig, Endpoint, Identity};

/// Longest time between a certificate file's change and its first use.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Longest a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The one crypto provider of the process: ring.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// What a server needs to serve TLS: its acceptor, whose certificate and client CA follow
/// their files.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    mutual: bool,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("mutual", &self.mutual).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// TLS from `TLS_CERT`/`TLS_KEY` (and mutual TLS with `TLS_CLIENT_CA`); `None` when
    /// neither file is set. Fails, naming the setting, when only one of the pair is set, when
    /// `TLS_CLIENT_CA` comes without them, or when a file cannot be read or parsed.
    pub fn from_settings(common: &CommonSettings) -> anyhow::Result<Option<Self>> {
        match (&common.tls_cert, &common.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(Self::new(cert, key, common.tls_client_ca.as_deref())?)),
            (None, None) if common.tls_client_ca.is_some() => {
                anyhow::bail!("TLS_CLIENT_CA is set without TLS_CERT and TLS_KEY")
            }
            (None, None) => Ok(None),
            (Some(_), None) => anyhow::bail!("TLS_CERT is set without TLS_KEY"),
            (None, Some(_)) => anyhow::bail!("TLS_KEY is set without TLS_CERT"),
        }
    }

    /// TLS with the certificate chain `cert` and its key `key`; with `client_ca`, callers
    /// must present a certificate chained to it.
    pub fn new(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Self> {
        let certified =
            Reloading::open("TLS_CERT/TLS_KEY", vec![cert.to_path_buf(), key.to_path_buf()], certified_key)?;
        let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = Reloading::open("TLS_CLIENT_CA", vec![ca.to_path_buf()], client_verifier)?;
                builder.with_client_cert_verifier(Arc::new(ClientCa(verifier)))
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(ServerCert(certified)));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), mutual: client_ca.is_some() })
    }

    /// The acceptor for one incoming connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Whether callers must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }
}

/// What a client needs to call a TLS server: the CA it checks servers against and the
/// identity it presents, both following their files.
#[derive(Clone)]
pub struct ClientTls {
    verifier: Arc<ServerCa>,
    identity: Option<Arc<Reloading<Identity>>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").field("identity", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Clients checking servers against `TLS_CA` and presenting `TLS_CERT`/`TLS_KEY` when
    /// set; `None` (plain-text clients) when `TLS_CA` is unset.
    pub fn from_settings(common: &CommonSettings) -> anyhow::Result<Option<Self>> {
        let Some(ca) = &common.tls_ca else { return Ok(None) };
        let identity = match (&common.tls_cert, &common.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        Ok(Some(Self::new(ca, identity)?))
    }

    /// Clients checking servers against the CA in `ca`, presenting `identity` (certificate
    /// chain, key) when given.
    pub fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let verifier = Arc::new(ServerCa(Reloading::open("TLS_CA", vec![ca.to_path_buf()], server_verifier)?));
        let identity = match identity {
            Some((cert, key)) => Some(Arc::new(Reloading::open(
                "TLS_CERT/TLS_KEY",
                vec![cert.to_path_buf(), key.to_path_buf()],
                client_identity,
            )?)),
            None => None,
        };
        Ok(Self { verifier, identity })
    }

    /// `endpoint` over TLS to a server named `server_name` (checked against its
    /// certificate), presenting the current identity. The endpoint's URI must be `https`.
    pub fn apply(&self, endpoint: Endpoint, server_name: &str) -> anyhow::Result<Endpoint> {
        let mut config = ClientTlsConfig::new().domain_name(server_name).timeout(HANDSHAKE_TIMEOUT);
        if let Some(identity) = &self.identity {
            config = config.identity(identity.current().as_ref().clone());
        }
        Ok(endpoint.tls_config_with_verifier(config, self.verifier.clone())?)
    }

    /// Changes whenever the client identity's files were re-read: endpoints made by
    /// [`ClientTls::apply`] before then present the old identity on their next connection.
    pub fn generation(&self) -> u64 {
        self.identity.as_ref().map_or(0, |identity| identity.generation())
    }
}

/// A value loaded from files, loaded again once they change.
struct Reloading<T> {
    /// The settings naming the files, for messages.
    what: &'static str,
    paths: Vec<PathBuf>,
    load: fn(&[Vec<u8>]) -> anyhow::Result<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
    generation: u64,
    failing: bool,
}

/// What tells a file's versions apart: a rewrite changes its time or length, a swap (a
/// rename over it, or a Kubernetes secret's symlink) its inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = fs::metadata(path).ok()?;
    Some(Stamp { modified: metadata.modified().ok(), len: metadata.len(), inode: metadata.ino() })
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading").field("what", &self.what).field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// Loads the files now; fails naming `what` when they cannot be read or parsed.
    fn open(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: fn(&[Vec<u8>]) -> anyhow::Result<T>,
    ) -> anyhow::Result<Self> {
        let stamps = paths.iter().map(|path| stamp(path)).collect();
        let current = read_and_load(&paths, load).context(what)?;
        let state =
            State { current: Arc::new(current), stamps, checked: Instant::now(), generation: 0, failing: false };
        Ok(Self { what, paths, load, state: Mutex::new(state) })
    }

    /// The current value, re-read first when the files changed since the last look (at most
    /// one look per [`RELOAD_CHECK`]).
    fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh(&mut state);
        state.current.clone()
    }

    /// How many times the files were re-read with success.
    fn generation(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh(&mut state);
        state.generation
    }

    fn refresh(&self, state: &mut State<T>) {
        if state.checked.elapsed() < RELOAD_CHECK {
            return;
        }
        state.checked = Instant::now();
        let stamps: Vec<Option<Stamp>> = self.paths.iter().map(|path| stamp(path)).collect();
        if stamps == state.stamps {
            return;
        }
        match read_and_load(&self.paths, self.load) {
            Ok(value) => {
                state.current = Arc::new(value);
                state.stamps = stamps;
                state.generation += 1;
                state.failing = false;
                tracing::info!(files = self.what, "certificate files changed: re-read");
            }
            // The stamps stay old, so the next look tries again (a rotation may be half
            // written); one warning until it succeeds.
            Err(error) => {
                if !state.failing {
                    tracing::warn!(
                        files = self.what,
                        error = format!("{error:#}"),
                        "changed certificate files cannot be used; keeping the last good ones"
                    );
                }
                state.failing = true;
            }
        }
    }
}

fn read_and_load<T>(paths: &[PathBuf], load: fn(&[Vec<u8>]) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let contents = paths
        .iter()
        .map(|path| fs::read(path).with_context(|| format!("cannot read {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    load(&contents)
}

fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().context("not PEM certificates")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the file");
    Ok(certs)
}

fn roots(pem: &[u8]) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots.add(cert).context("not a usable CA certificate")?;
    }
    Ok(Arc::new(roots))
}

/// `[chain, key]` as a certified key; the key must match the chain's first certificate.
fn certified_key(files: &[Vec<u8>]) -> anyhow::Result<CertifiedKey> {
    let [chain, key] = files else { anyhow::bail!("expected a certificate chain and a key") };
    let key = PrivateKeyDer::from_pem_slice(key).context("not a PEM private key")?;
    Ok(CertifiedKey::from_der(certificates(chain)?, key, &provider())?)
}

/// `[chain, key]` as the identity a client presents, checked like a server's.
fn client_identity(files: &[Vec<u8>]) -> anyhow::Result<Identity> {
    certified_key(files)?;
    let [chain, key] = files else { anyhow::bail!("expected a certificate chain and a key") };
    Ok(Identity::from_pem(chain, key))
}

fn client_verifier(files: &[Vec<u8>]) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let [ca] = files else { anyhow::bail!("expected one CA file") };
    Ok(WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider()).build()?)
}

fn server_verifier(files: &[Vec<u8>]) -> anyhow::Result<Arc<WebPkiServerVerifier>> {
    let [ca] = files else { anyhow::bail!("expected one CA file") };
    Ok(WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider()).build()?)
}

/// The server's certificate, as its files say now.
#[derive(Debug)]
struct ServerCert(Reloading<CertifiedKey>);

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// Checks callers' certificates against the client CA as its file says now.
#[derive(Debug)]
struct ClientCa(Reloading<Arc<dyn ClientCertVerifier>>);

impl ClientCertVerifier for ClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the CA may change under a borrowed list.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}

/// Checks servers' certificates against the CA as its file says now.
#[derive(Debug)]
struct ServerCa(Reloading<Arc<WebPkiServerVerifier>>);

impl ServerCertVerifier for ServerCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(certificates(b"not pem").is_err());
        assert!(certified_key(&[b"x".to_vec(), b"y".to_vec()]).is_err());
        assert!(server_verifier(&[Vec::new()]).is_err());
    }

    #[test]
    fn missing_files_name_the_setting() {
        let error = ClientTls::new(Path::new("/nonexistent/ca.pem"), None).expect_err("no file");
        assert!(format!("{error:#}").contains("TLS_CA"), "{error:#}");
    }
}
