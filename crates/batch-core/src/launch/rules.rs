//! Spring Batch's launch rules, plus recovery of executions whose launcher died.
//!
//! Repositories call [`check_prior_executions`] inside the transaction that creates a new
//! execution, with the instance's executions read under a lock.

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::error::{LaunchRefusal, describe_time};
use crate::status::BatchStatus;

/// What the rules need to know of an earlier execution of the instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorExecution {
    /// JOB_EXECUTION_ID.
    pub id: i64,
    /// STATUS.
    pub status: BatchStatus,
    /// CREATE_TIME.
    pub create_time: NaiveDateTime,
    /// LAST_UPDATED: the launcher's latest heartbeat.
    pub last_updated: Option<NaiveDateTime>,
}

impl PriorExecution {
    /// True when the execution claims to run but its launcher has not reported within `lease`.
    pub fn is_stale(&self, now: NaiveDateTime, lease: Duration) -> bool {
        let seen = self.last_updated.unwrap_or(self.create_time);
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        self.status.is_running() && now.signed_duration_since(seen) > lease
    }
}

/// Checks the instance's earlier executions before a new one is created.
///
/// Returns the ids of running executions whose heartbeat is older than `lease`: the caller marks
/// them FAILED (see [`stale_exit_message`]) in the same transaction before creating the new
/// execution.
///
/// # Errors
/// As Spring Batch 6: a live running execution refuses with
/// [`LaunchRefusal::AlreadyRunning`], an UNKNOWN one with [`LaunchRefusal::NotRestartable`], and a
/// COMPLETED or ABANDONED one with [`LaunchRefusal::AlreadyComplete`].
pub fn check_prior_executions(
    job_name: &str,
    instance_id: i64,
    executions: &[PriorExecution],
    now: NaiveDateTime,
    lease: Duration,
) -> Result<Vec<i64>, LaunchRefusal> {
    let mut stale = Vec::new();
    for execution in executions {
        match execution.status {
            status if status.is_running() => {
                if execution.is_stale(now, lease) {
                    stale.push(execution.id);
                } else {
                    return Err(LaunchRefusal::AlreadyRunning {
                        job_name: job_name.to_string(),
                        instance_id,
                        execution_id: execution.id,
                        status,
                        last_updated: describe_time(execution.last_updated),
                    });
                }
            }
            BatchStatus::Unknown => {
                return Err(LaunchRefusal::NotRestartable {
                    instance_id,
                    execution_id: execution.id,
                    status: BatchStatus::Unknown,
                });
            }
            BatchStatus::Completed | BatchStatus::Abandoned => {
                return Err(LaunchRefusal::AlreadyComplete {
                    job_name: job_name.to_string(),
                    instance_id,
                    execution_id: execution.id,
                    status: execution.status,
                });
            }
            _ => {}
        }
    }
    Ok(stale)
}

/// The exit message recorded on an execution (and its running steps) failed for a lapsed
/// heartbeat.
pub fn stale_exit_message(
    execution: &PriorExecution,
    now: NaiveDateTime,
    lease: Duration,
) -> String {
    format!(
        "Marked FAILED by csv2db at {}: the launcher of this execution stopped reporting (last heartbeat {}, lease {} s), so it is presumed to have crashed. The instance can be restarted.",
        describe_time(Some(now)),
        describe_time(execution.last_updated),
        lease.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(seconds: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(12, 0, seconds))
            .expect("valid time")
    }

    fn prior(id: i64, status: BatchStatus, last_updated: u32) -> PriorExecution {
        PriorExecution {
            id,
            status,
            create_time: at(0),
            last_updated: Some(at(last_updated)),
        }
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn new_or_failed_instances_may_run() {
        assert_eq!(
            check_prior_executions("j", 1, &[], at(59), LEASE),
            Ok(vec![])
        );
        let failed = [
            prior(1, BatchStatus::Failed, 1),
            prior(2, BatchStatus::Stopped, 2),
        ];
        assert_eq!(
            check_prior_executions("j", 1, &failed, at(59), LEASE),
            Ok(vec![])
        );
    }

    #[test]
    fn completed_and_abandoned_instances_are_refused() {
        for status in [BatchStatus::Completed, BatchStatus::Abandoned] {
            let result = check_prior_executions("j", 1, &[prior(7, status, 1)], at(59), LEASE);
            assert!(matches!(
                result,
                Err(LaunchRefusal::AlreadyComplete {
                    execution_id: 7,
                    ..
                })
            ));
        }
    }

    #[test]
    fn live_running_executions_refuse_and_stale_ones_are_recovered() {
        let live = [prior(3, BatchStatus::Started, 40)];
        assert!(matches!(
            check_prior_executions("j", 1, &live, at(59), LEASE),
            Err(LaunchRefusal::AlreadyRunning {
                execution_id: 3,
                ..
            })
        ));
        let stale = [
            prior(3, BatchStatus::Started, 10),
            prior(4, BatchStatus::Stopping, 5),
        ];
        assert_eq!(
            check_prior_executions("j", 1, &stale, at(59), LEASE),
            Ok(vec![3, 4])
        );
    }

    #[test]
    fn unknown_blocks_restarts() {
        let unknown = [prior(5, BatchStatus::Unknown, 1)];
        assert!(matches!(
            check_prior_executions("j", 1, &unknown, at(59), LEASE),
            Err(LaunchRefusal::NotRestartable { .. })
        ));
    }
}
