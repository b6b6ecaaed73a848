//! A local certificate authority and the services' certificates, made at run time.
//!
//! For `booking-stack`, the compose stack's one-shot certificate maker and the tests: one
//! CA, and per name a certificate usable both as a server's and as a client's, with the
//! URI SAN `spiffe://<trust-domain>/<name>` (the service identity), the DNS SANs
//! `localhost` and the name itself, and the IP SAN `127.0.0.1`. Keys are ECDSA P-256,
//! made with ring. It never holds a production CA: the CA's key stays in memory.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// The SPIFFE trust domain of service identities unless `TRUST_DOMAIN` says otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "booking.internal";

/// A certificate authority whose key lives only in this process.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        Ok(Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)? })
    }

    /// The CA certificate, as PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` in `trust_domain` (see the module doc), with `extra_hosts`
    /// as further DNS or IP SANs.
    pub fn issue(&self, name: &str, trust_domain: &str, extra_hosts: &[&str]) -> anyhow::Result<Issued> {
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), name.to_string()];
        hosts.extend(extra_hosts.iter().map(|h| h.to_string()));
        hosts.dedup();
        let mut params = CertificateParams::new(hosts)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names.push(SanType::URI(format!("spiffe://{trust_domain}/{name}").try_into()?));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A folder with `ca.pem` and, per name, `<name>.pem` and `<name>-key.pem`.
#[derive(Clone, Debug)]
pub struct LocalPki {
    pub dir: PathBuf,
}

impl LocalPki {
    /// Makes a new CA and a certificate for each of `names` into `dir` (created if needed;
    /// existing files are replaced by renaming over them, so a running service never reads
    /// a half-written file).
    pub fn create(dir: &Path, trust_domain: &str, names: &[&str]) -> anyhow::Result<(Self, Ca)> {
        std::fs::create_dir_all(dir)?;
        let ca = Ca::new("booking-platform local CA")?;
        let pki = Self { dir: dir.to_path_buf() };
        write_atomically(&pki.ca(), &ca.cert_pem(), false)?;
        for name in names {
            pki.install(name, &ca.issue(name, trust_domain, &[])?)?;
        }
        Ok((pki, ca))
    }

    /// Puts `issued` in place as `name`'s certificate and key.
    pub fn install(&self, name: &str, issued: &Issued) -> anyhow::Result<()> {
        write_atomically(&self.key(name), &issued.key_pem, true)?;
        write_atomically(&self.cert(name), &issued.cert_pem, false)
    }

    /// Puts `ca`'s certificate in place as the CA file.
    pub fn install_ca(&self, ca: &Ca) -> anyhow::Result<()> {
        write_atomically(&self.ca(), &ca.cert_pem(), false)
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `name`'s certificate file.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `name`'s key file.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }
}

/// Writes `path` through a temporary file renamed over it; `secret` files are readable by
/// their owner only.
fn write_atomically(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let temporary = path.with_extension("pem.new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}
