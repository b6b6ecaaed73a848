//! Shared runtime of the three booking edit-flow services.
//!
//! Owns what every service needs and nothing domain-specific: the generated gRPC bindings
//! and their descriptor set, settings shared by all binaries, tracing and OpenTelemetry
//! set-up, the gRPC server builder with TLS and mutual TLS ([`tls`]), who may call what
//! ([`auth`]), traced clients (also balanced over a peer's replicas),
//! the PostgreSQL pool with migrations, status helpers and backoff.
//!
//! It also holds each mechanism that more than one service runs, once: the worker poll
//! loop ([`worker`]), the leased queue ([`queue`]), the purge of rows past their retention
//! ([`purge`]), the caller's deadline ([`grpc::timeout_of`]) and the stored trace context
//! ([`telemetry::Carrier`]). It must never hold booking, assignment or notification
//! rules: those live in their service crates.

pub mod auth;
pub mod backoff;
pub mod balance;
pub mod db;
pub mod grpc;
pub mod proto;
pub mod purge;
pub mod queue;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod worker;
