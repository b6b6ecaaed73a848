//! Reassign jobs: the stream that carries them and the scheduler that tries them.
//!
//! booking-svc submits jobs on a long-lived Reassign stream: `session` applies one
//! stream's commands, `hub` fans the jobs' updates out to the streams that asked for
//! them, and `scheduler` claims due jobs and attempts them. The jobs table is the source
//! of truth; the streams are only transport.

pub mod hub;
pub mod scheduler;
pub mod session;
