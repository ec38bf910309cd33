//! Process exit codes: the one place that maps outcomes to them.

use batch_core::BatchStatus;
use batch_core::error::{LaunchRefusal, RepositoryError};
use batch_core::launch::LaunchError;

use crate::commands::kube::LauncherJobExists;
use crate::config::ConfigError;

/// The job completed or the command succeeded.
pub const OK: u8 = 0;
/// The job failed, or an operational error occurred.
pub const FAILED: u8 = 1;
/// Invalid usage, parameters or configuration; unknown job or execution.
pub const USAGE: u8 = 2;
/// The job instance is already complete.
pub const ALREADY_COMPLETE: u8 = 3;
/// The job instance is already running.
pub const ALREADY_RUNNING: u8 = 4;
/// The job stopped.
pub const STOPPED: u8 = 5;

/// The exit code for a finished job execution's status.
pub fn status_exit_code(status: BatchStatus) -> u8 {
    match status {
        BatchStatus::Completed => OK,
        BatchStatus::Stopped | BatchStatus::Stopping => STOPPED,
        _ => FAILED,
    }
}

/// The exit code for a command-line parse error (0 for --help and --version).
pub fn usage_exit_code(error: &clap::Error) -> u8 {
    if error.use_stderr() { USAGE } else { OK }
}

/// The exit code for an error that ended the command.
pub fn error_exit_code(error: &anyhow::Error) -> u8 {
    if let Some(exists) = error.downcast_ref::<LauncherJobExists>() {
        return exists.exit_code();
    }
    if error.is::<ConfigError>()
        || error.is::<clap::Error>()
        || error.is::<batch_core::job::parameters::ParameterError>()
    {
        return USAGE;
    }
    let repository_error = match error.downcast_ref::<LaunchError>() {
        Some(LaunchError::Repository(repository)) => Some(repository),
        Some(LaunchError::NoSuchJob { .. } | LaunchError::InvalidParameters(_)) => return USAGE,
        None => error.downcast_ref::<RepositoryError>(),
    };
    match repository_error {
        Some(RepositoryError::Refused(LaunchRefusal::AlreadyComplete { .. })) => ALREADY_COMPLETE,
        Some(RepositoryError::Refused(LaunchRefusal::AlreadyRunning { .. })) => ALREADY_RUNNING,
        Some(RepositoryError::NoSuchExecution(_) | RepositoryError::InvalidState { .. }) => USAGE,
        _ => FAILED,
    }
}

/// The error and its causes on one line.
pub fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}
