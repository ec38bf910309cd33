//! The [`JobOperator`]: start, restart, start-next, stop and abandon by name or execution id.

use std::sync::Arc;

use super::{JobLauncher, JobRegistry, LaunchError};
use crate::error::RepositoryError;
use crate::job::parameters::{JobParameter, JobParameters, ParameterValue};
use crate::job::{JobExecution, RUN_ID};
use crate::repository::JobRepository;
use crate::step::StopSignal;

/// Operations on jobs and executions, as Spring Batch's `JobOperator`.
#[derive(Clone)]
pub struct JobOperator {
    launcher: JobLauncher,
    registry: Arc<JobRegistry>,
}

impl JobOperator {
    /// An operator running the jobs of `registry` with `launcher`.
    pub fn new(launcher: JobLauncher, registry: Arc<JobRegistry>) -> Self {
        JobOperator { launcher, registry }
    }

    fn repository(&self) -> &dyn JobRepository {
        self.launcher.repository().as_ref()
    }

    /// Runs the job `job_name` with `parameters`.
    ///
    /// # Errors
    /// See [`JobLauncher::run`]; also [`LaunchError::NoSuchJob`].
    pub async fn start(
        &self,
        job_name: &str,
        parameters: JobParameters,
        stop: StopSignal,
    ) -> Result<JobExecution, LaunchError> {
        let job = self.registry.get(job_name)?;
        self.launcher.run(&job, parameters, stop).await
    }

    /// Runs a new instance of `job_name`: the parameters of its newest execution, overridden by
    /// `parameters`, with `run.id` one above the previous one (1 if there was none), as Spring
    /// Batch's `RunIdIncrementer`.
    ///
    /// # Errors
    /// See [`JobOperator::start`].
    pub async fn start_next(
        &self,
        job_name: &str,
        parameters: JobParameters,
        stop: StopSignal,
    ) -> Result<JobExecution, LaunchError> {
        let job = self.registry.get(job_name)?;
        let previous = self.repository().last_job_execution(job_name).await?;
        let next = next_parameters(previous.as_ref().map(|e| &e.parameters), &parameters);
        self.launcher.run(&job, next, stop).await
    }

    /// Runs the instance of a FAILED or STOPPED execution again, with the same parameters.
    ///
    /// # Errors
    /// [`RepositoryError::NoSuchExecution`], and the launch rules' refusals.
    pub async fn restart(
        &self,
        execution_id: i64,
        stop: StopSignal,
    ) -> Result<JobExecution, LaunchError> {
        let previous = self
            .repository()
            .job_execution(execution_id)
            .await?
            .ok_or(RepositoryError::NoSuchExecution(execution_id))?;
        let job = self.registry.get(previous.job_name())?;
        self.launcher.run(&job, previous.parameters, stop).await
    }

    /// Asks a running execution to stop at its next boundary.
    ///
    /// # Errors
    /// When the execution does not exist or is not running.
    pub async fn stop(&self, execution_id: i64) -> Result<JobExecution, LaunchError> {
        Ok(self.repository().request_stop(execution_id).await?)
    }

    /// Marks an execution that is not running ABANDONED.
    ///
    /// # Errors
    /// When the execution does not exist, is running or completed.
    pub async fn abandon(&self, execution_id: i64) -> Result<JobExecution, LaunchError> {
        Ok(self.repository().abandon(execution_id).await?)
    }
}

/// `previous` overridden by `given`, with `run.id` incremented.
fn next_parameters(previous: Option<&JobParameters>, given: &JobParameters) -> JobParameters {
    let base = previous.cloned().unwrap_or_default();
    let (run_id, identifying) = match base.get(RUN_ID) {
        Some(JobParameter {
            value: ParameterValue::Long(id),
            identifying,
        }) => (id + 1, *identifying),
        _ => (1, true),
    };
    let mut run = JobParameter::long(run_id);
    run.identifying = identifying;
    base.merge(given).with(RUN_ID, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_parameters_increment_run_id_and_keep_the_rest() {
        let first = next_parameters(
            None,
            &JobParameters::new().with("a", JobParameter::string("x")),
        );
        assert_eq!(first.get_long(RUN_ID), Some(1));
        assert_eq!(first.get_string("a"), Some("x"));
        let second = next_parameters(
            Some(&first),
            &JobParameters::new().with("b", JobParameter::string("y")),
        );
        assert_eq!(second.get_long(RUN_ID), Some(2));
        assert_eq!(second.get_string("a"), Some("x"));
        assert_eq!(second.get_string("b"), Some("y"));
    }
}
