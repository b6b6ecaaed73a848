//! Who is calling, and may they: identity and authorization of every call, deny by
//! default.
//!
//! A calling service is named by its client certificate's URI SAN
//! `spiffe://<TRUST_DOMAIN>/<service>` (read from the TLS connection's info in the
//! request's extensions); a person by `authorization: Bearer <JWT>` verified against
//! `AUTH_JWKS` ([`jwt`]). Each method has an allow-list ([`policy`]). A call without
//! valid credentials is refused with `UNAUTHENTICATED`, a known caller outside the
//! allow-list with `PERMISSION_DENIED`, each in one WARN line naming the caller and the
//! method (never the token). An allowed call carries its [`Caller`] in its extensions,
//! so a service can record who acted.
//!
//! With no security setting at all (no `TLS_CLIENT_CA`, `AUTH_JWKS` nor `AUTHZ_POLICY`)
//! every call is let through, for local development; the server says so at start-up.

pub mod jwt;
pub mod policy;

use crate::settings::AuthSettings;
use http::{HeaderMap, Request, Response};
use jwt::{Person, TokenVerifier};
use policy::Policy;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

/// Who made a call, as far as the credentials told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The calling service's SPIFFE id (`spiffe://<trust-domain>/<name>`).
    pub service_id: Option<String>,
    /// The calling service's name under the trust domain.
    pub service: Option<String>,
    /// The person named by a verified bearer token.
    pub person: Option<Person>,
}

impl Caller {
    /// The caller of `request`, as the authorization layer found it (nobody known when the
    /// layer did not run or found no credentials).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request.extensions().get::<Caller>().cloned().unwrap_or_default()
    }

    /// Who acted, for history and the change feed: the person's subject, else the
    /// service's SPIFFE id, else empty (unauthenticated development mode).
    pub fn actor(&self) -> String {
        match (&self.person, &self.service_id) {
            (Some(person), _) => person.subject.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => String::new(),
        }
    }

    /// The roles of the person, if any.
    fn roles(&self) -> &[String] {
        self.person.as_ref().map(|p| p.roles.as_slice()).unwrap_or_default()
    }

    /// How the caller appears in a log line.
    fn describe(&self) -> String {
        match (&self.service_id, &self.person) {
            (Some(id), Some(person)) => format!("{id} for {}", person.subject),
            (Some(id), None) => id.clone(),
            (None, Some(person)) => format!("subject {}", person.subject),
            (None, None) => "anonymous".to_string(),
        }
    }
}

/// The service name in `uri` when it is a SPIFFE id under `trust_domain`.
pub fn spiffe_service<'a>(uri: &'a str, trust_domain: &str) -> Option<&'a str> {
    let rest = uri.strip_prefix("spiffe://")?.strip_prefix(trust_domain)?.strip_prefix('/')?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// The URI SANs of a DER certificate (none when it does not parse).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let der = rustls_pki_types::CertificateDer::from(der);
    match webpki::EndEntityCert::try_from(&der) {
        Ok(cert) => cert.valid_uri_names().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// The SPIFFE id and service name of the peer's certificate, under `trust_domain`.
fn peer_service(extensions: &http::Extensions, trust_domain: &str) -> Option<(String, String)> {
    let certs = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?.peer_certs()?;
    let leaf = certs.first()?;
    uri_sans(leaf.as_ref())
        .into_iter()
        .find_map(|uri| spiffe_service(&uri, trust_domain).map(str::to_string).map(|name| (uri.clone(), name)))
}

/// The peer's address, for log lines.
fn peer_addr(extensions: &http::Extensions) -> String {
    let addr = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.get_ref().remote_addr())
        .or_else(|| extensions.get::<TcpConnectInfo>().and_then(|info| info.remote_addr()));
    addr.map(|a| a.to_string()).unwrap_or_default()
}

/// The bearer token of the `authorization` header: `None` without the header,
/// `Some(Err)` when it is not `Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let text = match value.to_str() {
        Ok(text) => text.trim(),
        Err(_) => return Some(Err(())),
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Some(Ok(token.trim()))
        }
        _ => Some(Err(())),
    }
}

/// The checks of one server: open (development) or enforcing a policy.
#[derive(Clone, Debug)]
pub struct Authz {
    enforced: Option<Arc<Enforced>>,
    trust_domain: String,
}

#[derive(Debug)]
struct Enforced {
    policy: Policy,
    tokens: Option<TokenVerifier>,
}

impl Authz {
    /// Lets every call through (still naming callers whose certificate says who they are).
    pub fn open(trust_domain: &str) -> Self {
        Self { enforced: None, trust_domain: trust_domain.to_string() }
    }

    /// Enforces `policy`, verifying bearer tokens with `tokens` (none: tokens refused).
    pub fn enforce(policy: Policy, tokens: Option<TokenVerifier>, trust_domain: &str) -> Self {
        Self { enforced: Some(Arc::new(Enforced { policy, tokens })), trust_domain: trust_domain.to_string() }
    }

    /// The checks of the service `service` (its name, the default token audience) from
    /// its settings; `mutual_tls` tells whether callers must present a certificate
    /// (`TLS_CLIENT_CA`). Open when no security setting is given at all.
    pub fn from_settings(service: &str, settings: &AuthSettings, mutual_tls: bool) -> anyhow::Result<Self> {
        if !mutual_tls && settings.auth_jwks.is_none() && settings.authz_policy.is_none() {
            return Ok(Self::open(&settings.trust_domain));
        }
        let policy = match &settings.authz_policy {
            Some(path) => Policy::from_file(path)
                .map_err(|e| anyhow::anyhow!("cannot read AUTHZ_POLICY '{}': {e}", path.display()))?,
            None => Policy::defaults(),
        };
        let tokens = match &settings.auth_jwks {
            Some(path) => {
                let audience = settings.auth_audience.as_deref().unwrap_or(service);
                Some(
                    TokenVerifier::new(path, &settings.auth_issuer, audience)
                        .map_err(|e| anyhow::anyhow!("cannot read AUTH_JWKS '{}': {e}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(Self::enforce(policy, tokens, &settings.trust_domain))
    }

    /// Whether calls are let through without checks.
    pub fn is_open(&self) -> bool {
        self.enforced.is_none()
    }

    /// The caller of a call to `path`, or the status refusing it.
    pub fn check(
        &self,
        path: &str,
        extensions: &http::Extensions,
        headers: &HeaderMap,
    ) -> Result<Caller, tonic::Status> {
        let (service_id, service) = match peer_service(extensions, &self.trust_domain) {
            Some((id, name)) => (Some(id), Some(name)),
            None => (None, None),
        };
        let mut caller = Caller { service_id, service, person: None };
        let Some(enforced) = &self.enforced else {
            return Ok(caller);
        };
        let rule = enforced.policy.rule(path);
        if rule.is_some_and(|rule| rule.open) {
            return Ok(caller);
        }
        let refuse = |caller: &Caller, status: tonic::Status| {
            tracing::warn!(
                caller = %caller.describe(),
                method = %path,
                peer = %peer_addr(extensions),
                code = ?status.code(),
                reason = %status.message(),
                "call refused"
            );
            status
        };
        match bearer(headers) {
            None => {}
            Some(Err(())) => {
                return Err(refuse(&caller, tonic::Status::unauthenticated("authorization is not 'Bearer <token>'")));
            }
            Some(Ok(token)) => match &enforced.tokens {
                None => {
                    return Err(refuse(
                        &caller,
                        tonic::Status::unauthenticated("bearer tokens are not accepted here (no AUTH_JWKS)"),
                    ));
                }
                Some(tokens) => match tokens.verify(token) {
                    Ok(person) => caller.person = Some(person),
                    Err(error) => {
                        return Err(refuse(&caller, tonic::Status::unauthenticated(format!("invalid token: {error}"))));
                    }
                },
            },
        }
        if caller.service.is_none() && caller.person.is_none() {
            return Err(refuse(
                &caller,
                tonic::Status::unauthenticated("no credentials: a client certificate or a bearer token"),
            ));
        }
        if !rule.is_some_and(|rule| rule.allows(caller.service.as_deref(), caller.roles())) {
            let message = format!("{} may not call {path}", caller.describe());
            return Err(refuse(&caller, tonic::Status::permission_denied(message)));
        }
        Ok(caller)
    }
}

/// The tower layer checking every call of a server with an [`Authz`].
#[derive(Clone, Debug)]
pub struct AuthzLayer {
    authz: Authz,
}

impl AuthzLayer {
    pub fn new(authz: Authz) -> Self {
        Self { authz }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authorized<S>;
    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized { authz: self.authz.clone(), inner }
    }
}

/// A service behind an [`AuthzLayer`].
#[derive(Clone, Debug)]
pub struct Authorized<S> {
    authz: Authz,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for Authorized<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.authz.check(request.uri().path(), request.extensions(), request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_name_services_of_the_trust_domain_only() {
        assert_eq!(spiffe_service("spiffe://booking.internal/booking-svc", "booking.internal"), Some("booking-svc"));
        assert_eq!(spiffe_service("spiffe://other.domain/booking-svc", "booking.internal"), None);
        assert_eq!(spiffe_service("spiffe://booking.internal.evil/booking-svc", "booking.internal"), None);
        assert_eq!(spiffe_service("spiffe://booking.internal/", "booking.internal"), None);
        assert_eq!(spiffe_service("spiffe://booking.internal/a/b", "booking.internal"), None);
        assert_eq!(spiffe_service("https://booking.internal/booking-svc", "booking.internal"), None);
    }

    #[test]
    fn reads_the_uri_san_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://booking.internal/booking-svc").expect("uri"),
        ));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(uri_sans(cert.der()), ["spiffe://booking.internal/booking-svc"]);
        assert!(uri_sans(b"not a certificate").is_empty());
    }

    #[test]
    fn bearer_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", http::HeaderValue::from_static("Bearer abc.def.ghi"));
        assert_eq!(bearer(&headers), Some(Ok("abc.def.ghi")));
        headers.insert("authorization", http::HeaderValue::from_static("Basic dXNlcg=="));
        assert_eq!(bearer(&headers), Some(Err(())));
        headers.insert("authorization", http::HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), Some(Err(())));
    }

    #[test]
    fn actors() {
        let service = Caller {
            service_id: Some("spiffe://booking.internal/booking-svc".into()),
            service: Some("booking-svc".into()),
            person: None,
        };
        assert_eq!(service.actor(), "spiffe://booking.internal/booking-svc");
        let person = Caller { person: Some(Person { subject: "alice".into(), roles: vec![] }), ..service };
        assert_eq!(person.actor(), "alice");
        assert_eq!(Caller::default().actor(), "");
    }

    #[test]
    fn checks_calls_without_a_certificate() {
        let key = jwt::SigningKey::generate_ed25519("k").expect("key");
        let dir = tempfile::tempdir().expect("dir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, key.jwks_json().expect("jwks")).expect("write");
        let tokens = TokenVerifier::new(&jwks, "booking-platform", "assign-svc").expect("verifier");
        let authz = Authz::enforce(Policy::defaults(), Some(tokens), "booking.internal");
        let extensions = http::Extensions::new();
        let with_token = |roles: &[&str]| {
            let claims =
                jwt::Claims::new("bob", roles, "booking-platform", &["assign-svc"], std::time::Duration::from_secs(60));
            let mut headers = HeaderMap::new();
            let value = format!("Bearer {}", key.mint(&claims).expect("mint"));
            headers.insert("authorization", value.parse().expect("header"));
            headers
        };
        let code = |path: &str, headers: &HeaderMap| authz.check(path, &extensions, headers).map_err(|s| s.code());
        assert_eq!(code("/assign.v1.AssignService/PutFloorPlan", &HeaderMap::new()), Err(tonic::Code::Unauthenticated));
        assert_eq!(
            code("/assign.v1.AssignService/PutFloorPlan", &with_token(&["staff"])),
            Err(tonic::Code::PermissionDenied)
        );
        let caller = authz.check("/assign.v1.AssignService/PutFloorPlan", &extensions, &with_token(&["floor-admin"]));
        assert_eq!(caller.map(|c| c.actor()).map_err(|s| s.code()), Ok("bob".to_string()));
        assert!(code("/grpc.health.v1.Health/Check", &HeaderMap::new()).is_ok());
        assert_eq!(
            code("/assign.v1.AssignService/Unlisted", &with_token(&["staff"])),
            Err(tonic::Code::PermissionDenied)
        );
        assert!(
            Authz::open("booking.internal")
                .check("/assign.v1.AssignService/Assign", &extensions, &HeaderMap::new())
                .is_ok()
        );
    }
}
