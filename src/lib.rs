//! Shared runtime of the three booking edit-flow services.
//!
//! Owns what every service needs and nothing domain-specific: the generated gRPC bindings
//! and their descriptor set, settings shared by all binaries, tracing and OpenTelemetry
//! set-up, the gRPC server builder, traced clients (also balanced over a peer's replicas),
//! the PostgreSQL pool with migrations, status helpers and backoff. It must never hold
//! booking, assignment or notification rules: those live in their service crates.

pub mod backoff;
pub mod balance;
pub mod db;
pub mod grpc;
pub mod proto;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod telemetry;
