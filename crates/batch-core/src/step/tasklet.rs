//! Tasklet steps: a single task repeated until it reports it is finished.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Step, StepContext, StepError};
use crate::status::ExitStatus;

/// Whether a tasklet wants to be called again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatStatus {
    /// Call the tasklet again.
    Continuable,
    /// The work is done.
    Finished,
}

/// A task run by a [`TaskletStep`].
#[async_trait]
pub trait Tasklet: Send + Sync {
    /// Runs one iteration of the task.
    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<RepeatStatus, StepError>;
}

/// A step that calls its tasklet until it returns [`RepeatStatus::Finished`], counting one commit
/// per iteration and checking for a stop request between iterations.
pub struct TaskletStep {
    name: String,
    tasklet: Arc<dyn Tasklet>,
}

impl TaskletStep {
    /// A step called `name` that runs `tasklet`.
    pub fn new(name: impl Into<String>, tasklet: impl Tasklet + 'static) -> Self {
        TaskletStep {
            name: name.into(),
            tasklet: Arc::new(tasklet),
        }
    }
}

#[async_trait]
impl Step for TaskletStep {
    fn name(&self) -> &str {
        &self.name
    }

    fn step_type(&self) -> &str {
        "csv2db.TaskletStep"
    }

    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<ExitStatus, StepError> {
        loop {
            if ctx.is_stop_requested() {
                return Err(StepError::Interrupted);
            }
            let repeat = match self.tasklet.execute(ctx).await {
                Ok(repeat) => repeat,
                Err(error) => {
                    ctx.step_execution_mut().counters.rollback += 1;
                    return Err(error);
                }
            };
            ctx.step_execution_mut().counters.commit += 1;
            ctx.save().await?;
            if repeat == RepeatStatus::Finished {
                return Ok(ExitStatus::completed());
            }
        }
    }
}
