//! The domain and engine of csv2db, modelled on Spring Batch 5/6.
//!
//! A [`Job`](job::Job) is an ordered list of [`Step`](step::Step)s. Running one with given
//! [`JobParameters`](job::parameters::JobParameters) creates a [`JobExecution`](job::JobExecution)
//! of the [`JobInstance`](job::JobInstance) those parameters identify. The
//! [`JobLauncher`](launch::JobLauncher) applies Spring Batch's launch and restart rules, keeps a
//! heartbeat so that a crashed launcher can be recovered, and records every status change through
//! the [`JobRepository`](repository::JobRepository) trait.
//!
//! This crate holds no storage, file or cluster code: `batch-repository` implements the
//! repository on PostgreSQL and SQLite, `batch-io` provides item readers and writers, and
//! `batch-kube` runs steps as Kubernetes Jobs or local processes.

pub mod context;
pub mod error;
pub mod job;
pub mod launch;
pub mod repository;
pub mod status;
pub mod step;
pub mod thread;
pub mod time;

pub use context::ExecutionContext;
pub use status::{BatchStatus, ExitStatus};

/// The value csv2db records under `batch.version` in execution contexts.
pub fn version_string() -> String {
    format!("csv2db-{}", env!("CARGO_PKG_VERSION"))
}
