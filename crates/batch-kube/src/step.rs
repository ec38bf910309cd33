//! The step that runs a container job and records how it ended.

use std::sync::Arc;

use async_trait::async_trait;
use batch_core::ExitStatus;
use batch_core::step::{Step, StepContext, StepError};

use crate::runner::{ContainerOutcome, ContainerRunner, RunContext, RunnerError};
use crate::spec::ContainerJobSpec;

/// The step context key holding the container's exit code, when it exited by itself.
pub const EXIT_CODE_KEY: &str = "container.exitCode";
/// The step context key holding how the container job ended (`exit code 0`, `stopped`, …).
pub const REASON_KEY: &str = "container.reason";

/// A step whose work is a container job: the seed's `OpenshiftJobTasklet`.
///
/// It resolves its [`ContainerJobSpec`] against the job parameters, runs it with its
/// [`ContainerRunner`] and waits for its end. Like a tasklet step it counts one commit when the
/// container job succeeds and one rollback when it fails. It records [`EXIT_CODE_KEY`] and
/// [`REASON_KEY`] in the step's context, and on failure its exit message is one line saying why,
/// followed by the last lines of the container's log.
pub struct ContainerJobStep {
    name: String,
    spec: ContainerJobSpec,
    runner: Arc<dyn ContainerRunner>,
    allow_start_if_complete: bool,
}

impl ContainerJobStep {
    /// A step called `step_name` that runs `spec` with `runner`.
    pub fn new(
        step_name: impl Into<String>,
        spec: ContainerJobSpec,
        runner: Arc<dyn ContainerRunner>,
    ) -> Self {
        ContainerJobStep {
            name: step_name.into(),
            spec,
            runner,
            allow_start_if_complete: false,
        }
    }

    /// Runs the container job again when its job is restarted after this step completed.
    pub fn allow_start_if_complete(mut self, allow: bool) -> Self {
        self.allow_start_if_complete = allow;
        self
    }

    /// The container job this step runs.
    pub fn spec(&self) -> &ContainerJobSpec {
        &self.spec
    }
}

#[async_trait]
impl Step for ContainerJobStep {
    fn name(&self) -> &str {
        &self.name
    }

    fn step_type(&self) -> &str {
        "csv2db.ContainerJobStep"
    }

    fn allow_start_if_complete(&self) -> bool {
        self.allow_start_if_complete
    }

    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<ExitStatus, StepError> {
        if ctx.is_stop_requested() {
            return Err(StepError::Interrupted);
        }
        // A restarted step inherits the failed execution's context: forget its outcome.
        let context = &mut ctx.step_execution_mut().context;
        context.remove(EXIT_CODE_KEY);
        context.remove(REASON_KEY);

        let resolved = match self.spec.resolve(ctx.parameters()) {
            Ok(resolved) => resolved,
            Err(error) => {
                record(ctx, None, &error.to_string(), false).await?;
                return Err(error.into());
            }
        };
        let stop = ctx.stop_signal().clone();
        let job_name = ctx.job_execution().job_name().to_owned();
        let step_name = ctx.step_execution().step_name.clone();
        let run = RunContext {
            job_name: &job_name,
            job_instance_id: ctx.job_execution().instance.id,
            job_execution_id: ctx.job_execution().id,
            step_execution_id: ctx.step_execution().id,
            step_name: &step_name,
            stop: &stop,
        };
        let outcome = match self.runner.run(&resolved, &run).await {
            Ok(outcome) => outcome,
            Err(source) => {
                let error = ContainerJobError::CouldNotRun {
                    job: resolved.name,
                    source,
                };
                record(ctx, None, &error.to_string(), false).await?;
                return Err(error.into());
            }
        };
        if outcome.succeeded {
            record(
                ctx,
                Some(outcome.exit_code.unwrap_or(0)),
                &outcome.reason,
                true,
            )
            .await?;
            return Ok(ExitStatus::completed());
        }
        record(ctx, outcome.exit_code, &outcome.reason, false).await?;
        if outcome.stopped {
            return Err(StepError::Interrupted);
        }
        Err(ContainerJobError::Failed {
            job: resolved.name,
            outcome,
        }
        .into())
    }
}

/// Records the outcome in the step's context and counters, and saves them.
async fn record(
    ctx: &mut StepContext<'_>,
    exit_code: Option<i32>,
    reason: &str,
    committed: bool,
) -> Result<(), StepError> {
    let execution = ctx.step_execution_mut();
    if let Some(code) = exit_code {
        execution.context.put(EXIT_CODE_KEY, code);
    }
    execution.context.put(REASON_KEY, reason);
    if committed {
        execution.counters.commit += 1;
    } else {
        execution.counters.rollback += 1;
    }
    ctx.save().await?;
    Ok(())
}

/// Why a container job step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerJobError {
    /// The container job ran and failed. Its message is one line saying why, then
    /// `Last lines of its log:` and as many of the last lines as fit in an exit message.
    #[error("{}", failure_message(.job, .outcome))]
    Failed {
        /// The container job's name.
        job: String,
        /// How it ended.
        outcome: ContainerOutcome,
    },
    /// The container job could not be run at all.
    #[error("container job {job} could not run: {source}")]
    CouldNotRun {
        /// The container job's name.
        job: String,
        /// Why.
        #[source]
        source: RunnerError,
    },
}

/// The longest log line quoted in an exit message, in characters.
const MAX_QUOTED_LINE_CHARS: usize = 500;

/// The exit message of a failed container job, within what EXIT_MESSAGE holds: the most recent
/// lines are kept, older ones dropped.
fn failure_message(job: &str, outcome: &ContainerOutcome) -> String {
    let mut message = format!("container job {job} failed: {}", outcome.reason);
    if outcome.log_tail.is_empty() {
        message.push_str("\nIts log is empty.");
        return message;
    }
    message.push_str("\nLast lines of its log:");
    // Room for the marker of omitted lines.
    let budget = ExitStatus::MAX_DESCRIPTION_CHARS
        .saturating_sub(message.chars().count())
        .saturating_sub(40);
    let mut used = 0;
    let mut quoted = Vec::new();
    for line in outcome.log_tail.iter().rev() {
        let line = quote(line);
        let cost = line.chars().count() + 1;
        if used + cost > budget {
            break;
        }
        used += cost;
        quoted.push(line);
    }
    let omitted = outcome.log_tail.len() - quoted.len();
    if omitted > 0 {
        message.push_str(&format!("\n[{omitted} earlier lines omitted]"));
    }
    for line in quoted.iter().rev() {
        message.push('\n');
        message.push_str(line);
    }
    message
}

fn quote(line: &str) -> String {
    match line.char_indices().nth(MAX_QUOTED_LINE_CHARS) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_message_has_reason_then_tail() {
        let outcome =
            ContainerOutcome::failure(Some(3), "exit code 3", vec!["one".into(), "two".into()]);
        assert_eq!(
            failure_message("generate-csv", &outcome),
            "container job generate-csv failed: exit code 3\nLast lines of its log:\none\ntwo"
        );
        let silent = ContainerOutcome::failure(Some(1), "exit code 1", Vec::new());
        assert_eq!(
            failure_message("x", &silent),
            "container job x failed: exit code 1\nIts log is empty."
        );
    }

    #[test]
    fn failure_message_fits_the_exit_message() {
        let tail: Vec<String> = (0..50)
            .map(|i| format!("{i:03} {}", "x".repeat(200)))
            .collect();
        let outcome = ContainerOutcome::failure(Some(2), "exit code 2", tail);
        let message = failure_message("x", &outcome);
        assert!(message.chars().count() <= ExitStatus::MAX_DESCRIPTION_CHARS);
        assert!(message.ends_with(&format!("049 {}", "x".repeat(200))));
        assert!(message.contains("earlier lines omitted]\n"));
        assert!(
            message.starts_with("container job x failed: exit code 2\nLast lines of its log:\n[")
        );

        let long = ContainerOutcome::failure(Some(2), "exit code 2", vec!["y".repeat(5000)]);
        let message = failure_message("x", &long);
        assert!(message.ends_with(&format!("{}…", "y".repeat(500))));
    }
}
