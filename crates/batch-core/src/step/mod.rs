//! Steps, step executions and the context a step runs in.

pub mod item;
pub mod tasklet;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::NaiveDateTime;
use tokio::sync::Notify;

use crate::context::ExecutionContext;
use crate::error::RepositoryError;
use crate::job::JobExecution;
use crate::job::parameters::JobParameters;
use crate::repository::JobRepository;
use crate::status::{BatchStatus, ExitStatus};

/// Any error a step or its components raise.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One unit of a job: a tasklet or a chunk-oriented read-process-write loop.
#[async_trait]
pub trait Step: Send + Sync {
    /// The step's name (STEP_NAME), unique within its job.
    fn name(&self) -> &str;

    /// The value recorded under `batch.stepType` in the step's context.
    fn step_type(&self) -> &str;

    /// Whether the step runs again when its job is restarted after it completed.
    fn allow_start_if_complete(&self) -> bool {
        false
    }

    /// Does the step's work.
    ///
    /// The engine has recorded the step execution as STARTED before calling this and records its
    /// end afterwards. A step keeps its counters and restart state in `ctx`, saves them with
    /// [`StepContext::save`] at its commit points, and checks [`StepContext::is_stop_requested`]
    /// at its boundaries, returning [`StepError::Interrupted`] to end STOPPED.
    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<ExitStatus, StepError>;
}

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// A stop was requested and the step ended at a boundary: the step ends STOPPED.
    Interrupted,
    /// The step failed: it ends FAILED with this error as its exit message.
    Failed(BoxError),
}

impl<E: Into<BoxError>> From<E> for StepError {
    fn from(error: E) -> Self {
        StepError::Failed(error.into())
    }
}

/// Spring Batch's step counters, as kept in BATCH_STEP_EXECUTION.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounters {
    /// READ_COUNT: items read, skips excluded.
    pub read: i64,
    /// WRITE_COUNT: items written.
    pub write: i64,
    /// FILTER_COUNT: items the processor filtered out.
    pub filter: i64,
    /// COMMIT_COUNT: committed transactions.
    pub commit: i64,
    /// ROLLBACK_COUNT: rolled-back transactions.
    pub rollback: i64,
    /// READ_SKIP_COUNT.
    pub read_skip: i64,
    /// PROCESS_SKIP_COUNT.
    pub process_skip: i64,
    /// WRITE_SKIP_COUNT.
    pub write_skip: i64,
}

/// One attempt to run a step (BATCH_STEP_EXECUTION).
#[derive(Debug, Clone, PartialEq)]
pub struct StepExecution {
    /// STEP_EXECUTION_ID.
    pub id: i64,
    /// VERSION, for optimistic locking.
    pub version: i64,
    /// JOB_EXECUTION_ID.
    pub job_execution_id: i64,
    /// STEP_NAME.
    pub step_name: String,
    /// STATUS.
    pub status: BatchStatus,
    /// EXIT_CODE and EXIT_MESSAGE.
    pub exit_status: ExitStatus,
    /// The counters.
    pub counters: StepCounters,
    /// CREATE_TIME.
    pub create_time: NaiveDateTime,
    /// START_TIME.
    pub start_time: Option<NaiveDateTime>,
    /// END_TIME.
    pub end_time: Option<NaiveDateTime>,
    /// LAST_UPDATED.
    pub last_updated: Option<NaiveDateTime>,
    /// The step's execution context, where readers keep their restart position.
    pub context: ExecutionContext,
}

/// A flag set when a stop is requested (by `csv2db stop`, a signal or the operator), that steps
/// can poll at boundaries or await.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    requested: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a stop; every waiter wakes up.
    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Resolves when a stop is requested.
    pub async fn requested(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }
}

/// What a running step sees: its execution, its job's execution, the repository and the stop
/// signal.
pub struct StepContext<'a> {
    step_execution: &'a mut StepExecution,
    job_execution: &'a JobExecution,
    repository: &'a dyn JobRepository,
    stop: &'a StopSignal,
}

impl<'a> StepContext<'a> {
    /// A context for running one step execution.
    pub fn new(
        step_execution: &'a mut StepExecution,
        job_execution: &'a JobExecution,
        repository: &'a dyn JobRepository,
        stop: &'a StopSignal,
    ) -> Self {
        StepContext {
            step_execution,
            job_execution,
            repository,
            stop,
        }
    }

    /// The step execution being run.
    pub fn step_execution(&self) -> &StepExecution {
        self.step_execution
    }

    /// The step execution being run, for updating counters and context.
    pub fn step_execution_mut(&mut self) -> &mut StepExecution {
        self.step_execution
    }

    /// The job execution the step belongs to.
    pub fn job_execution(&self) -> &JobExecution {
        self.job_execution
    }

    /// The job's parameters.
    pub fn parameters(&self) -> &JobParameters {
        &self.job_execution.parameters
    }

    /// The job repository.
    pub fn repository(&self) -> &dyn JobRepository {
        self.repository
    }

    /// The stop signal, to await in long-running work.
    pub fn stop_signal(&self) -> &StopSignal {
        self.stop
    }

    /// True once a stop was requested.
    pub fn is_stop_requested(&self) -> bool {
        self.stop.is_requested()
    }

    /// Saves the step execution's counters and context.
    ///
    /// # Errors
    /// When the repository cannot be written or the row was changed by another process.
    pub async fn save(&mut self) -> Result<(), RepositoryError> {
        self.step_execution.last_updated = Some(crate::time::now());
        self.repository
            .update_step_execution(self.step_execution)
            .await
    }
}
