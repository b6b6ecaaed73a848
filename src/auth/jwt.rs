//! Staff tokens: JWTs signed with ES256 or EdDSA, verified against the keys of a JWKS
//! file (chosen by `kid`, the file re-read when it changes), with issuer, audience and
//! expiry checked and roles taken from the claim `roles`; and the signing side that the
//! `booking-token` command and the tests use.
//!
//! `jsonwebtoken` parses and validates; its signatures go through [`RING`], a crypto
//! provider over `ring` (the one crypto backend of the platform: no OpenSSL, no aws-lc).

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::ErrorKind,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters, EllipticCurveKeyType, Jwk,
        JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    },
};
use ring::{
    rand::SystemRandom,
    signature::{self as ring_sig, KeyPair},
};
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How often the JWKS file is looked at for a change, at most.
const RECHECK: Duration = Duration::from_millis(500);

/// The `jsonwebtoken` crypto provider over `ring`: ES256 and EdDSA only.
pub static RING: CryptoProvider = CryptoProvider {
    signer_factory: ring_signer,
    verifier_factory: ring_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs [`RING`] as `jsonwebtoken`'s provider (once per process; later calls do
/// nothing).
pub fn install() {
    let _ = RING.install_default();
}

struct RingVerifier {
    algorithm: Algorithm,
    key: ring_sig::UnparsedPublicKey<Vec<u8>>,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        self.key.verify(msg, signature).map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn ring_verifier(algorithm: &Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let bytes = key.try_get_as_bytes()?.to_vec();
    let ring_algorithm: &'static dyn ring_sig::VerificationAlgorithm = match algorithm {
        Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::EdDSA => &ring_sig::ED25519,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(Box::new(RingVerifier { algorithm: *algorithm, key: ring_sig::UnparsedPublicKey::new(ring_algorithm, bytes) }))
}

enum RingKeyPair {
    Ec(ring_sig::EcdsaKeyPair),
    Ed(ring_sig::Ed25519KeyPair),
}

struct RingSigner {
    algorithm: Algorithm,
    pair: RingKeyPair,
}

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match &self.pair {
            RingKeyPair::Ec(pair) => pair
                .sign(&SystemRandom::new(), msg)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            RingKeyPair::Ed(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn ring_signer(algorithm: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    let pair = key_pair(*algorithm, key.as_bytes())?;
    Ok(Box::new(RingSigner { algorithm: *algorithm, pair }))
}

fn key_pair(algorithm: Algorithm, pkcs8: &[u8]) -> jsonwebtoken::errors::Result<RingKeyPair> {
    match algorithm {
        Algorithm::ES256 => {
            ring_sig::EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
                .map(RingKeyPair::Ec)
                .map_err(|_| ErrorKind::InvalidEcdsaKey.into())
        }
        Algorithm::EdDSA => ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map(RingKeyPair::Ed)
            .map_err(|_| ErrorKind::InvalidEddsaKey.into()),
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

/// The claims of a staff token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for (recorded as the actor of what they do).
    pub sub: String,
    /// The token's issuer (`AUTH_ISSUER`).
    pub iss: String,
    /// The service it is meant for (`AUTH_AUDIENCE`); one or several.
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
    /// The person's roles (`staff`, `floor-admin`, ...).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Claims {
    /// Claims for `subject` with `roles`, issued by `issuer` for `audiences`, valid for
    /// `ttl` from now.
    pub fn new(subject: &str, roles: &[&str], issuer: &str, audiences: &[&str], ttl: Duration) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Self {
            sub: subject.to_string(),
            iss: issuer.to_string(),
            aud: audiences.iter().map(|a| a.to_string()).collect(),
            exp: now + ttl.as_secs(),
            iat: now,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// A private key that signs tokens: its algorithm, key id and PKCS#8 DER.
pub struct SigningKey {
    algorithm: Algorithm,
    kid: String,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("algorithm", &self.algorithm).field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// What went wrong with a signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a key")]
    Generate,
    #[error("not a PKCS#8 PEM private key of ES256 (P-256) or EdDSA (Ed25519)")]
    Format,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SigningKey {
    /// A new Ed25519 (EdDSA) key with key id `kid`.
    pub fn generate_ed25519(kid: &str) -> Result<Self, KeyError> {
        let pkcs8 = ring_sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        Ok(Self { algorithm: Algorithm::EdDSA, kid: kid.to_string(), pkcs8: pkcs8.as_ref().to_vec() })
    }

    /// A new P-256 (ES256) key with key id `kid`.
    pub fn generate_es256(kid: &str) -> Result<Self, KeyError> {
        let pkcs8 =
            ring_sig::EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::Generate)?;
        Ok(Self { algorithm: Algorithm::ES256, kid: kid.to_string(), pkcs8: pkcs8.as_ref().to_vec() })
    }

    /// A key from PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`), Ed25519 or P-256.
    pub fn from_pem(kid: &str, pem: &str) -> Result<Self, KeyError> {
        use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| KeyError::Format)?;
        let pkcs8 = der.secret_pkcs8_der().to_vec();
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            if key_pair(algorithm, &pkcs8).is_ok() {
                return Ok(Self { algorithm, kid: kid.to_string(), pkcs8 });
            }
        }
        Err(KeyError::Format)
    }

    /// The key as PKCS#8 PEM text.
    pub fn to_pem(&self) -> String {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// Its key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The same key under key id `kid`.
    pub fn with_kid(self, kid: &str) -> Self {
        Self { kid: kid.to_string(), ..self }
    }

    /// A key id derived from the public key (the first 8 bytes of its SHA-256, in hex), so
    /// the same key always gets the same id and a new key a new one.
    pub fn derived_kid(&self) -> Result<String, KeyError> {
        let public = match key_pair(self.algorithm, &self.pkcs8).map_err(|_| KeyError::Format)? {
            RingKeyPair::Ec(pair) => pair.public_key().as_ref().to_vec(),
            RingKeyPair::Ed(pair) => pair.public_key().as_ref().to_vec(),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        Ok(digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect())
    }

    /// Its public half, as a JWK with its `kid` and `alg`.
    pub fn public_jwk(&self) -> Result<Jwk, KeyError> {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let algorithm = match key_pair(self.algorithm, &self.pkcs8).map_err(|_| KeyError::Format)? {
            RingKeyPair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..).ok_or(KeyError::Format)?.split_at(32);
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64(x),
                    y: b64(y),
                })
            }
            RingKeyPair::Ed(pair) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: b64(pair.public_key().as_ref()),
            }),
        };
        let key_algorithm = match self.algorithm {
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => KeyAlgorithm::EdDSA,
        };
        Ok(Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_id: Some(self.kid.clone()),
                key_algorithm: Some(key_algorithm),
                ..Default::default()
            },
            algorithm,
        })
    }

    /// A JWKS document (JSON text) holding this key's public half.
    pub fn jwks_json(&self) -> Result<String, KeyError> {
        let set = JwkSet { keys: vec![self.public_jwk()?] };
        serde_json::to_string_pretty(&set).map_err(|_| KeyError::Format)
    }

    /// A signed token carrying `claims`.
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyError> {
        install();
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let key = match self.algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_der(&self.pkcs8),
            _ => EncodingKey::from_ed_der(&self.pkcs8),
        };
        jsonwebtoken::encode(&header, claims, &key).map_err(|_| KeyError::Format)
    }
}

/// Why a token was refused (never its content).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("no key with the token's kid")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("unsupported algorithm")]
    Algorithm,
}

/// A verified person: the token's subject and roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub subject: String,
    pub roles: Vec<String>,
}

/// The keys of a JWKS file, re-read when the file changes.
struct Keys {
    path: PathBuf,
    state: Mutex<KeysState>,
}

struct KeysState {
    checked: Instant,
    stamp: Option<(SystemTime, u64)>,
    set: JwkSet,
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

fn read_set(path: &Path) -> anyhow::Result<JwkSet> {
    let text = std::fs::read_to_string(path)?;
    Ok(serde_json::from_str(&text)?)
}

impl Keys {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let stamp = stamp(path)?;
        let set = read_set(path)?;
        let state = KeysState { checked: Instant::now(), stamp: Some(stamp), set };
        Ok(Self { path: path.to_path_buf(), state: Mutex::new(state) })
    }

    /// The key with id `kid`, after re-reading the file if it changed since it was last
    /// looked at (at most every [`RECHECK`]). A file that cannot be read keeps the keys
    /// read last.
    fn find(&self, kid: &str) -> Option<Jwk> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = stamp(&self.path).ok();
            if now.is_some() && now != state.stamp {
                match read_set(&self.path) {
                    Ok(set) => {
                        state.set = set;
                        state.stamp = now;
                        tracing::info!(file = %self.path.display(), keys = state.set.keys.len(), "AUTH_JWKS re-read");
                    }
                    Err(error) => {
                        tracing::warn!(file = %self.path.display(), %error, "AUTH_JWKS unreadable; keeping the keys read before")
                    }
                }
            }
        }
        state.set.find(kid).cloned()
    }
}

/// Verifies staff tokens for one service.
pub struct TokenVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("jwks", &self.keys.path)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    /// Reads the JWKS file at `jwks`; tokens must carry `iss` = `issuer` and `audience`
    /// among their `aud`.
    pub fn new(jwks: &Path, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        install();
        Ok(Self { keys: Keys::load(jwks)?, issuer: issuer.to_string(), audience: audience.to_string() })
    }

    /// The person a token names, when it is well formed, signed by a key of the JWKS
    /// (by `kid`), unexpired, and issued by the issuer for the audience.
    pub fn verify(&self, token: &str) -> Result<Person, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let jwk = self.keys.find(kid).ok_or(TokenError::UnknownKey)?;
        let algorithm = match (&jwk.algorithm, header.alg) {
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            _ => return Err(TokenError::Algorithm),
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::UnknownKey)?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        Ok(Person { subject: data.claims.sub, roles: data.claims.roles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn verifier_for(key: &SigningKey, dir: &tempfile::TempDir) -> TokenVerifier {
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, key.jwks_json().expect("jwks")).expect("write jwks");
        TokenVerifier::new(&path, "booking-platform", "assign-svc").expect("verifier")
    }

    fn claims(roles: &[&str]) -> Claims {
        Claims::new("alice", roles, "booking-platform", &["assign-svc"], HOUR)
    }

    #[test]
    fn both_algorithms_round_trip() {
        for key in [SigningKey::generate_ed25519("k1").expect("ed"), SigningKey::generate_es256("k1").expect("es")] {
            let dir = tempfile::tempdir().expect("dir");
            let verifier = verifier_for(&key, &dir);
            let token = key.mint(&claims(&["staff", "floor-admin"])).expect("mint");
            let person = verifier.verify(&token).expect("valid");
            assert_eq!(person.subject, "alice");
            assert_eq!(person.roles, ["staff", "floor-admin"]);
            let again = SigningKey::from_pem("k1", &key.to_pem()).expect("pem");
            assert_eq!(
                verifier.verify(&again.mint(&claims(&[])).expect("mint")).map(|p| p.subject),
                Ok("alice".into())
            );
        }
    }

    #[test]
    fn refuses_bad_tokens_with_their_reason() {
        let key = SigningKey::generate_ed25519("k1").expect("key");
        let dir = tempfile::tempdir().expect("dir");
        let verifier = verifier_for(&key, &dir);
        let mut expired = claims(&["staff"]);
        expired.exp -= 2 * 3600;
        assert_eq!(verifier.verify(&key.mint(&expired).expect("mint")), Err(TokenError::Expired));
        let forged = SigningKey::generate_ed25519("k1").expect("other key");
        assert_eq!(verifier.verify(&forged.mint(&claims(&[])).expect("mint")), Err(TokenError::BadSignature));
        let es_same_kid = SigningKey::generate_es256("k1").expect("es key");
        assert_eq!(verifier.verify(&es_same_kid.mint(&claims(&[])).expect("mint")), Err(TokenError::Algorithm));
        let unknown = SigningKey::generate_ed25519("k2").expect("k2");
        assert_eq!(verifier.verify(&unknown.mint(&claims(&[])).expect("mint")), Err(TokenError::UnknownKey));
        let wrong_iss = Claims::new("alice", &[], "someone-else", &["assign-svc"], HOUR);
        assert_eq!(verifier.verify(&key.mint(&wrong_iss).expect("mint")), Err(TokenError::WrongIssuer));
        let wrong_aud = Claims::new("alice", &[], "booking-platform", &["notify-svc"], HOUR);
        assert_eq!(verifier.verify(&key.mint(&wrong_aud).expect("mint")), Err(TokenError::WrongAudience));
        assert_eq!(verifier.verify("not.a.token"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify(""), Err(TokenError::Malformed));
        // An unsigned token ("alg": "none") is refused.
        let token = key.mint(&claims(&[])).expect("mint");
        let mut parts = token.split('.');
        let (_, body) = (parts.next(), parts.next().expect("body"));
        use base64::Engine;
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#);
        assert!(verifier.verify(&format!("{none}.{body}.")).is_err());
    }

    #[test]
    fn a_rotated_jwks_file_is_read_again() {
        let old = SigningKey::generate_ed25519("old").expect("key");
        let dir = tempfile::tempdir().expect("dir");
        let verifier = verifier_for(&old, &dir);
        let new = SigningKey::generate_es256("new").expect("key");
        let token = new.mint(&claims(&["staff"])).expect("mint");
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));
        std::fs::write(dir.path().join("jwks.json"), new.jwks_json().expect("jwks")).expect("rotate");
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(verifier.verify(&token).map(|p| p.subject), Ok("alice".into()));
        assert_eq!(verifier.verify(&old.mint(&claims(&[])).expect("mint")), Err(TokenError::UnknownKey));
    }
}
