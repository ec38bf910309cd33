//! The [`JobRepository`] trait: how the engine stores and reads job metadata.
//!
//! Implementations keep Spring Batch's schema and semantics: VERSION columns do optimistic
//! locking, and [`JobRepository::create_job_execution`] applies the launch rules atomically, so
//! that of two processes launching the same instance at once exactly one runs.

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;

use crate::context::ExecutionContext;
use crate::error::RepositoryError;
use crate::job::JobExecution;
use crate::job::parameters::JobParameters;
use crate::status::BatchStatus;
use crate::step::StepExecution;
use crate::step::item::ChunkTransaction;

/// What [`JobRepository::create_job_execution`] needs to start or restart a job instance.
#[derive(Debug, Clone, Copy)]
pub struct LaunchRequest<'a> {
    /// The job's name.
    pub job_name: &'a str,
    /// All parameters of the new execution; the identifying ones select the instance.
    pub parameters: &'a JobParameters,
    /// How old a running execution's heartbeat may be before it is presumed dead and failed.
    pub lease: Duration,
}

/// Which executions [`JobRepository::find_job_executions`] returns.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only executions of this job.
    pub job_name: Option<String>,
    /// Only executions with this status.
    pub status: Option<BatchStatus>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// One line of `csv2db jobs`: a job name with its counts and latest execution.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// The job's name.
    pub job_name: String,
    /// How many instances it has.
    pub instance_count: i64,
    /// How many executions it has.
    pub execution_count: i64,
    /// Its newest execution: id, status and start time.
    pub last_execution: Option<(i64, BatchStatus, Option<NaiveDateTime>)>,
}

/// Storage of job metadata.
#[async_trait]
pub trait JobRepository: Send + Sync {
    /// The implementation itself, for backend-specific access such as the connection pool that
    /// item writers sharing the repository's database use.
    fn as_any(&self) -> &dyn std::any::Any;

    /// Creates a STARTING execution for the instance that `request`'s identifying parameters
    /// select, creating the instance if it is new, after applying Spring Batch's launch rules
    /// ([`crate::launch::rules`]) in one transaction. Running executions whose heartbeat is
    /// older than the lease are first marked FAILED with a message saying why. A restart inherits
    /// the last execution's job context.
    ///
    /// # Errors
    /// [`RepositoryError::Refused`] when the rules refuse; database errors otherwise.
    async fn create_job_execution(
        &self,
        request: &LaunchRequest<'_>,
    ) -> Result<JobExecution, RepositoryError>;

    /// Writes the execution's status, times and exit status (VERSION + 1). When another process
    /// changed the row only to request a stop, the stop is adopted and the update retried.
    ///
    /// # Errors
    /// [`RepositoryError::OptimisticLock`] when the row changed otherwise.
    async fn update_job_execution(
        &self,
        execution: &mut JobExecution,
    ) -> Result<(), RepositoryError>;

    /// Writes the job execution's context.
    async fn update_job_execution_context(
        &self,
        execution: &JobExecution,
    ) -> Result<(), RepositoryError>;

    /// Refreshes LAST_UPDATED of a running execution and returns its stored status, through
    /// which a launcher learns of stop requests and of having been recovered by another.
    async fn heartbeat(&self, job_execution_id: i64) -> Result<BatchStatus, RepositoryError>;

    /// Creates a STARTING step execution with the given context.
    async fn create_step_execution(
        &self,
        job_execution: &JobExecution,
        step_name: &str,
        context: ExecutionContext,
    ) -> Result<StepExecution, RepositoryError>;

    /// Writes the step execution's status, counters, times, exit status and context in one
    /// transaction (VERSION + 1).
    async fn update_step_execution(&self, step: &mut StepExecution) -> Result<(), RepositoryError>;

    /// Begins the transaction one chunk of a chunk step is written and committed in.
    async fn begin_chunk(&self) -> Result<Box<dyn ChunkTransaction>, RepositoryError>;

    /// The newest execution of the step `step_name` in any execution of the instance.
    async fn last_step_execution(
        &self,
        job_instance_id: i64,
        step_name: &str,
    ) -> Result<Option<StepExecution>, RepositoryError>;

    /// Every job name with its counts and newest execution.
    async fn job_summaries(&self) -> Result<Vec<JobSummary>, RepositoryError>;

    /// Executions matching `filter`, newest first.
    async fn find_job_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<JobExecution>, RepositoryError>;

    /// The execution with this id.
    async fn job_execution(&self, id: i64) -> Result<Option<JobExecution>, RepositoryError>;

    /// The newest execution of the newest instance of `job_name`.
    async fn last_job_execution(
        &self,
        job_name: &str,
    ) -> Result<Option<JobExecution>, RepositoryError>;

    /// The step executions of a job execution, in the order they were created.
    async fn step_executions(
        &self,
        job_execution_id: i64,
    ) -> Result<Vec<StepExecution>, RepositoryError>;

    /// Marks a STARTING or STARTED execution STOPPING; its launcher ends it STOPPED at the next
    /// step or chunk boundary.
    async fn request_stop(&self, job_execution_id: i64) -> Result<JobExecution, RepositoryError>;

    /// Marks an execution that is not running ABANDONED, so its instance is never restarted.
    async fn abandon(&self, job_execution_id: i64) -> Result<JobExecution, RepositoryError>;
}
