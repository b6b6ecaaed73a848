//! The one gRPC server builder every service uses, and traced clients.
//!
//! [`GrpcServer`] adds gRPC health, reflection v1 and v1alpha (with every service's
//! descriptors, so grpcurl needs no .proto file) and composes the cross-cutting tower
//! layers once: per-call span with W3C context extraction, load shedding, a process-wide
//! concurrency limit, a per-request timeout, message size limits and graceful shutdown.
//! [`connect`] gives clients that inject the caller's trace context into every call, and
//! [`timeout_of`] reads how long a caller waits. Nothing here knows a domain rule.
//!
//! With a [`Transport`] holding TLS, the server accepts connections itself and hands tonic
//! `tokio_rustls` streams, so every request's extensions hold
//! `TlsConnectInfo<TcpConnectInfo>` (the caller's certificate chain in `peer_certs()`); in
//! plain text they hold `TcpConnectInfo`. A transport's `HEALTH_ADDR` serves only
//! `grpc.health.v1`, in plain text, from the same health reporter.

mod client;
mod deadline;
mod server;
mod trace;

pub use client::{Channel, connect, connect_with, endpoint, secure_endpoint};
pub use deadline::{deadline_of, timeout_of};
pub use server::{GrpcServer, Health, ServerLimits, Transport};
pub use trace::{TraceLayer, Traced};

use std::{future::Future, pin::Pin};

/// Service name of the gRPC health service.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// A boxed, sendable future: what the server and the trace layer return.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
