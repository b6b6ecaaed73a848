//! Calls spread over every replica that a peer's name resolves to.
//!
//! HTTP/2 keeps one connection per client, so a Kubernetes Service balances connections,
//! not calls: every call of one process would reach the same pod. [`connect`] resolves the
//! peer's host itself, again every resolve interval (a headless Service answers with the
//! address of every ready pod), and feeds the addresses to tonic's balanced channel
//! (tower's power-of-two-choices `Balance`) as `Change::Insert` and `Change::Remove`.
//!
//! Each address's own `grpc.health.v1.Health/Watch` says whether it serves: an address
//! whose process died, froze (HTTP/2 keep-alive) or reports `NOT_SERVING` (starting, or
//! draining after SIGTERM) leaves the set at once, and joins it again once it reports
//! `SERVING`; an address gone from DNS leaves it at the next resolution. The set a call
//! can reach is never empty: the serving addresses; when none serves, every resolved
//! address (calls then fail fast as `UNAVAILABLE`, as with a single peer); before the
//! first resolution, or when the name never resolved, the URL as given. A failed
//! resolution keeps the last addresses.
//!
//! With TLS, every address is reached over TLS and must present a certificate naming the
//! peer's host. When this side's client certificate changes, every entry is replaced by one
//! presenting the new certificate on its next connection, and health watches start again.
//!
//! The channel carries the same trace layer as [`crate::grpc::connect`], and deadlines
//! stay the callers'. Nothing here retries a call: a call that reached a replica which then
//! died fails like any lost call. A long-lived stream stays on the replica it was opened
//! on; reopening it after that replica is gone reaches another one.

use crate::{
    backoff::Backoff,
    grpc::{self, Channel, TraceLayer},
    tls::ClientTls,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Endpoint, channel::Change};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tower::Layer;

/// Longest one resolution may take before it counts as failed (the last addresses stay).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the opening of a health watch may take before the address counts as down.
const WATCH_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// First delay before an address that stopped answering is watched again (doubling, up to
/// the resolve interval).
const REWATCH_BASE: Duration = Duration::from_millis(100);

/// Pending changes between the membership task and the balancer.
const CHANGES_CAPACITY: usize = 64;

/// What [`Resolve::resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns a host and port into the addresses of every replica behind them.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` now, each with `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system's resolver (`getaddrinfo` through tokio): DNS, `/etc/hosts`, IP literals.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A shared resolver: the system's by default (tests put one they control).
#[derive(Clone)]
pub struct Resolver(Arc<dyn Resolve>);

impl Resolver {
    /// Wraps `resolve`.
    pub fn new(resolve: impl Resolve) -> Self {
        Self(Arc::new(resolve))
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new(SystemResolver)
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// A traced channel whose calls are spread over every serving address of `url`'s host,
/// resolved again every `resolve_interval` with `resolver`. Must be called inside a tokio
/// runtime; the background work ends when the last clone of the channel is dropped.
/// Over TLS when `tls` is given, whatever the URL's scheme. Fails only for a malformed URL.
pub fn connect(
    url: &str,
    resolver: Resolver,
    resolve_interval: Duration,
    tls: Option<ClientTls>,
) -> anyhow::Result<Channel> {
    let target = Target::parse(url, tls)?;
    let given = target.given()?;
    let (channel, changes) = tonic::transport::Channel::balance_channel(CHANGES_CAPACITY);
    tokio::spawn(maintain(target, given, resolver, resolve_interval, changes));
    Ok(TraceLayer::client().layer(channel))
}

/// The peer as a URL names it.
#[derive(Clone, Debug)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
    /// `scheme://authority` of the URL: the `:authority` every call carries, whichever
    /// address it goes to.
    origin: http::Uri,
    /// TLS to every address, checked against `host`.
    tls: Option<ClientTls>,
}

impl Target {
    fn parse(url: &str, tls: Option<ClientTls>) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse()?;
        let given_scheme = uri.scheme_str().unwrap_or("http");
        let default_port = if given_scheme == "https" { 443 } else { 80 };
        let scheme = if tls.is_some() { "https" } else { given_scheme }.to_string();
        let authority = uri.authority().ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(default_port);
        let origin = format!("{scheme}://{authority}").parse()?;
        Ok(Self { scheme, host, port, origin, tls })
    }

    /// The endpoint of the URL as given (tonic resolves its host when it connects).
    fn given(&self) -> anyhow::Result<Endpoint> {
        self.secure(grpc::endpoint(&self.origin.to_string())?)
    }

    /// The endpoint of one replica: its address, the peer's name as `:authority`.
    fn endpoint(&self, addr: SocketAddr) -> anyhow::Result<Endpoint> {
        self.secure(grpc::endpoint(&format!("{}://{addr}", self.scheme))?.origin(self.origin.clone()))
    }

    fn secure(&self, endpoint: Endpoint) -> anyhow::Result<Endpoint> {
        match &self.tls {
            Some(tls) => tls.apply(endpoint, &self.host),
            None => Ok(endpoint),
        }
    }

    /// Changes when the client certificate changed (always 0 in plain text).
    fn identity_generation(&self) -> u64 {
        self.tls.as_ref().map_or(0, ClientTls::generation)
    }
}

/// An entry of the balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    /// The URL as given (tonic resolves its host when it connects).
    Given,
    /// One resolved address.
    Addr(SocketAddr),
}

/// What an address's health watch last said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    /// Not answered yet.
    Unknown,
    /// `SERVING`.
    Serving,
    /// Unreachable, or anything but `SERVING`.
    Down,
}

/// The entries calls may reach: the serving addresses; if none serves, every resolved one;
/// if nothing resolved, the URL as given. Never empty.
fn reachable(resolved: &BTreeMap<SocketAddr, Health>) -> BTreeSet<Key> {
    let serving: BTreeSet<Key> =
        resolved.iter().filter(|(_, health)| **health == Health::Serving).map(|(addr, _)| Key::Addr(*addr)).collect();
    if !serving.is_empty() {
        serving
    } else if !resolved.is_empty() {
        resolved.keys().map(|addr| Key::Addr(*addr)).collect()
    } else {
        BTreeSet::from([Key::Given])
    }
}

/// One resolved address and its health watch (cancelled when the member is dropped).
struct Member {
    health: Health,
    /// Tells this watch's reports from those of an earlier watch of the same address.
    generation: u64,
    _watch: DropGuard,
}

/// A health report: address, generation of its watch, health.
type Report = (SocketAddr, u64, Health);

/// Keeps the balancer's entries in step with DNS and health until the channel is gone.
async fn maintain(
    target: Target,
    mut given: Endpoint,
    resolver: Resolver,
    interval: Duration,
    changes: mpsc::Sender<Change<Key, Endpoint>>,
) {
    let mut identity = target.identity_generation();
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let rewatch = Backoff::new(REWATCH_BASE, interval.max(REWATCH_BASE));
    let mut members: BTreeMap<SocketAddr, Member> = BTreeMap::new();
    let mut current: BTreeSet<Key> = BTreeSet::new();
    let mut generations = 0u64;
    let mut resolve_failing = false;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let health: BTreeMap<SocketAddr, Health> = members.iter().map(|(addr, m)| (*addr, m.health)).collect();
        let desired = reachable(&health);
        if desired != current {
            // Inserts first, so the balancer is never left empty between the two.
            for key in desired.difference(&current) {
                let endpoint = match key {
                    Key::Given => Ok(given.clone()),
                    Key::Addr(addr) => target.endpoint(*addr),
                };
                match endpoint {
                    Ok(endpoint) => {
                        if changes.send(Change::Insert(*key, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::warn!(host = %target.host, ?key, %error, "cannot build an endpoint"),
                }
            }
            for key in current.difference(&desired) {
                if changes.send(Change::Remove(*key)).await.is_err() {
                    return;
                }
            }
            let serving = health.values().filter(|h| **h == Health::Serving).count();
            tracing::info!(
                host = %target.host,
                resolved = health.len(),
                serving,
                balanced = desired.len(),
                "peer endpoints changed"
            );
            current = desired;
        }
        tokio::select! {
            _ = changes.closed() => return,
            _ = tick.tick() => {
                let now = target.identity_generation();
                if now != identity {
                    identity = now;
                    match renew(&target, &current, &mut members, &mut generations, &reports_tx, rewatch, &changes).await {
                        Ok(Some(renewed)) => given = renewed,
                        Ok(None) => return,
                        Err(error) => tracing::warn!(host = %target.host, %error, "cannot renew the endpoints"),
                    }
                }
                let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, resolver.0.resolve(&target.host, target.port)).await;
                let addrs = match resolved {
                    Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                    failed => {
                        if !resolve_failing {
                            let reason = match failed {
                                Ok(Ok(_)) => "no address".to_string(),
                                Ok(Err(error)) => error.to_string(),
                                Err(_) => format!("no answer within {RESOLVE_TIMEOUT:?}"),
                            };
                            tracing::warn!(host = %target.host, %reason, kept = members.len(), "cannot resolve the peer; keeping its last addresses");
                        }
                        resolve_failing = true;
                        continue;
                    }
                };
                resolve_failing = false;
                let fresh: BTreeSet<SocketAddr> = addrs.into_iter().collect();
                members.retain(|addr, _| fresh.contains(addr));
                for addr in fresh {
                    if members.contains_key(&addr) {
                        continue;
                    }
                    let endpoint = match target.endpoint(addr) {
                        Ok(endpoint) => endpoint,
                        Err(error) => {
                            tracing::warn!(host = %target.host, %addr, %error, "cannot build an endpoint");
                            continue;
                        }
                    };
                    generations += 1;
                    let stop = CancellationToken::new();
                    tokio::spawn(watch(addr, generations, endpoint, reports_tx.clone(), rewatch, stop.clone()));
                    members.insert(addr, Member { health: Health::Unknown, generation: generations, _watch: stop.drop_guard() });
                }
            }
            Some((addr, generation, health)) = reports.recv() => {
                if let Some(member) = members.get_mut(&addr).filter(|m| m.generation == generation) {
                    member.health = health;
                }
            }
        }
    }
}

/// After this side's certificate changed: replaces every balanced entry by one presenting
/// the new certificate (calls in flight finish on their connections), and watches every
/// member's health again over the new one. Returns the new endpoint of the given URL, `None`
/// when the channel is gone.
async fn renew(
    target: &Target,
    current: &BTreeSet<Key>,
    members: &mut BTreeMap<SocketAddr, Member>,
    generations: &mut u64,
    reports: &mpsc::UnboundedSender<Report>,
    rewatch: Backoff,
    changes: &mpsc::Sender<Change<Key, Endpoint>>,
) -> anyhow::Result<Option<Endpoint>> {
    let given = target.given()?;
    for key in current {
        let endpoint = match key {
            Key::Given => given.clone(),
            Key::Addr(addr) => target.endpoint(*addr)?,
        };
        if changes.send(Change::Insert(*key, endpoint)).await.is_err() {
            return Ok(None);
        }
    }
    for (addr, member) in members.iter_mut() {
        *generations += 1;
        let stop = CancellationToken::new();
        tokio::spawn(watch(*addr, *generations, target.endpoint(*addr)?, reports.clone(), rewatch, stop.clone()));
        member.generation = *generations;
        member._watch = stop.drop_guard();
    }
    tracing::info!(host = %target.host, balanced = current.len(), "client certificate changed: peer endpoints renewed");
    Ok(Some(given))
}

/// Watches the health of the replica at `addr` until `stop`, reporting each change.
/// Watches again after `rewatch` delays when the watch ends or reports anything but
/// `SERVING` (it then drops the stream, so a draining server is not kept open by it).
async fn watch(
    addr: SocketAddr,
    generation: u64,
    endpoint: Endpoint,
    reports: mpsc::UnboundedSender<Report>,
    rewatch: Backoff,
    stop: CancellationToken,
) {
    // A plain channel: health probes are no calls of the flow, so they get no spans.
    let mut client = HealthClient::new(endpoint.connect_lazy());
    let mut failures = 0u32;
    loop {
        let served = tokio::select! {
            _ = stop.cancelled() => return,
            served = watch_once(&mut client, addr, generation, &reports) => served,
        };
        if reports.send((addr, generation, Health::Down)).is_err() {
            return;
        }
        failures = if served { 1 } else { failures + 1 };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(rewatch.delay(failures)) => {}
        }
    }
}

/// One health watch, reporting `SERVING` while it lasts; returns when it ends, fails or
/// reports anything else, with whether the replica served meanwhile.
async fn watch_once(
    client: &mut HealthClient<tonic::transport::Channel>,
    addr: SocketAddr,
    generation: u64,
    reports: &mpsc::UnboundedSender<Report>,
) -> bool {
    let request = HealthCheckRequest { service: String::new() };
    let mut stream = match tokio::time::timeout(WATCH_OPEN_TIMEOUT, client.watch(request)).await {
        Ok(Ok(response)) => response.into_inner(),
        _ => return false,
    };
    let mut served = false;
    while let Ok(Some(answer)) = stream.message().await {
        if answer.status != ServingStatus::Serving as i32 {
            break;
        }
        served = true;
        if reports.send((addr, generation, Health::Serving)).is_err() {
            break;
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 50052))
    }

    #[test]
    fn only_serving_replicas_are_reachable_when_any_serves() {
        let resolved =
            BTreeMap::from([(addr(2), Health::Serving), (addr(3), Health::Down), (addr(4), Health::Unknown)]);
        assert_eq!(reachable(&resolved), BTreeSet::from([Key::Addr(addr(2))]));
    }

    #[test]
    fn every_resolved_address_is_reachable_when_none_serves() {
        let resolved = BTreeMap::from([(addr(2), Health::Down), (addr(3), Health::Unknown)]);
        assert_eq!(reachable(&resolved), BTreeSet::from([Key::Addr(addr(2)), Key::Addr(addr(3))]));
    }

    #[test]
    fn the_given_url_is_reachable_before_anything_resolved() {
        assert_eq!(reachable(&BTreeMap::new()), BTreeSet::from([Key::Given]));
    }

    #[test]
    fn targets_keep_the_name_as_authority() {
        let target = Target::parse("http://assign-svc.booking.svc:50052", None).expect("parses");
        assert_eq!((target.host.as_str(), target.port), ("assign-svc.booking.svc", 50052));
        assert_eq!(target.origin.to_string(), "http://assign-svc.booking.svc:50052/");
        let endpoint = target.endpoint(addr(7)).expect("endpoint");
        assert_eq!(endpoint.uri().to_string(), "http://127.0.0.7:50052/");

        let v6 = Target::parse("https://[::1]", None).expect("parses");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 443));
        assert!(Target::parse("/no/host", None).is_err());
    }

    /// Answers whatever the test put last.
    #[derive(Clone, Default)]
    struct Fixed(Arc<std::sync::Mutex<Vec<SocketAddr>>>);

    impl Resolve for Fixed {
        fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> ResolveFuture<'a> {
            let addrs = self.0.lock().map(|a| a.clone()).unwrap_or_default();
            Box::pin(async move { Ok(addrs) })
        }
    }

    #[tokio::test]
    async fn resolved_addresses_replace_the_given_url_and_follow_dns() {
        // Port 1: nothing listens, so no address ever serves.
        let silent = |last: u8| SocketAddr::from(([127, 0, 0, last], 1));
        let resolver = Fixed::default();
        *resolver.0.lock().expect("lock") = vec![silent(2), silent(3)];
        let (changes_tx, mut changes) = mpsc::channel(CHANGES_CAPACITY);
        let target = Target::parse("http://peer.test:1", None).expect("parses");
        let given = grpc::endpoint("http://peer.test:1").expect("endpoint");
        let interval = Duration::from_millis(50);
        let task = tokio::spawn(maintain(target, given, Resolver::new(resolver.clone()), interval, changes_tx));
        let mut next = async || match changes.recv().await.expect("a change") {
            Change::Insert(key, _) => (true, key),
            Change::Remove(key) => (false, key),
        };
        assert_eq!(next().await, (true, Key::Given));
        // Both stay although none serves; the given URL goes.
        let mut seen = vec![next().await, next().await, next().await];
        seen.sort();
        assert_eq!(seen, vec![(false, Key::Given), (true, Key::Addr(silent(2))), (true, Key::Addr(silent(3)))]);
        *resolver.0.lock().expect("lock") = vec![silent(3)];
        assert_eq!(next().await, (false, Key::Addr(silent(2))));
        drop(changes);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends with the channel").expect("no panic");
    }
}
