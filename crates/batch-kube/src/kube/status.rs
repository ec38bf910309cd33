//! Reading a child Job's and its pods' status: finished or not, why it failed, and whether a pod
//! cannot start.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use tokio::time::Instant;

/// Where a child Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Neither Complete nor Failed yet.
    Running,
    /// Condition Complete is True.
    Complete,
    /// Condition Failed is True, with its reason and message.
    Failed {
        /// The condition's reason (`BackoffLimitExceeded`, `DeadlineExceeded`, ...).
        reason: Option<String>,
        /// The condition's message.
        message: Option<String>,
    },
}

/// The Job's state from its conditions (`Complete` or `Failed` with status `True`; interim
/// conditions such as `FailureTarget` or `SuccessCriteriaMet` are not an end).
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    for condition in conditions {
        if condition.status != "True" {
            continue;
        }
        match condition.type_.as_str() {
            "Complete" => return JobState::Complete,
            "Failed" => {
                return JobState::Failed {
                    reason: condition.reason.clone().filter(|r| !r.is_empty()),
                    message: condition.message.clone().filter(|m| !m.is_empty()),
                };
            }
            _ => {}
        }
    }
    JobState::Running
}

/// How many pods of the Job failed so far (`status.failed`).
pub(crate) fn failed_pods(job: &Job) -> i32 {
    job.status.as_ref().and_then(|s| s.failed).unwrap_or(0)
}

/// The label selector of the Job's pods: its own `spec.selector.matchLabels` (the
/// `controller-uid` the Job controller set, which no pod of an earlier Job of the same name
/// carries), else `job-name=<name>`, which both old and new clusters set.
pub(crate) fn pod_selector(job: &Job, name: &str) -> String {
    let labels = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.match_labels.as_ref())
        .filter(|labels| !labels.is_empty());
    match labels {
        Some(labels) => labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(","),
        None => format!("job-name={name}"),
    }
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn pod_uid(pod: &Pod) -> String {
    pod.metadata
        .uid
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn all_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let main = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    init.iter().chain(main)
}

/// The termination of one container status (`state`, else `lastState`).
fn termination_of(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| {
            status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
        })
}

/// The termination of the container named `container`, else of any container that failed.
fn terminated<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStateTerminated> {
    all_statuses(pod)
        .filter(|s| s.name == container)
        .find_map(termination_of)
        .or_else(|| {
            all_statuses(pod)
                .filter_map(termination_of)
                .find(|t| t.exit_code != 0)
        })
}

/// The pod whose log and termination best explain the Job's end: the newest pod in phase
/// `wanted`, else the newest pod.
pub(crate) fn pick_pod<'a>(pods: &'a [Pod], wanted: &str) -> Option<&'a Pod> {
    let created = |pod: &Pod| pod.metadata.creation_timestamp.clone();
    pods.iter()
        .filter(|pod| pod_phase(pod) == wanted)
        .max_by_key(|pod| created(pod))
        .or_else(|| pods.iter().max_by_key(|pod| created(pod)))
}

/// True when the container has run (so that it has a log).
pub(crate) fn container_started(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Running" | "Succeeded" | "Failed")
        && all_statuses(pod).any(|s| {
            s.state
                .as_ref()
                .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                || s.last_state
                    .as_ref()
                    .is_some_and(|st| st.terminated.is_some())
        })
}

/// Why a failed Job failed, as one short reason, and its container's exit code.
///
/// In order: the Job's `DeadlineExceeded`; the container's `OOMKilled`; the pod's `Evicted`;
/// the container's exit code (`exit code 3`); the Job condition's own reason. When more than
/// one pod failed, `(after N attempts)` is appended.
pub(crate) fn failure_reason(
    job: &Job,
    pod: Option<&Pod>,
    container: &str,
) -> (String, Option<i32>) {
    let (condition_reason, condition_message) = match job_state(job) {
        JobState::Failed { reason, message } => (reason, message),
        _ => (None, None),
    };
    let termination = pod.and_then(|pod| terminated(pod, container));
    let exit_code = termination.map(|t| t.exit_code);
    let pod_reason = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.reason.clone())
        .filter(|r| !r.is_empty());
    let pod_message = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.message.clone())
        .filter(|m| !m.is_empty());
    let with_message = |reason: &str, message: Option<&String>| match message {
        Some(message) => format!("{reason}: {message}"),
        None => reason.to_owned(),
    };

    let mut reason = if condition_reason.as_deref() == Some("DeadlineExceeded") {
        with_message("DeadlineExceeded", condition_message.as_ref())
    } else if termination.and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
        "OOMKilled".to_owned()
    } else if pod_reason.as_deref() == Some("Evicted") {
        with_message("Evicted", pod_message.as_ref())
    } else if let Some(code) = exit_code.filter(|code| *code != 0) {
        match termination.and_then(|t| t.reason.as_deref()) {
            Some(why) if !matches!(why, "Error" | "Completed" | "") => {
                format!("exit code {code} ({why})")
            }
            _ => format!("exit code {code}"),
        }
    } else if let Some(why) = &condition_reason {
        with_message(why, condition_message.as_ref())
    } else {
        "Failed".to_owned()
    };
    let attempts = failed_pods(job);
    if attempts > 1 {
        reason.push_str(&format!(" (after {attempts} attempts)"));
    }
    (reason, exit_code)
}

/// The waiting reasons that mean a container cannot start: image pulls and configuration.
const START_ERRORS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];
/// Of those, the ones that never resolve by themselves: no grace.
const PERMANENT_START_ERRORS: [&str; 2] = ["InvalidImageName", "ErrImageNeverPull"];

/// When to give up on a pod that cannot start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartLimits {
    /// A start error seen in this many distinct pod updates fails the step...
    pub observations: u32,
    /// ...as does one that persists this long.
    pub grace: Duration,
    /// A pod still Pending (not scheduled, or waiting) this long fails the step; so does a Job
    /// with no pod at all this long.
    pub start_timeout: Duration,
}

#[derive(Debug)]
struct StartError {
    since: Instant,
    versions: Vec<String>,
    reason: String,
    message: Option<String>,
}

/// Follows the Job's pods and tells when one cannot start.
#[derive(Debug)]
pub(crate) struct PodTracker {
    limits: StartLimits,
    attached: Instant,
    pods: BTreeMap<String, Pod>,
    relisting: Option<BTreeMap<String, Pod>>,
    pending_since: HashMap<String, Instant>,
    start_errors: HashMap<String, StartError>,
    seen_any: bool,
}

/// A pod that cannot start: the reason for the outcome and the pod's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartFailure {
    pub reason: String,
}

impl PodTracker {
    pub(crate) fn new(limits: StartLimits, now: Instant) -> Self {
        PodTracker {
            limits,
            attached: now,
            pods: BTreeMap::new(),
            relisting: None,
            pending_since: HashMap::new(),
            start_errors: HashMap::new(),
            seen_any: false,
        }
    }

    /// The pods currently known.
    pub(crate) fn pods(&self) -> Vec<Pod> {
        self.pods.values().cloned().collect()
    }

    /// A relist starts: pods not listed again are gone.
    pub(crate) fn begin_relist(&mut self) {
        self.relisting = Some(BTreeMap::new());
    }

    /// A relist ends.
    pub(crate) fn end_relist(&mut self) {
        if let Some(listed) = self.relisting.take() {
            self.pods = listed;
            self.forget_missing();
        }
    }

    /// Replaces the known pods with a fresh list (which also supersedes a relist of the watch
    /// in progress).
    pub(crate) fn replace(&mut self, pods: Vec<Pod>, now: Instant) {
        self.relisting = None;
        self.pods.clear();
        for pod in pods {
            self.observe(pod, now);
        }
        self.forget_missing();
    }

    fn forget_missing(&mut self) {
        let live: Vec<String> = self.pods.values().map(pod_uid).collect();
        self.pending_since.retain(|uid, _| live.contains(uid));
        self.start_errors.retain(|uid, _| live.contains(uid));
    }

    /// A pod was deleted.
    pub(crate) fn remove(&mut self, pod: &Pod) {
        let uid = pod_uid(pod);
        self.pods.remove(&pod_name(pod));
        self.pending_since.remove(&uid);
        self.start_errors.remove(&uid);
    }

    /// A pod was listed, added or modified.
    pub(crate) fn observe(&mut self, pod: Pod, now: Instant) {
        self.seen_any = true;
        let uid = pod_uid(&pod);
        if pod_phase(&pod) == "Pending" {
            self.pending_since.entry(uid.clone()).or_insert(now);
            let error = all_statuses(&pod).find_map(|status| {
                let waiting = status.state.as_ref()?.waiting.as_ref()?;
                let reason = waiting.reason.as_deref()?;
                START_ERRORS
                    .contains(&reason)
                    .then(|| (reason.to_owned(), waiting.message.clone()))
            });
            match error {
                Some((reason, message)) => {
                    let version = pod.metadata.resource_version.clone().unwrap_or_default();
                    let entry = self.start_errors.entry(uid).or_insert_with(|| StartError {
                        since: now,
                        versions: Vec::new(),
                        reason: reason.clone(),
                        message: None,
                    });
                    if !entry.versions.contains(&version) {
                        entry.versions.push(version);
                    }
                    entry.reason = reason;
                    entry.message = message.filter(|m| !m.is_empty());
                }
                None => {
                    self.start_errors.remove(&uid);
                }
            }
        } else {
            self.pending_since.remove(&uid);
            self.start_errors.remove(&uid);
        }
        let name = pod_name(&pod);
        match &mut self.relisting {
            Some(listed) => {
                listed.insert(name, pod);
            }
            None => {
                self.pods.insert(name, pod);
            }
        }
    }

    /// Why the Job cannot start, if it cannot.
    pub(crate) fn verdict(&self, now: Instant) -> Option<StartFailure> {
        for error in self.start_errors.values() {
            let permanent = PERMANENT_START_ERRORS.contains(&error.reason.as_str());
            let seen = u32::try_from(error.versions.len()).unwrap_or(u32::MAX);
            if permanent
                || seen >= self.limits.observations
                || now.duration_since(error.since) >= self.limits.grace
            {
                let reason = match &error.message {
                    Some(message) => format!("{}: {message}", error.reason),
                    None => error.reason.clone(),
                };
                return Some(StartFailure { reason });
            }
        }
        for (uid, since) in &self.pending_since {
            if now.duration_since(*since) >= self.limits.start_timeout {
                let pod = self.pods.values().find(|p| pod_uid(p) == *uid);
                return Some(StartFailure {
                    reason: self.pending_reason(pod),
                });
            }
        }
        if !self.seen_any && now.duration_since(self.attached) >= self.limits.start_timeout {
            return Some(StartFailure {
                reason: format!(
                    "no pod was created within {} s (quota, admission or a missing service \
                     account?)",
                    self.limits.start_timeout.as_secs()
                ),
            });
        }
        None
    }

    fn pending_reason(&self, pod: Option<&Pod>) -> String {
        let limit = self.limits.start_timeout.as_secs();
        let unschedulable = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        if let Some(condition) = unschedulable {
            let reason = condition.reason.as_deref().unwrap_or("Unschedulable");
            return match condition.message.as_deref().filter(|m| !m.is_empty()) {
                Some(message) => {
                    format!("{reason}: {message} (pending for more than {limit} s)")
                }
                None => format!("{reason}: not scheduled within {limit} s"),
            };
        }
        let waiting = pod.into_iter().flat_map(all_statuses).find_map(|s| {
            s.state
                .as_ref()?
                .waiting
                .as_ref()?
                .reason
                .clone()
                .filter(|r| !r.is_empty())
        });
        match waiting {
            Some(reason) => format!("the pod did not start within {limit} s ({reason})"),
            None => format!("the pod did not start within {limit} s (Pending)"),
        }
    }

    /// When [`verdict`](Self::verdict) may next change by the passing of time alone.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let errors = self
            .start_errors
            .values()
            .map(|e| e.since + self.limits.grace);
        let pending = self
            .pending_since
            .values()
            .map(|since| *since + self.limits.start_timeout);
        let none_yet = (!self.seen_any).then_some(self.attached + self.limits.start_timeout);
        errors.chain(pending).chain(none_yet).min()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    fn waiting(rv: &str, reason: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "p", "uid": "u1", "resourceVersion": rv},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "c", "image": "bad/image:1", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": "cannot pull"}}
            }]}
        }))
    }

    fn limits() -> StartLimits {
        StartLimits {
            observations: 2,
            grace: Duration::from_secs(30),
            start_timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn pull_errors_fail_after_two_updates_or_the_grace() {
        let start = Instant::now();
        let mut tracker = PodTracker::new(limits(), start);
        tracker.observe(waiting("1", "ErrImagePull"), start);
        assert_eq!(tracker.verdict(start), None);
        // The same update seen again (a relist) does not count twice.
        tracker.observe(waiting("1", "ErrImagePull"), start);
        assert_eq!(tracker.verdict(start), None);
        assert_eq!(
            tracker.next_deadline(),
            Some(start + Duration::from_secs(30))
        );
        assert_eq!(
            tracker
                .verdict(start + Duration::from_secs(30))
                .map(|f| f.reason),
            Some("ErrImagePull: cannot pull".to_owned())
        );
        tracker.observe(waiting("2", "ImagePullBackOff"), start);
        assert_eq!(
            tracker.verdict(start).map(|f| f.reason),
            Some("ImagePullBackOff: cannot pull".to_owned())
        );
    }

    #[test]
    fn configuration_errors_fail_after_two_updates() {
        let start = Instant::now();
        let mut tracker = PodTracker::new(limits(), start);
        tracker.observe(waiting("1", "CreateContainerConfigError"), start);
        assert_eq!(tracker.verdict(start), None);
        tracker.observe(waiting("2", "CreateContainerConfigError"), start);
        assert_eq!(
            tracker.verdict(start).map(|f| f.reason),
            Some("CreateContainerConfigError: cannot pull".to_owned())
        );
    }

    #[test]
    fn invalid_image_names_fail_at_once() {
        let start = Instant::now();
        let mut tracker = PodTracker::new(limits(), start);
        tracker.observe(waiting("1", "InvalidImageName"), start);
        assert!(tracker.verdict(start).is_some());
    }

    #[test]
    fn a_pod_that_starts_clears_its_errors() {
        let start = Instant::now();
        let mut tracker = PodTracker::new(limits(), start);
        tracker.observe(waiting("1", "ErrImagePull"), start);
        tracker.observe(
            pod(
                json!({"metadata": {"name": "p", "uid": "u1", "resourceVersion": "2"},
                       "status": {"phase": "Running"}}),
            ),
            start,
        );
        assert_eq!(tracker.verdict(start + Duration::from_secs(3600)), None);
        assert_eq!(tracker.next_deadline(), None);
    }

    #[test]
    fn unschedulable_pods_fail_after_the_start_timeout() {
        let start = Instant::now();
        let mut tracker = PodTracker::new(limits(), start);
        assert!(
            tracker
                .verdict(start + Duration::from_secs(300))
                .is_some_and(|f| f.reason.starts_with("no pod was created"))
        );
        tracker.observe(
            pod(json!({"metadata": {"name": "p", "uid": "u1"},
                       "status": {"phase": "Pending", "conditions": [{
                           "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/3 nodes are available"}]}})),
            start,
        );
        assert_eq!(tracker.verdict(start + Duration::from_secs(299)), None);
        assert_eq!(
            tracker
                .verdict(start + Duration::from_secs(300))
                .map(|f| f.reason),
            Some("Unschedulable: 0/3 nodes are available (pending for more than 300 s)".to_owned())
        );
    }

    fn failed_job(reason: &str, message: &str, failed: i32) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"failed": failed, "conditions": [
                {"type": "Failed", "status": "True", "reason": reason, "message": message}]}
        }))
        .expect("a job")
    }

    fn failed_pod(exit: i32, reason: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "p", "uid": "u"},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit, "reason": reason}}}]}
        }))
    }

    #[test]
    fn failure_reasons() {
        let job = failed_job(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            1,
        );
        assert_eq!(
            failure_reason(&job, Some(&failed_pod(3, "Error")), "c"),
            ("exit code 3".to_owned(), Some(3))
        );
        assert_eq!(
            failure_reason(&job, Some(&failed_pod(137, "OOMKilled")), "c"),
            ("OOMKilled".to_owned(), Some(137))
        );
        assert_eq!(
            failure_reason(&job, None, "c").0,
            "BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
        let deadline = failed_job(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
            1,
        );
        assert_eq!(
            failure_reason(&deadline, Some(&failed_pod(137, "Error")), "c").0,
            "DeadlineExceeded: Job was active longer than specified deadline"
        );
        let evicted = pod(
            json!({"metadata": {"name": "p"}, "status": {"phase": "Failed",
            "reason": "Evicted", "message": "The node was low on resource: memory."}}),
        );
        assert_eq!(
            failure_reason(&job, Some(&evicted), "c").0,
            "Evicted: The node was low on resource: memory."
        );
        let retried = failed_job("BackoffLimitExceeded", "limit", 3);
        assert_eq!(
            failure_reason(&retried, Some(&failed_pod(2, "Error")), "c").0,
            "exit code 2 (after 3 attempts)"
        );
    }

    #[test]
    fn job_states() {
        let complete: Job = serde_json::from_value(json!({"metadata": {}, "status": {
            "conditions": [{"type": "Complete", "status": "True"}]}}))
        .expect("a job");
        assert_eq!(job_state(&complete), JobState::Complete);
        let interim: Job = serde_json::from_value(json!({"metadata": {}, "status": {
            "conditions": [{"type": "FailureTarget", "status": "True"},
                           {"type": "Complete", "status": "False"}]}}))
        .expect("a job");
        assert_eq!(job_state(&interim), JobState::Running);
    }

    #[test]
    fn selectors() {
        let job: Job = serde_json::from_value(json!({"metadata": {}, "spec": {
            "selector": {"matchLabels": {"controller-uid": "abc"}},
            "template": {}}}))
        .expect("a job");
        assert_eq!(pod_selector(&job, "x"), "controller-uid=abc");
        assert_eq!(pod_selector(&Job::default(), "x"), "job-name=x");
    }
}
