//! Errors of the repository, the launch rules and the operator.

use chrono::NaiveDateTime;

use crate::context::ContextFormatError;
use crate::job::parameters::ParameterError;
use crate::status::BatchStatus;
use crate::step::BoxError;

/// Why Spring Batch's launch rules refuse to start or restart a job instance.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchRefusal {
    /// The instance already completed (or was abandoned): a new run needs new identifying
    /// parameters.
    #[error(
        "job instance {instance_id} of '{job_name}' already ended {status} (execution {execution_id}); run it with different identifying parameters, or with --next"
    )]
    AlreadyComplete {
        /// The job's name.
        job_name: String,
        /// The instance that completed.
        instance_id: i64,
        /// Its completed or abandoned execution.
        execution_id: i64,
        /// COMPLETED or ABANDONED.
        status: BatchStatus,
    },
    /// An execution of the instance is running and its launcher is alive.
    #[error(
        "job instance {instance_id} of '{job_name}' is already running as execution {execution_id} ({status}, last heartbeat {last_updated})"
    )]
    AlreadyRunning {
        /// The job's name.
        job_name: String,
        /// The instance.
        instance_id: i64,
        /// The running execution.
        execution_id: i64,
        /// STARTING, STARTED or STOPPING.
        status: BatchStatus,
        /// When its launcher last reported.
        last_updated: String,
    },
    /// An execution of the instance is in a state that forbids a restart.
    #[error("job instance {instance_id} cannot be restarted: execution {execution_id} is {status}")]
    NotRestartable {
        /// The instance.
        instance_id: i64,
        /// The blocking execution.
        execution_id: i64,
        /// Its status (UNKNOWN).
        status: BatchStatus,
    },
}

/// A failure to read or write job metadata.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// Spring Batch's launch rules refused the launch.
    #[error(transparent)]
    Refused(#[from] LaunchRefusal),
    /// No job execution has this id.
    #[error("no job execution with id {0}")]
    NoSuchExecution(i64),
    /// The requested operation does not apply to the execution's current status.
    #[error("job execution {id} is {status}: {reason}")]
    InvalidState {
        /// The execution.
        id: i64,
        /// Its current status.
        status: BatchStatus,
        /// What the operation needs.
        reason: &'static str,
    },
    /// Another process changed the row since it was read (VERSION mismatch).
    #[error(
        "{entity} {id} was changed by another process (expected version {expected}, found {found}); it may have been recovered after its heartbeat lapsed"
    )]
    OptimisticLock {
        /// "job execution" or "step execution".
        entity: &'static str,
        /// The row's id.
        id: i64,
        /// The version this process held.
        expected: i64,
        /// The version found in the database.
        found: i64,
    },
    /// A stored parameter could not be read back.
    #[error("stored parameter of job execution {execution_id} is unreadable: {source}")]
    BadParameter {
        /// The execution.
        execution_id: i64,
        /// Why.
        #[source]
        source: ParameterError,
    },
    /// A stored execution context could not be read back.
    #[error("stored context is unreadable: {0}")]
    BadContext(#[from] ContextFormatError),
    /// A stored value does not fit Spring Batch's schema (for example an unknown STATUS).
    #[error("unexpected stored value: {0}")]
    Corrupt(String),
    /// The database schema is not the one configured.
    #[error("{0}")]
    Schema(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(BoxError),
}

/// Launch time of an execution shown in messages.
pub(crate) fn describe_time(time: Option<NaiveDateTime>) -> String {
    time.map_or_else(
        || "never".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    )
}
