//! Several replicas of one service behind one name, as a headless Service gives them: real
//! processes on distinct loopback addresses (`127.0.N.1`, `127.0.N.2`, ...) sharing one
//! port, and a resolver the test controls that answers the name with the addresses it
//! lists, so booking-svc's own balancing code (not a copy) spreads its calls over them.
//! Each replica exports its spans under a name of its own, to count the calls it served.

use super::{otlp::Collector, process::ServiceProcess};
use platform::balance::{Resolve, ResolveFuture};
use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

/// A DNS the test writes: each name answers the addresses last set for it.
#[derive(Clone, Default)]
pub struct TestResolver {
    names: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
}

impl TestResolver {
    /// From now on `name` resolves to `addrs`.
    pub fn set(&self, name: &str, addrs: Vec<Ipv4Addr>) {
        self.names.lock().expect("names").insert(name.to_string(), addrs);
    }
}

impl Resolve for TestResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        let answer = match self.names.lock().expect("names").get(host) {
            Some(addrs) => Ok(addrs.iter().map(|ip| SocketAddr::from((*ip, port))).collect()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such name"))),
        };
        Box::pin(async move { answer })
    }
}

/// The replicas of one service on `127.0.{net}.x:port`, named `name`.
pub struct Replicas {
    pub bin: &'static str,
    pub name: String,
    pub net: u8,
    pub port: u16,
    pub replicas: Vec<ServiceProcess>,
    envs: Vec<(String, String)>,
}

impl Replicas {
    /// `count` replicas of `bin` with `envs`, each exporting spans to `collector` as
    /// `{bin}@{address}`; returns once all serve. Listed in `resolver` under `name`.
    pub async fn start(
        bin: &'static str,
        name: &str,
        net: u8,
        count: u8,
        envs: &[(&str, &str)],
        collector: &Collector,
        resolver: &TestResolver,
    ) -> Self {
        let port = free_port_on(net, count + 2);
        let mut envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        envs.extend([
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), collector.endpoint.clone()),
            // Spans reach the collector within a fraction of a second.
            ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
        ]);
        let mut replicas = Self { bin, name: name.to_string(), net, port, replicas: Vec::new(), envs };
        for _ in 0..count {
            replicas.add().await;
        }
        resolver.set(name, replicas.addrs());
        replicas
    }

    /// Starts one more replica (not yet listed in any resolver) and waits until it serves.
    pub async fn add(&mut self) -> Ipv4Addr {
        let host = Ipv4Addr::new(127, 0, self.net, self.replicas.len() as u8 + 1);
        let mut envs = self.envs.clone();
        envs.push(("OTEL_SERVICE_NAME".to_string(), service_name(self.bin, host)));
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut process = ServiceProcess::spawn_at(self.bin, host, self.port, &envs);
        process.wait_serving().await;
        self.replicas.push(process);
        host
    }

    /// The addresses of the replicas started so far.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        self.replicas.iter().map(|r| r.host).collect()
    }

    /// The URL booking-svc is given: the name, not an address.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.name, self.port)
    }

    /// The URL of one replica itself.
    pub fn replica_url(&self, index: usize) -> String {
        self.replicas[index].url.clone()
    }

    /// The span service name of each replica, in start order.
    pub fn service_names(&self) -> Vec<String> {
        self.addrs().into_iter().map(|host| service_name(self.bin, host)).collect()
    }
}

/// The span service name of the replica of `bin` at `host`.
fn service_name(bin: &str, host: Ipv4Addr) -> String {
    format!("{bin}@{host}")
}

/// Server spans named `span` per service name, over every span `collector` received.
pub fn served(collector: &Collector, span: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in collector.spans().into_iter().filter(|s| s.name == span && s.kind == 2) {
        *counts.entry(s.service).or_insert(0) += 1;
    }
    counts
}

/// A port free on `127.0.{net}.1` to `127.0.{net}.{count}` at once (checked by binding all).
fn free_port_on(net: u8, count: u8) -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind((Ipv4Addr::new(127, 0, net, 1), 0)).expect("bind loopback");
        let port = first.local_addr().expect("addr").port();
        let others: Result<Vec<_>, _> =
            (2..=count).map(|i| std::net::TcpListener::bind((Ipv4Addr::new(127, 0, net, i), port))).collect();
        if others.is_ok() {
            return port;
        }
    }
    panic!("no port free on every address of 127.0.{net}.x");
}
