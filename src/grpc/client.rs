//! Client channels: one endpoint configuration, TLS when given, a trace layer on every call.

use super::trace::{TraceLayer, Traced};
use crate::tls::ClientTls;
use std::time::Duration;
use tonic::transport::Endpoint;
use tower::Layer;

/// A client channel whose calls carry the caller's W3C trace context and open a client span.
pub type Channel = Traced<tonic::transport::Channel>;

/// A lazily connecting plain-text channel to `url` (`http://host:port`); connection
/// failures surface per call as `UNAVAILABLE`, and the channel reconnects by itself. One
/// connection to whatever `host` resolves to first: [`crate::balance::connect`] spreads
/// calls over every address instead.
pub fn connect(url: &str) -> anyhow::Result<Channel> {
    connect_with(url, None)
}

/// [`connect`], over TLS with `tls` when given (whatever the URL's scheme): the server's
/// certificate must chain to `tls`'s CA and name `url`'s host.
pub fn connect_with(url: &str, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    Ok(TraceLayer::client().layer(secure_endpoint(url, tls)?.connect_lazy()))
}

/// [`endpoint`] for `url`, over TLS with `tls` when given: the scheme becomes `https` and
/// the server's certificate must name `url`'s host.
pub fn secure_endpoint(url: &str, tls: Option<&ClientTls>) -> anyhow::Result<Endpoint> {
    let Some(tls) = tls else { return endpoint(url) };
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let mut parts = uri.into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    let url = http::Uri::from_parts(parts)?.to_string();
    tls.apply(endpoint(&url)?, &host)
}

/// The connection settings of every client (connect timeout, no Nagle, HTTP/2 keep-alive,
/// so a peer that froze is noticed within seconds) for `url`.
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}
