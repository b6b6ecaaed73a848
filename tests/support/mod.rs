//! The one test harness: a fresh PostgreSQL database per test, the three services
//! in-process on random loopback ports or as real processes (also several replicas behind
//! one name), typed clients, a real SMTP server, an OTLP receiver, the real grpcurl, and
//! the repository's YAML files as JSON.

#![allow(dead_code)]

pub mod calendar;
pub mod db;
pub mod grpcurl;
pub mod otlp;
pub mod process;
pub mod replicas;
pub mod services;
pub mod smtp;
pub mod stack;
pub mod yaml;

use std::{future::Future, time::Duration};

/// Polls `check` every 20 ms until it yields `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (bound then released; another process could take it, rarely).
/// Never the same port twice in one test process: the kernel may hand a released port
/// out again at once, and two services of one test would then race for it.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Held until a new port comes up, so that the kernel cannot repeat one of them.
    let mut held = Vec::new();
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
        held.push(listener);
    }
}

/// The workspace root (where Cargo.toml is).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
