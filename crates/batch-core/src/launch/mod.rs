//! Running jobs: the [`JobLauncher`], the [`JobOperator`] and the [`JobRegistry`].

mod heartbeat;
mod operator;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use operator::JobOperator;

use crate::error::{LaunchRefusal, RepositoryError};
use crate::job::parameters::JobParameters;
use crate::job::{Job, JobExecution};
use crate::repository::{JobRepository, LaunchRequest};
use crate::status::{BatchStatus, ExitStatus};
use crate::step::{Step, StepContext, StepError, StepExecution, StopSignal};
use crate::time::now;
use heartbeat::Heartbeat;

/// The context key recording the engine version that wrote a context.
pub const BATCH_VERSION_KEY: &str = "batch.version";
/// The step context key recording the step's type.
pub const STEP_TYPE_KEY: &str = "batch.stepType";
/// The step context key set once a step has run.
pub const EXECUTED_KEY: &str = "batch.executed";

/// The jobs a launcher can run, by name.
#[derive(Debug, Default, Clone)]
pub struct JobRegistry {
    jobs: BTreeMap<String, Arc<Job>>,
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `job`, replacing any job of the same name.
    pub fn register(&mut self, job: Job) {
        self.jobs.insert(job.name().to_string(), Arc::new(job));
    }

    /// The job called `name`.
    ///
    /// # Errors
    /// [`LaunchError::NoSuchJob`] naming the jobs that exist.
    pub fn get(&self, name: &str) -> Result<Arc<Job>, LaunchError> {
        self.jobs
            .get(name)
            .cloned()
            .ok_or_else(|| LaunchError::NoSuchJob {
                name: name.to_string(),
                available: self.names().join(", "),
            })
    }

    /// The registered job names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }
}

/// Timing of crash detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchSettings {
    /// How old a running execution's heartbeat may be before a launch presumes it dead.
    pub lease: Duration,
    /// How often a running launcher refreshes its heartbeat and checks for stop requests.
    pub heartbeat: Duration,
}

impl LaunchSettings {
    /// Settings with the given lease and a heartbeat at a quarter of it.
    pub fn with_lease(lease: Duration) -> Self {
        LaunchSettings {
            lease,
            heartbeat: (lease / 4).max(Duration::from_millis(100)),
        }
    }
}

impl Default for LaunchSettings {
    fn default() -> Self {
        Self::with_lease(Duration::from_secs(60))
    }
}

/// Why a job could not be launched, restarted, stopped or abandoned.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No job of that name is registered.
    #[error("no job named '{name}' (available: {available})")]
    NoSuchJob {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: String,
    },
    /// The parameters do not satisfy the job.
    #[error("{0}")]
    InvalidParameters(String),
    /// The repository refused or failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl LaunchError {
    /// The launch rule that refused, if that is the reason.
    pub fn refusal(&self) -> Option<&LaunchRefusal> {
        match self {
            LaunchError::Repository(RepositoryError::Refused(refusal)) => Some(refusal),
            _ => None,
        }
    }
}

/// Starts and restarts jobs, following Spring Batch's rules.
#[derive(Clone)]
pub struct JobLauncher {
    repository: Arc<dyn JobRepository>,
    settings: LaunchSettings,
}

impl JobLauncher {
    /// A launcher that records executions in `repository`.
    pub fn new(repository: Arc<dyn JobRepository>, settings: LaunchSettings) -> Self {
        JobLauncher {
            repository,
            settings,
        }
    }

    /// The repository the launcher writes to.
    pub fn repository(&self) -> &Arc<dyn JobRepository> {
        &self.repository
    }

    /// Runs `job` with `parameters` to its end and returns the finished execution.
    ///
    /// New identifying parameters create a new instance; those of a FAILED or STOPPED instance
    /// restart it, skipping its completed steps. Steps run in order until one does not complete.
    /// `stop` (and a stop requested through the repository) ends the execution STOPPED at the
    /// next boundary.
    ///
    /// # Errors
    /// Invalid parameters, a refusal by the launch rules, or a repository failure before the
    /// execution could be recorded. A failing step is not an error: the returned execution is
    /// FAILED.
    pub async fn run(
        &self,
        job: &Job,
        parameters: JobParameters,
        stop: StopSignal,
    ) -> Result<JobExecution, LaunchError> {
        job.validate(&parameters)
            .map_err(LaunchError::InvalidParameters)?;
        let mut execution = self
            .repository
            .create_job_execution(&LaunchRequest {
                job_name: job.name(),
                parameters: &parameters,
                lease: self.settings.lease,
            })
            .await?;
        tracing::info!(
            job = job.name(),
            execution_id = execution.id,
            instance_id = execution.instance.id,
            "job execution created"
        );
        execution.status = BatchStatus::Started;
        execution.start_time = Some(now());
        execution.last_updated = execution.start_time;
        execution
            .context
            .put(BATCH_VERSION_KEY, crate::version_string());
        self.repository.update_job_execution(&mut execution).await?;
        self.repository
            .update_job_execution_context(&execution)
            .await?;

        let heartbeat = Heartbeat::start(
            self.repository.clone(),
            execution.id,
            self.settings.heartbeat,
            stop.clone(),
        );
        let outcome = self.run_steps(job, &mut execution, &stop).await;
        heartbeat.finish().await;

        let (status, exit_status) = match outcome {
            Ok(result) => result,
            Err(error) => (BatchStatus::Failed, ExitStatus::failed_with(&error)),
        };
        execution.status = status;
        execution.exit_status = exit_status;
        execution.end_time = Some(now());
        execution.last_updated = execution.end_time;
        self.repository.update_job_execution(&mut execution).await?;
        tracing::info!(
            job = job.name(),
            execution_id = execution.id,
            status = %execution.status,
            "job execution ended"
        );
        Ok(execution)
    }

    /// Runs the steps in order; returns the job's resulting status and exit status.
    async fn run_steps(
        &self,
        job: &Job,
        execution: &mut JobExecution,
        stop: &StopSignal,
    ) -> Result<(BatchStatus, ExitStatus), RepositoryError> {
        let mut ran_any = false;
        for step in job.steps() {
            if stop.is_requested() {
                return Ok((
                    BatchStatus::Stopped,
                    ExitStatus::stopped()
                        .with_description(format!("stopped before step '{}'", step.name())),
                ));
            }
            let Some(mut step_execution) = self.prepare_step(execution, step.as_ref()).await?
            else {
                continue;
            };
            ran_any = true;
            self.run_step(step.as_ref(), &mut step_execution, execution, stop)
                .await?;
            if step_execution.status != BatchStatus::Completed {
                return Ok((step_execution.status, step_execution.exit_status));
            }
        }
        if ran_any {
            Ok((BatchStatus::Completed, ExitStatus::completed()))
        } else {
            Ok((
                BatchStatus::Completed,
                ExitStatus::noop().with_description(
                    "All steps already completed or no steps configured for this job.",
                ),
            ))
        }
    }

    /// Applies the step restart rules; returns the new step execution, or `None` to skip it.
    async fn prepare_step(
        &self,
        execution: &JobExecution,
        step: &dyn Step,
    ) -> Result<Option<StepExecution>, RepositoryError> {
        let last = self
            .repository
            .last_step_execution(execution.instance.id, step.name())
            .await?;
        let mut context = crate::context::ExecutionContext::new();
        if let Some(last) = last {
            match last.status {
                BatchStatus::Completed if !step.allow_start_if_complete() => {
                    tracing::info!(step = step.name(), "step already completed; skipping");
                    return Ok(None);
                }
                BatchStatus::Abandoned => return Ok(None),
                BatchStatus::Unknown => {
                    return Err(RepositoryError::InvalidState {
                        id: last.id,
                        status: BatchStatus::Unknown,
                        reason: "a step in UNKNOWN state cannot be restarted",
                    });
                }
                BatchStatus::Completed => {}
                _ => {
                    context = last.context;
                    context.remove(EXECUTED_KEY);
                }
            }
        }
        context.put(BATCH_VERSION_KEY, crate::version_string());
        context.put(STEP_TYPE_KEY, step.step_type());
        let step_execution = self
            .repository
            .create_step_execution(execution, step.name(), context)
            .await?;
        Ok(Some(step_execution))
    }

    /// Runs one step execution and records its end.
    async fn run_step(
        &self,
        step: &dyn Step,
        step_execution: &mut StepExecution,
        execution: &JobExecution,
        stop: &StopSignal,
    ) -> Result<(), RepositoryError> {
        step_execution.status = BatchStatus::Started;
        step_execution.start_time = Some(now());
        step_execution.last_updated = step_execution.start_time;
        self.repository
            .update_step_execution(step_execution)
            .await?;
        tracing::info!(
            step = step.name(),
            step_execution_id = step_execution.id,
            "step started"
        );

        let result = {
            let mut ctx =
                StepContext::new(step_execution, execution, self.repository.as_ref(), stop);
            step.execute(&mut ctx).await
        };
        let (status, exit_status) = match result {
            Ok(exit_status) => (BatchStatus::Completed, exit_status),
            Err(StepError::Interrupted) => (
                BatchStatus::Stopped,
                ExitStatus::stopped().with_description("stop requested"),
            ),
            Err(StepError::Failed(error)) => {
                tracing::error!(step = step.name(), error = %crate::status::describe_error(error.as_ref()), "step failed");
                (BatchStatus::Failed, ExitStatus::failed_with(error.as_ref()))
            }
        };
        step_execution.status = status;
        step_execution.exit_status = exit_status;
        step_execution.end_time = Some(now());
        step_execution.last_updated = step_execution.end_time;
        step_execution.context.put(EXECUTED_KEY, true);
        self.repository
            .update_step_execution(step_execution)
            .await?;
        tracing::info!(step = step.name(), status = %status, "step ended");
        Ok(())
    }
}
