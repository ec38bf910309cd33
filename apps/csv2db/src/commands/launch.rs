//! `start` (and `csv2db <JOB> ...`), `restart`, `stop` and `abandon`.

use batch_core::job::JobExecution;
use batch_core::job::parameters::JobParameters;
use batch_core::launch::LaunchError;
use batch_core::step::StopSignal;

use super::Session;
use crate::cli::StartArgs;
use crate::{exit, output};

/// Launches a job; the exit code follows its final status.
pub async fn start(session: &Session, args: StartArgs) -> anyhow::Result<u8> {
    let job = session.registry.get(&args.job)?;
    let parameters = JobParameters::parse_args(&args.parameters)?;
    if !args.next {
        job.validate(&parameters)
            .map_err(LaunchError::InvalidParameters)?;
    }
    let repository = session.connect().await?;
    let operator = session.operator(&repository);
    let stop = stop_on_signals();
    let execution = if args.next {
        operator.start_next(&args.job, parameters, stop).await?
    } else {
        operator.start(&args.job, parameters, stop).await?
    };
    finished(session, &execution)
}

/// Restarts the instance of a FAILED or STOPPED execution.
pub async fn restart(session: &Session, id: i64) -> anyhow::Result<u8> {
    let repository = session.connect().await?;
    let execution = session
        .operator(&repository)
        .restart(id, stop_on_signals())
        .await?;
    finished(session, &execution)
}

/// Requests a graceful stop.
pub async fn stop(session: &Session, id: i64) -> anyhow::Result<u8> {
    let repository = session.connect().await?;
    let execution = session.operator(&repository).stop(id).await?;
    output::print_status_change(
        session.output,
        &execution,
        "stop requested; the job stops at its next step or chunk boundary",
    )?;
    Ok(exit::OK)
}

/// Marks an execution ABANDONED.
pub async fn abandon(session: &Session, id: i64) -> anyhow::Result<u8> {
    let repository = session.connect().await?;
    let execution = session.operator(&repository).abandon(id).await?;
    output::print_status_change(
        session.output,
        &execution,
        "abandoned; its instance will not be restarted",
    )?;
    Ok(exit::OK)
}

fn finished(session: &Session, execution: &JobExecution) -> anyhow::Result<u8> {
    output::print_finished(session.output, execution)?;
    Ok(exit::status_exit_code(execution.status))
}

/// A stop signal fired by Ctrl-C or SIGTERM (as Kubernetes sends when it deletes the pod), so the
/// job ends STOPPED at its next boundary and can be restarted.
fn stop_on_signals() -> StopSignal {
    let stop = StopSignal::new();
    let fired = stop.clone();
    tokio::spawn(async move {
        let terminate = async {
            #[cfg(unix)]
            {
                if let Ok(mut signal) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    signal.recv().await;
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::warn!("stop requested by signal; finishing at the next boundary");
        fired.request();
    });
    stop
}
