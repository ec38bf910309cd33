//! The launcher's heartbeat: refreshes LAST_UPDATED while a job runs and relays stop requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::repository::JobRepository;
use crate::status::BatchStatus;
use crate::step::StopSignal;

/// A running heartbeat task.
pub(crate) struct Heartbeat {
    done: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts beating for `execution_id` every `period`; fires `stop` when the stored status says
    /// the execution should no longer run (a stop was requested, or another launcher recovered
    /// it).
    pub(crate) fn start(
        repository: Arc<dyn JobRepository>,
        execution_id: i64,
        period: Duration,
        stop: StopSignal,
    ) -> Self {
        let (done, mut finished) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = &mut finished => return,
                    _ = ticks.tick() => {}
                }
                match repository.heartbeat(execution_id).await {
                    Ok(BatchStatus::Starting | BatchStatus::Started) => {}
                    Ok(status) => {
                        if !stop.is_requested() {
                            tracing::warn!(execution_id, %status, "execution is no longer to run; stopping at the next boundary");
                        }
                        stop.request();
                    }
                    Err(error) => {
                        tracing::warn!(execution_id, %error, "heartbeat failed; retrying");
                    }
                }
            }
        });
        Heartbeat { done, task }
    }

    /// Stops the heartbeat and waits for its task to end.
    pub(crate) async fn finish(self) {
        let _ = self.done.send(());
        let _ = self.task.await;
    }
}
