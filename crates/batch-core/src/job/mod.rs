//! Jobs, job instances and job executions.

pub mod key;
pub mod parameters;

use std::fmt;
use std::sync::Arc;

use chrono::NaiveDateTime;

use crate::context::ExecutionContext;
use crate::status::{BatchStatus, ExitStatus};
use crate::step::Step;
use parameters::JobParameters;

/// The parameter name [`JobOperator::start_next`](crate::launch::JobOperator::start_next) increments.
pub const RUN_ID: &str = "run.id";

/// A named, ordered list of steps with the parameters it accepts.
#[derive(Clone)]
pub struct Job {
    name: String,
    steps: Vec<Arc<dyn Step>>,
    required_parameters: Vec<String>,
    optional_parameters: Vec<String>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field(
                "steps",
                &self.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("required_parameters", &self.required_parameters)
            .field("optional_parameters", &self.optional_parameters)
            .finish()
    }
}

impl Job {
    /// Starts the definition of a job called `name`.
    pub fn builder(name: impl Into<String>) -> JobBuilder {
        JobBuilder {
            job: Job {
                name: name.into(),
                steps: Vec::new(),
                required_parameters: Vec::new(),
                optional_parameters: Vec::new(),
            },
        }
    }

    /// The job's name (JOB_NAME).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The steps, in the order they run.
    pub fn steps(&self) -> &[Arc<dyn Step>] {
        &self.steps
    }

    /// Parameter names that must be present.
    pub fn required_parameters(&self) -> &[String] {
        &self.required_parameters
    }

    /// Parameter names that may be present besides the required ones.
    pub fn optional_parameters(&self) -> &[String] {
        &self.optional_parameters
    }

    /// Checks `parameters` as Spring Batch's `DefaultJobParametersValidator` does: every required
    /// key must be present and, when optional keys are declared, no key outside the two lists
    /// (other than `run.id`) is accepted.
    ///
    /// # Errors
    /// A message naming the missing or unexpected keys.
    pub fn validate(&self, parameters: &JobParameters) -> Result<(), String> {
        let missing: Vec<&str> = self
            .required_parameters
            .iter()
            .filter(|key| !parameters.contains(key))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "job '{}' requires the parameter(s) {}",
                self.name,
                missing.join(", ")
            ));
        }
        if !self.optional_parameters.is_empty() {
            let unexpected: Vec<&str> = parameters
                .iter()
                .map(|(name, _)| name)
                .filter(|name| {
                    *name != RUN_ID
                        && !self.required_parameters.iter().any(|key| key == name)
                        && !self.optional_parameters.iter().any(|key| key == name)
                })
                .collect();
            if !unexpected.is_empty() {
                let mut accepted: Vec<&str> = self
                    .required_parameters
                    .iter()
                    .chain(&self.optional_parameters)
                    .map(String::as_str)
                    .collect();
                accepted.push(RUN_ID);
                return Err(format!(
                    "job '{}' does not accept the parameter(s) {} (accepted: {})",
                    self.name,
                    unexpected.join(", "),
                    accepted.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Builds a [`Job`].
pub struct JobBuilder {
    job: Job,
}

impl JobBuilder {
    /// Appends a step.
    pub fn step(mut self, step: impl Step + 'static) -> Self {
        self.job.steps.push(Arc::new(step));
        self
    }

    /// Declares a parameter that must be given.
    pub fn required_parameter(mut self, name: impl Into<String>) -> Self {
        self.job.required_parameters.push(name.into());
        self
    }

    /// Declares a parameter that may be given.
    pub fn optional_parameter(mut self, name: impl Into<String>) -> Self {
        self.job.optional_parameters.push(name.into());
        self
    }

    /// The finished job.
    pub fn build(self) -> Job {
        self.job
    }
}

/// A job run with one set of identifying parameters (BATCH_JOB_INSTANCE).
#[derive(Debug, Clone, PartialEq)]
pub struct JobInstance {
    /// JOB_INSTANCE_ID.
    pub id: i64,
    /// VERSION.
    pub version: i64,
    /// JOB_NAME.
    pub job_name: String,
    /// JOB_KEY: the MD5 of the identifying parameters.
    pub job_key: String,
}

/// One attempt to run a job instance (BATCH_JOB_EXECUTION).
#[derive(Debug, Clone, PartialEq)]
pub struct JobExecution {
    /// JOB_EXECUTION_ID.
    pub id: i64,
    /// VERSION, for optimistic locking.
    pub version: i64,
    /// The instance this execution runs.
    pub instance: JobInstance,
    /// All parameters of this execution, identifying or not.
    pub parameters: JobParameters,
    /// STATUS.
    pub status: BatchStatus,
    /// EXIT_CODE and EXIT_MESSAGE.
    pub exit_status: ExitStatus,
    /// CREATE_TIME.
    pub create_time: NaiveDateTime,
    /// START_TIME.
    pub start_time: Option<NaiveDateTime>,
    /// END_TIME.
    pub end_time: Option<NaiveDateTime>,
    /// LAST_UPDATED, refreshed by the launcher's heartbeat while it runs.
    pub last_updated: Option<NaiveDateTime>,
    /// The job's execution context.
    pub context: ExecutionContext,
}

impl JobExecution {
    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.instance.job_name
    }
}
