//! `kube launch --follow`: waits for the launcher pod to start (or to fail to), streams its log,
//! and returns its container's exit code.

use std::time::Duration;

use ::kube::api::{Api, ListParams, LogParams};
use anyhow::Context as _;
use batch_kube::kube::{JobState, job_state};
use futures_util::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerState, Pod};

use super::failure;
use super::manifest::CONTAINER;
use crate::exit;

/// How often the Job and its pod are read while waiting.
const POLL: Duration = Duration::from_secs(2);

/// Container waiting reasons after which the launcher will not start by itself.
const START_ERRORS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Follows the launcher Job `job` (as created): fails when its pod cannot start, has not
/// started within `start_timeout`, or the Job fails first; else streams the pod's log and
/// returns its exit code.
pub async fn follow(
    jobs: &Api<Job>,
    pods: &Api<Pod>,
    job: &Job,
    start_timeout: Duration,
) -> anyhow::Result<u8> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let pod_name = wait_for_start(jobs, pods, name, uid, start_timeout).await?;
    stream_log(pods, &pod_name).await;

    // The log ends when the container does; its exit code may take a moment to be recorded.
    loop {
        let pod = pods
            .get(&pod_name)
            .await
            .with_context(|| format!("cannot read pod {pod_name}"))?;
        if let Some(terminated) = container_state(&pod).and_then(|s| s.terminated.as_ref()) {
            let code = u8::try_from(terminated.exit_code).unwrap_or(exit::FAILED);
            eprintln!(
                "csv2db: Job {name} finished: pod {pod_name} exited with code {code}{}",
                terminated
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            return Ok(code);
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") {
            anyhow::bail!(
                "the launcher pod {pod_name} failed: {}",
                pending_reason(&pod)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the launcher's container runs (or has run); returns its pod's name.
async fn wait_for_start(
    jobs: &Api<Job>,
    pods: &Api<Pod>,
    name: &str,
    uid: &str,
    start_timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + start_timeout;
    loop {
        let pod = launcher_pod(pods, name, uid).await?;
        if let Some(pod) = &pod {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            if container_state(pod).is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
                return Ok(pod_name);
            }
            if let Some(reason) = start_error(pod) {
                anyhow::bail!("the launcher pod {pod_name} cannot start: {reason}");
            }
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") {
                anyhow::bail!(
                    "the launcher pod {pod_name} failed before it started: {}",
                    pending_reason(pod)
                );
            }
        }
        let current = jobs
            .get(name)
            .await
            .with_context(|| format!("cannot read Job {name}"))?;
        if let JobState::Failed { reason, message } = job_state(&current) {
            anyhow::bail!(
                "the launcher Job {name} failed before its pod started: {}",
                failure(reason.as_deref(), message.as_deref())
            );
        }
        if tokio::time::Instant::now() > deadline {
            let why = pod.as_ref().map_or_else(
                || "the Job has created no pod".to_owned(),
                |pod| {
                    format!(
                        "pod {} is {}",
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        pending_reason(pod)
                    )
                },
            );
            anyhow::bail!(
                "the launcher of Job {name} has not started within {} s: {why}. See `kubectl \
                 describe job {name}` and its pod's events (a missing ConfigMap, claim or \
                 quota?); --start-timeout waits longer",
                start_timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints the launcher's log lines as they come, until the container ends.
async fn stream_log(pods: &Api<Pod>, pod_name: &str) {
    let params = LogParams {
        follow: true,
        container: Some(CONTAINER.to_owned()),
        ..LogParams::default()
    };
    match pods.log_stream(pod_name, &params).await {
        Ok(stream) => {
            let mut lines = stream.lines();
            loop {
                match lines.try_next().await {
                    Ok(Some(line)) => println!("{line}"),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!("the log stream of pod {pod_name} ended: {error}");
                        break;
                    }
                }
            }
        }
        Err(error) => tracing::warn!("cannot read the log of pod {pod_name}: {error}"),
    }
}

/// The launcher container's state in `pod`.
fn container_state(pod: &Pod) -> Option<&ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|status| status.name == CONTAINER)?
        .state
        .as_ref()
}

/// The reason and message of a waiting container that will not start by itself.
fn start_error(pod: &Pod) -> Option<String> {
    let waiting = container_state(pod)?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    START_ERRORS.contains(&reason).then(|| {
        format!(
            "{reason}: {}",
            waiting.message.as_deref().unwrap_or_default()
        )
    })
}

/// Why a pod is not running, from its status: its phase, the reasons of its false conditions
/// (e.g. `PodScheduled: Unschedulable`) and its container's waiting reason.
fn pending_reason(pod: &Pod) -> String {
    let Some(status) = &pod.status else {
        return "without a status yet".to_owned();
    };
    let mut parts = vec![status.phase.clone().unwrap_or_else(|| "Unknown".to_owned())];
    if let Some(reason) = &status.reason {
        parts.push(format!(
            "{reason}: {}",
            status.message.as_deref().unwrap_or_default()
        ));
    }
    for condition in status.conditions.iter().flatten() {
        if condition.status == "False"
            && let Some(reason) = &condition.reason
        {
            parts.push(format!(
                "{} {reason}: {}",
                condition.type_,
                condition.message.as_deref().unwrap_or_default()
            ));
        }
    }
    if let Some(waiting) = container_state(pod).and_then(|s| s.waiting.as_ref()) {
        parts.push(format!(
            "container waiting: {} {}",
            waiting.reason.as_deref().unwrap_or_default(),
            waiting.message.as_deref().unwrap_or_default()
        ));
    }
    parts
        .iter()
        .map(|part| part.trim())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The pod of the launcher Job `job` whose uid is `job_uid` (backoffLimit 0: at most one); not
/// a pod of an earlier Job of the same name.
async fn launcher_pod(pods: &Api<Pod>, job: &str, job_uid: &str) -> anyhow::Result<Option<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .with_context(|| format!("cannot list the pods of Job {job}"))?;
    Ok(list.items.into_iter().find(|pod| {
        pod.metadata
            .owner_references
            .as_ref()
            .is_some_and(|owners| owners.iter().any(|owner| owner.uid == job_uid))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "import-user-job-1-abcde"},
            "status": status,
        }))
        .expect("a pod")
    }

    #[test]
    fn an_unschedulable_pod_says_why() {
        let pending = pod(serde_json::json!({
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: persistentvolumeclaim \"spring-batch-claim\" not found."
            }]
        }));
        assert_eq!(
            pending_reason(&pending),
            "Pending; PodScheduled Unschedulable: 0/3 nodes are available: \
             persistentvolumeclaim \"spring-batch-claim\" not found."
        );
        assert_eq!(start_error(&pending), None);
    }

    #[test]
    fn a_missing_config_map_is_a_start_error() {
        let waiting = pod(serde_json::json!({
            "phase": "Pending",
            "containerStatuses": [{
                "name": "csv2db", "image": "csv2db:0.1.0", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError",
                                      "message": "configmap \"batch-config\" not found"}}
            }]
        }));
        assert_eq!(
            start_error(&waiting).as_deref(),
            Some("CreateContainerConfigError: configmap \"batch-config\" not found")
        );
        assert_eq!(
            pending_reason(&waiting),
            "Pending; container waiting: CreateContainerConfigError configmap \"batch-config\" not found"
        );
    }

    #[test]
    fn a_pod_without_status_is_described() {
        let mut new = pod(serde_json::json!({}));
        new.status = None;
        assert_eq!(pending_reason(&new), "without a status yet");
    }
}
