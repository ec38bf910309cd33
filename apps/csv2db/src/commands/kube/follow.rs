//! `kube launch --follow`: waits for the launcher pod to start (or to fail to), streams its log,
//! and returns its container's exit code.

use std::time::Duration;

use ::kube::api::{Api, ListParams, LogParams};
use anyhow::Context as _;
use batch_kube::kube::{JobState, job_state};
use futures_util::AsyncBufReadExt as _;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerState, Pod};

use super::failure;
use super::manifest::CONTAINER;
use crate::exit;

/// How often the Job and its pod are read while waiting.
const POLL: Duration = Duration::from_secs(2);

/// How many reads of the launcher pod in a row may fail (one a [`POLL`]) before `--follow`
/// gives up on a launcher that is running.
const POD_READ_FAILURES: u32 = 30;

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
    log_until_exit(pods, name, &pod_name, &mut |line| println!("{line}")).await
}

/// Prints the launcher pod's log with `print` until its container ends, reopening the stream
/// when the API server drops it first; returns the container's exit code.
async fn log_until_exit(
    pods: &Api<Pod>,
    name: &str,
    pod_name: &str,
    print: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<u8> {
    let mut log = LogCursor::default();
    let mut failed_reads = 0;
    loop {
        log.stream(pods, pod_name, print).await;
        // The log ends when the container does; its exit code may take a moment to be
        // recorded. A log that ends while the container runs was dropped: it is reopened.
        // What dropped it (an API server restarting) may fail a few reads of the pod too.
        let pod = match pods.get(pod_name).await {
            Ok(pod) => pod,
            Err(error) if failed_reads < POD_READ_FAILURES => {
                failed_reads += 1;
                log.report(format!("cannot read pod {pod_name}: {error}"));
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read pod {pod_name}"));
            }
        };
        failed_reads = 0;
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

/// What of the launcher's log has been printed, so that a stream reopened after the API server
/// dropped it prints every line once. The API's `sinceTime` counts whole seconds, so the new
/// stream starts again at the second of the newest line printed; the cursor counts the lines
/// printed from that second on, and the new stream skips as many. (Lines are not compared by
/// their timestamps: the runtime stamps stdout and stderr separately, so they can come a little
/// out of order.)
#[derive(Debug, Default)]
struct LogCursor {
    /// The whole second of the newest line printed.
    second: Option<Timestamp>,
    /// How many lines printed carry a timestamp in that second.
    in_second: usize,
    /// Whether a failure to read the log has been reported (later ones are only logged at
    /// debug level, as the stream is reopened every few seconds).
    warned: bool,
}

impl LogCursor {
    /// Streams the log from where the cursor stands, printing each new line with `print`,
    /// until the stream ends.
    async fn stream(
        &mut self,
        pods: &Api<Pod>,
        pod_name: &str,
        print: &mut (dyn FnMut(&str) + Send),
    ) {
        let params = LogParams {
            follow: true,
            timestamps: true,
            container: Some(CONTAINER.to_owned()),
            since_time: self.second,
            ..LogParams::default()
        };
        let stream = match pods.log_stream(pod_name, &params).await {
            Ok(stream) => stream,
            Err(error) => {
                return self.report(format!("cannot read the log of pod {pod_name}: {error}"));
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut printed_before = if self.second.is_some() {
            self.in_second
        } else {
            0
        };
        let mut line = Vec::new();
        loop {
            line.clear();
            match stream.as_mut().read_until(b'\n', &mut line).await {
                Ok(0) => return,
                Ok(_) if printed_before > 0 => printed_before -= 1,
                Ok(_) => {
                    let line = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
                    print(self.printed(&line));
                }
                Err(error) => {
                    return self.report(format!("the log stream of pod {pod_name} ended: {error}"));
                }
            }
        }
    }

    /// Counts `line` (`<timestamp> <text>`) as printed; returns its text.
    fn printed<'l>(&mut self, line: &'l str) -> &'l str {
        let Some((stamp, text)) = line
            .split_once(' ')
            .and_then(|(stamp, text)| Some((stamp.parse::<Timestamp>().ok()?, text)))
        else {
            return line;
        };
        let second = Timestamp::from_second(stamp.as_second()).unwrap_or(stamp);
        match self.second {
            Some(newest) if second < newest => {}
            Some(newest) if second == newest => self.in_second += 1,
            _ => {
                self.second = Some(second);
                self.in_second = 1;
            }
        }
        text
    }

    fn report(&mut self, problem: String) {
        if self.warned {
            tracing::debug!("{problem}");
        } else {
            tracing::warn!("{problem}");
            self.warned = true;
        }
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
    use ::kube::Client;
    use ::kube::client::Body;
    use tokio::task::JoinHandle;
    use tower_test::mock;

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

    const POD: &str = "import-user-job-1-abcde";

    /// Answers the client's requests in order with `replies`; the task returns the requests'
    /// paths and queries.
    fn scripted(replies: Vec<http::Response<Body>>) -> (Api<Pod>, JoinHandle<Vec<String>>) {
        let (service, mut handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for reply in replies {
                let (request, send) = handle.next_request().await.expect("a request");
                requests.push(request.uri().to_string());
                send.send_response(reply);
            }
            requests
        });
        (
            Api::namespaced(Client::new(service, "batch"), "batch"),
            server,
        )
    }

    fn reply(content_type: &str, body: Vec<u8>) -> http::Response<Body> {
        http::Response::builder()
            .status(200)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("a response")
    }

    fn log(lines: &[&[u8]]) -> http::Response<Body> {
        reply("text/plain", lines.concat())
    }

    fn launcher(state: serde_json::Value) -> http::Response<Body> {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": POD, "namespace": "batch"},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": CONTAINER, "image": "csv2db:0.1.0", "imageID": "", "ready": true,
                "restartCount": 0, "state": state
            }]}
        });
        reply("application/json", serde_json::to_vec(&pod).expect("JSON"))
    }

    /// The API server ends a log stream while the container still runs (as it does when it
    /// restarts, and proxies' idle timeouts do) and the next read of the pod fails: the stream
    /// is reopened at the second of the last line, and every line is printed once, also lines
    /// stamped a little out of order and lines that are not UTF-8.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_log_stream_is_reopened_where_it_stopped() {
        let gone = http::Response::builder()
            .status(503)
            .body(Body::from(b"restarting".to_vec()))
            .expect("a response");
        let (pods, server) = scripted(vec![
            log(&[
                b"2026-11-27T10:00:00.1Z one\n",
                b"2026-11-27T10:00:01.5Z two\n",
                b"2026-11-27T10:00:01.4Z stderr, stamped earlier\n",
                b"2026-11-27T10:00:01.6Z caf\xe9\n",
            ]),
            gone,
            log(&[
                b"2026-11-27T10:00:01.5Z two\n",
                b"2026-11-27T10:00:01.4Z stderr, stamped earlier\n",
                b"2026-11-27T10:00:01.6Z caf\xe9\n",
            ]),
            launcher(serde_json::json!({"running": {}})),
            log(&[
                b"2026-11-27T10:00:01.5Z two\n",
                b"2026-11-27T10:00:01.4Z stderr, stamped earlier\n",
                b"2026-11-27T10:00:01.6Z caf\xe9\n",
                b"2026-11-27T10:00:01.6Z three\n",
                b"2026-11-27T10:00:02Z four\n",
            ]),
            launcher(serde_json::json!({"terminated": {"exitCode": 3}})),
        ]);
        let mut printed = Vec::new();
        let code = log_until_exit(&pods, "import-user-job-1", POD, &mut |line| {
            printed.push(line.to_owned());
        })
        .await
        .expect("an exit code");
        assert_eq!(code, 3);
        assert_eq!(
            printed,
            [
                "one",
                "two",
                "stderr, stamped earlier",
                "caf\u{fffd}",
                "three",
                "four"
            ]
        );
        let requests = server.await.expect("the mock server");
        let first_log = &requests[0];
        assert!(
            first_log.starts_with(&format!("/api/v1/namespaces/batch/pods/{POD}/log?"))
                && first_log.contains("follow=true")
                && first_log.contains("timestamps=true")
                && first_log.contains(&format!("container={CONTAINER}"))
                && !first_log.contains("sinceTime"),
            "{first_log}"
        );
        for reopened in [&requests[2], &requests[4]] {
            assert!(
                reopened.contains("sinceTime=2026-11-27T10%3A00%3A01Z"),
                "{reopened}"
            );
        }
    }

    #[test]
    fn a_pod_without_status_is_described() {
        let mut new = pod(serde_json::json!({}));
        new.status = None;
        assert_eq!(pending_reason(&new), "without a status yet");
    }
}
