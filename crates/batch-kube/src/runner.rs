//! The backend interface: something that runs a resolved container job to its end.

use async_trait::async_trait;
use batch_core::step::{BoxError, StopSignal};

use crate::spec::ResolvedSpec;

/// Runs a resolved container job to its end: a local process, a Kubernetes Job, or a test double.
///
/// `run` returns when the container job has ended, however it ended. A job that ran and failed
/// (non-zero exit, deadline, stop) is an `Ok` [`ContainerOutcome`]; `Err` is reserved for not
/// being able to run it at all. On `run.stop` the runner ends the work (kills the process,
/// deletes the child Job) and returns an outcome with [`stopped`](ContainerOutcome::stopped) set.
#[async_trait]
pub trait ContainerRunner: Send + Sync {
    /// Runs `spec` for the step execution `run` describes.
    ///
    /// # Errors
    /// [`RunnerError`] when the job could not be run at all.
    async fn run(
        &self,
        spec: &ResolvedSpec,
        run: &RunContext<'_>,
    ) -> Result<ContainerOutcome, RunnerError>;
}

/// Which step execution a container job runs for, and its stop signal.
///
/// The ids let a backend name and label its work deterministically (a Kubernetes child Job is
/// named after the job instance and step, and labelled with the execution ids) so that a
/// restarted or replaced launcher finds it again.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    /// The job's name (JOB_NAME).
    pub job_name: &'a str,
    /// JOB_INSTANCE_ID.
    pub job_instance_id: i64,
    /// JOB_EXECUTION_ID.
    pub job_execution_id: i64,
    /// STEP_EXECUTION_ID.
    pub step_execution_id: i64,
    /// The step's name (STEP_NAME).
    pub step_name: &'a str,
    /// Fires when a stop of the job execution is requested.
    pub stop: &'a StopSignal,
}

impl<'a> RunContext<'a> {
    /// A context outside any recorded job execution (all ids 0), for running a container job
    /// directly.
    pub fn standalone(step_name: &'a str, stop: &'a StopSignal) -> Self {
        RunContext {
            job_name: "",
            job_instance_id: 0,
            job_execution_id: 0,
            step_execution_id: 0,
            step_name,
            stop,
        }
    }
}

/// How a container job that ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOutcome {
    /// True when it completed successfully.
    pub succeeded: bool,
    /// True when it was ended because a stop was requested.
    pub stopped: bool,
    /// The exit code of its (last) container, when it exited by itself.
    pub exit_code: Option<i32>,
    /// A short reason: `exit code 3`, `DeadlineExceeded: ran longer than 60 s`, `stopped`,
    /// `killed by signal 9`, and for Kubernetes `OOMKilled`, `ImagePullBackOff: …` and the like.
    pub reason: String,
    /// The last lines of its output, oldest first (stdout and stderr merged).
    pub log_tail: Vec<String>,
}

impl ContainerOutcome {
    /// A successful run (exit code 0).
    pub fn success(log_tail: Vec<String>) -> Self {
        ContainerOutcome {
            succeeded: true,
            stopped: false,
            exit_code: Some(0),
            reason: "exit code 0".into(),
            log_tail,
        }
    }

    /// A failed run.
    pub fn failure(
        exit_code: Option<i32>,
        reason: impl Into<String>,
        log_tail: Vec<String>,
    ) -> Self {
        ContainerOutcome {
            succeeded: false,
            stopped: false,
            exit_code,
            reason: reason.into(),
            log_tail,
        }
    }

    /// A run ended on a stop request.
    pub fn stopped(log_tail: Vec<String>) -> Self {
        ContainerOutcome {
            succeeded: false,
            stopped: true,
            exit_code: None,
            reason: "stopped".into(),
            log_tail,
        }
    }
}

/// Why a container job could not be run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The spec has no command, and the backend cannot use the image's entrypoint.
    #[error(
        "container job {job} has no command, and the {backend} runner cannot use the image's entrypoint"
    )]
    NoCommand {
        /// The container job's name.
        job: String,
        /// The backend (`local`).
        backend: &'static str,
    },
    /// The program does not exist (not on PATH, or no such file).
    #[error("program '{program}' not found")]
    ProgramNotFound {
        /// The program as the command names it.
        program: String,
    },
    /// The program exists but could not be started.
    #[error("cannot start program '{program}': {source}")]
    Spawn {
        /// The program as the command names it.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The current executable, which runs commands whose program is `csv2db`, is unknown.
    #[error("cannot find the current executable to run '{program}': {source}")]
    CurrentExe {
        /// The program as the command names it.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Capturing the output failed.
    #[error("cannot capture the output of container job {job}: {source}")]
    Output {
        /// The container job's name.
        job: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the process failed.
    #[error("lost track of the process of container job {job}: {source}")]
    Wait {
        /// The container job's name.
        job: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Any other backend failure.
    #[error(transparent)]
    Other(BoxError),
}
