//! The Kubernetes backend: a container job run as a batch/v1 Job, followed with a watch.
//!
//! [`KubeRunner`] creates one child Job per step attempt, named deterministically after the job
//! instance and step ([`child_job_name`]), and follows it until its `Complete` or `Failed`
//! condition with a watch on the Job and its pods plus a periodic re-read, so that a dropped
//! watch or a `410 Gone` cannot hide the end. A pod that cannot start (image pull errors,
//! `CreateContainerConfigError`, unschedulable past the spec's start timeout) fails the step
//! instead of hanging it. Failure reasons and the failed pod's log tail are read before anything
//! is deleted. A 403 names the service account, the verb, the resource and the namespace, and
//! points at the Role in [`ROLE_PATH`].
//!
//! The launcher needs, in the child's namespace, the rights of `deploy/base/role.yaml`: `jobs`
//! (group `batch`) `create`, `get`, `list`, `watch`, `delete`; `pods` `get`, `list`, `watch`;
//! `pods/log` `get`.

mod error;
mod manifest;
mod status;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use tokio::time::{Instant, MissedTickBehavior};

use crate::runner::{ContainerOutcome, ContainerRunner, RunContext, RunnerError};
use crate::spec::ResolvedSpec;

pub use error::{KubeError, ROLE_PATH, refused_account};
pub use manifest::{
    JOB_EXECUTION_LABEL, JOB_INSTANCE_LABEL, JOB_NAME_ANNOTATION, LauncherPod, MANAGED_BY,
    MANAGED_BY_LABEL, SPEC_HASH_ANNOTATION, STEP_EXECUTION_LABEL, STEP_LABEL, STEP_NAME_ANNOTATION,
    child_job_name, child_labels, job_manifest, label_value, restricted_security_context,
    spec_hash,
};
pub use status::{JobState, job_state};

use error::{is_already_exists, is_conflict, is_forbidden, is_gone, is_not_found};
use status::{PodTracker, StartLimits, pod_selector};

/// The file a pod's service account token volume holds its namespace in.
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The environment variable naming the launcher pod's service account (downward API
/// `spec.serviceAccountName`), used in 403 messages when the API server does not name it.
pub const SERVICE_ACCOUNT_VAR: &str = "POD_SERVICE_ACCOUNT";

const JOBS: &str = "jobs.batch";
const PODS: &str = "pods";
const POD_LOGS: &str = "pods/log";
/// Consecutive failed re-reads after which the runner gives up on the API server.
const MAX_RESYNC_FAILURES: u32 = 10;
/// How often a changing child Job (deleted and created by someone else) is looked at again
/// before giving up.
const MAX_ADOPT_ATTEMPTS: u32 = 5;
/// How long the log tail is waited for when stopping.
const STOP_LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// True when this process runs in a Kubernetes pod (`KUBERNETES_SERVICE_HOST` is set): the
/// application's default for choosing this backend over the local one.
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.is_empty())
}

/// Runs container jobs as Kubernetes Jobs: the default when the launcher runs in a cluster.
///
/// See the [module documentation](self) for what it does. Built with [`KubeRunner::new`] or
/// [`KubeRunner::from_environment`], tuned with the chainable setters.
#[derive(Clone)]
pub struct KubeRunner {
    client: Client,
    namespace: String,
    launcher: Option<LauncherPod>,
    launcher_service_account: Option<String>,
    resync_interval: Duration,
    start_error_observations: u32,
    start_error_grace: Duration,
    tail_lines: u32,
    deletion_timeout: Duration,
    deadline_slack: Duration,
}

impl fmt::Debug for KubeRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeRunner")
            .field("namespace", &self.namespace)
            .field("launcher", &self.launcher)
            .field("launcher_service_account", &self.launcher_service_account)
            .field("resync_interval", &self.resync_interval)
            .field("start_error_observations", &self.start_error_observations)
            .field("start_error_grace", &self.start_error_grace)
            .field("tail_lines", &self.tail_lines)
            .field("deletion_timeout", &self.deletion_timeout)
            .field("deadline_slack", &self.deadline_slack)
            .finish_non_exhaustive()
    }
}

impl KubeRunner {
    /// The default [`resync_interval`](Self::resync_interval).
    pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(30);
    /// The default [`start_error_observations`](Self::start_error_observations).
    pub const DEFAULT_START_ERROR_OBSERVATIONS: u32 = 2;
    /// The default [`start_error_grace`](Self::start_error_grace).
    pub const DEFAULT_START_ERROR_GRACE: Duration = Duration::from_secs(30);
    /// The default [`tail_lines`](Self::tail_lines).
    pub const DEFAULT_TAIL_LINES: u32 = 50;
    /// The default [`deletion_timeout`](Self::deletion_timeout).
    pub const DEFAULT_DELETION_TIMEOUT: Duration = Duration::from_secs(120);
    /// The default [`deadline_slack`](Self::deadline_slack).
    pub const DEFAULT_DEADLINE_SLACK: Duration = Duration::from_secs(120);

    /// A runner creating child Jobs in `namespace` through `client`, with the default
    /// settings and no launcher pod (so no owner reference; see
    /// [`launcher_pod`](Self::launcher_pod)).
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        KubeRunner {
            client,
            namespace: namespace.into(),
            launcher: None,
            launcher_service_account: None,
            resync_interval: Self::DEFAULT_RESYNC_INTERVAL,
            start_error_observations: Self::DEFAULT_START_ERROR_OBSERVATIONS,
            start_error_grace: Self::DEFAULT_START_ERROR_GRACE,
            tail_lines: Self::DEFAULT_TAIL_LINES,
            deletion_timeout: Self::DEFAULT_DELETION_TIMEOUT,
            deadline_slack: Self::DEFAULT_DEADLINE_SLACK,
        }
    }

    /// A runner for the cluster this process finds: its kubeconfig (`KUBECONFIG` or
    /// `~/.kube/config`) or, in a pod, its service account.
    ///
    /// The namespace is `namespace_override` (the seed's `openshift.project.name`) when given,
    /// else the pod's own namespace ([`IN_CLUSTER_NAMESPACE_FILE`]), else the kubeconfig
    /// context's namespace, else `default`. The launcher pod comes from
    /// [`LauncherPod::from_env`] and its service account from `POD_SERVICE_ACCOUNT`.
    ///
    /// # Errors
    /// [`RunnerError::Other`] holding a [`KubeError::Config`] when no configuration is found
    /// or the client cannot be built.
    pub async fn from_environment(namespace_override: Option<String>) -> Result<Self, RunnerError> {
        let config = kube::Config::infer()
            .await
            .map_err(|source| KubeError::Config {
                source: Box::new(source),
            })?;
        let namespace = namespace_override
            .filter(|ns| !ns.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE)
                    .ok()
                    .map(|ns| ns.trim().to_owned())
                    .filter(|ns| !ns.is_empty())
            })
            .unwrap_or_else(|| config.default_namespace.clone());
        let namespace = if namespace.is_empty() {
            "default".to_owned()
        } else {
            namespace
        };
        let client = Client::try_from(config).map_err(|source| KubeError::Config {
            source: Box::new(source),
        })?;
        let service_account = std::env::var(SERVICE_ACCOUNT_VAR)
            .ok()
            .filter(|sa| !sa.trim().is_empty());
        let mut runner = KubeRunner::new(client, namespace).launcher_pod(LauncherPod::from_env());
        runner.launcher_service_account = service_account;
        Ok(runner)
    }

    /// Sets the launcher's pod, which then owns every child Job (in the same namespace), so
    /// that deleting the launcher deletes its children.
    pub fn launcher_pod(mut self, pod: Option<LauncherPod>) -> Self {
        self.launcher = pod;
        self
    }

    /// Names the launcher's service account in 403 messages when the API server does not.
    pub fn launcher_service_account(mut self, name: impl Into<String>) -> Self {
        self.launcher_service_account = Some(name.into());
        self
    }

    /// How often the child Job and its pods are re-read besides the watch (default 30 s), so
    /// that a watch that silently stopped delivering cannot hide the end.
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// In how many distinct pod updates a start error (`ErrImagePull`, `ImagePullBackOff`,
    /// `CreateContainerConfigError`…) must be seen before the step fails (default 2).
    pub fn start_error_observations(mut self, observations: u32) -> Self {
        self.start_error_observations = observations.max(1);
        self
    }

    /// How long a start error may persist before the step fails, however few updates showed
    /// it (default 30 s). `InvalidImageName` fails at once.
    pub fn start_error_grace(mut self, grace: Duration) -> Self {
        self.start_error_grace = grace;
        self
    }

    /// How many of the last lines of the pod's log go into the outcome (default 50).
    pub fn tail_lines(mut self, lines: u32) -> Self {
        self.tail_lines = lines;
        self
    }

    /// How long a failed child Job that is deleted before a new one is created may take to go
    /// away (default 2 minutes).
    pub fn deletion_timeout(mut self, timeout: Duration) -> Self {
        self.deletion_timeout = timeout;
        self
    }

    /// How long past the spec's active deadline the runner waits for the cluster to fail the
    /// Job before it gives up on its own (default 2 minutes).
    pub fn deadline_slack(mut self, slack: Duration) -> Self {
        self.deadline_slack = slack;
        self
    }

    /// The namespace child Jobs are created in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The launcher's pod, if known.
    pub fn launcher(&self) -> Option<&LauncherPod> {
        self.launcher.as_ref()
    }

    /// Who to name in a 403 message.
    fn account(&self, message: &str) -> String {
        if let Some(account) = refused_account(message) {
            return account;
        }
        match &self.launcher_service_account {
            Some(name) => {
                let namespace = self
                    .launcher
                    .as_ref()
                    .and_then(|pod| pod.namespace.as_deref())
                    .unwrap_or(&self.namespace);
                format!("service account {namespace}:{name}")
            }
            None => "the launcher's service account".to_owned(),
        }
    }

    /// The error for a failed call: [`KubeError::Forbidden`] for a 403.
    fn error(
        &self,
        verb: &'static str,
        resource: &'static str,
        name: &str,
        source: kube::Error,
    ) -> KubeError {
        match &source {
            kube::Error::Api(status) if is_forbidden(&source) => KubeError::Forbidden {
                account: self.account(&status.message),
                verb,
                resource,
                namespace: self.namespace.clone(),
                message: status.message.clone(),
            },
            _ => KubeError::Api {
                verb,
                resource,
                name: name.to_owned(),
                namespace: self.namespace.clone(),
                source: Box::new(source),
            },
        }
    }
}

#[async_trait]
impl ContainerRunner for KubeRunner {
    async fn run(
        &self,
        spec: &ResolvedSpec,
        run: &RunContext<'_>,
    ) -> Result<ContainerOutcome, RunnerError> {
        let child = Child {
            runner: self,
            spec,
            run,
            name: child_job_name(&spec.name, run),
            jobs: Api::namespaced(self.client.clone(), &self.namespace),
            pods: Api::namespaced(self.client.clone(), &self.namespace),
        };
        Ok(child.run().await?)
    }
}

/// One container job run: the child Job and how to reach it.
struct Child<'a> {
    runner: &'a KubeRunner,
    spec: &'a ResolvedSpec,
    run: &'a RunContext<'a>,
    name: String,
    jobs: Api<Job>,
    pods: Api<Pod>,
}

/// What looking for an existing child Job gave.
enum Adopted {
    /// A running child to follow (existing or just created).
    Follow(Box<Job>),
    /// The step attempt has already ended.
    Finished(ContainerOutcome),
}

/// What the watcher of the child Job's own object reported.
enum Seen {
    Job(Box<Job>),
    Gone,
    Nothing,
}

type JobStream = BoxStream<'static, Result<Option<Job>, watcher::Error>>;
type PodStream = BoxStream<'static, Result<Event<Pod>, watcher::Error>>;

impl Child<'_> {
    async fn run(&self) -> Result<ContainerOutcome, KubeError> {
        if self.run.stop.is_requested() {
            self.delete().await?;
            return Ok(ContainerOutcome::stopped(Vec::new()));
        }
        match self.adopt_or_create().await? {
            Adopted::Finished(outcome) => Ok(outcome),
            Adopted::Follow(job) => self.follow(*job).await,
        }
    }

    /// Whether `job` was created from this step's spec; a Job without the annotation (made
    /// by an earlier csv2db) is taken to be.
    fn is_of_this_spec(&self, job: &Job) -> bool {
        job.metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(SPEC_HASH_ANNOTATION))
            .is_none_or(|hash| *hash == spec_hash(self.spec))
    }

    fn uid(job: &Job) -> Option<&str> {
        job.metadata.uid.as_deref()
    }

    async fn get(&self) -> Result<Option<Job>, KubeError> {
        self.jobs
            .get_opt(&self.name)
            .await
            .map_err(|e| self.runner.error("get", JOBS, &self.name, e))
    }

    /// Finds the child Job of this step attempt, or creates it: a running one is re-attached
    /// to, a succeeded one is the outcome, a failed one is recorded, deleted and replaced.
    async fn adopt_or_create(&self) -> Result<Adopted, KubeError> {
        for _ in 0..MAX_ADOPT_ATTEMPTS {
            let existing = self.get().await?;
            if let Some(job) = existing {
                if job.metadata.deletion_timestamp.is_some() {
                    tracing::info!(
                        job = %self.name,
                        "the child Job {} is being deleted; waiting for it to go",
                        self.name
                    );
                    if !self.wait_gone(&job).await? {
                        return Ok(Adopted::Finished(ContainerOutcome::stopped(Vec::new())));
                    }
                    continue;
                }
                if !self.is_of_this_spec(&job) {
                    tracing::warn!(
                        job = %self.name,
                        "the existing child Job {} was created from another spec (another \
                         run's parameters, or another metadata database); deleting it to run \
                         this step afresh",
                        self.name
                    );
                    if !self.delete_and_wait(&job).await? {
                        return Ok(Adopted::Finished(ContainerOutcome::stopped(Vec::new())));
                    }
                    continue;
                }
                match job_state(&job) {
                    JobState::Running => {
                        tracing::info!(
                            job = %self.name,
                            namespace = %self.runner.namespace,
                            "re-attaching to the running child Job {}",
                            self.name
                        );
                        return Ok(Adopted::Follow(Box::new(job)));
                    }
                    JobState::Complete => {
                        tracing::info!(
                            job = %self.name,
                            "the child Job {} already succeeded; counting it as done",
                            self.name
                        );
                        return Ok(Adopted::Finished(self.succeeded(&job, &[]).await?));
                    }
                    JobState::Failed { .. } => {
                        let previous = self.failed(&job).await?;
                        tracing::warn!(
                            job = %self.name,
                            reason = %previous.reason,
                            "an earlier child Job {} failed ({}); deleting it to run the step \
                             again. Last lines of its log:\n{}",
                            self.name,
                            previous.reason,
                            previous.log_tail.join("\n"),
                        );
                        if !self.delete_and_wait(&job).await? {
                            return Ok(Adopted::Finished(ContainerOutcome::stopped(Vec::new())));
                        }
                        continue;
                    }
                }
            }
            let manifest = job_manifest(
                self.spec,
                self.run,
                &self.name,
                &self.runner.namespace,
                self.runner.launcher.as_ref(),
            );
            match self.jobs.create(&PostParams::default(), &manifest).await {
                Ok(job) => {
                    tracing::info!(
                        job = %self.name,
                        namespace = %self.runner.namespace,
                        "created child Job {} in namespace {}",
                        self.name,
                        self.runner.namespace
                    );
                    return Ok(Adopted::Follow(Box::new(job)));
                }
                Err(e) if is_already_exists(&e) => {
                    tracing::info!(
                        job = %self.name,
                        "child Job {} was created meanwhile by another launcher; re-attaching",
                        self.name
                    );
                    if let Some(job) = self.get().await?
                        && job.metadata.deletion_timestamp.is_none()
                    {
                        return Ok(Adopted::Follow(Box::new(job)));
                    }
                }
                Err(e) => return Err(self.runner.error("create", JOBS, &self.name, e)),
            }
        }
        Err(KubeError::Unsettled {
            name: self.name.clone(),
            namespace: self.runner.namespace.clone(),
        })
    }

    /// Deletes the child Job with its pods (Background propagation). A Job already gone is
    /// fine.
    async fn delete(&self) -> Result<(), KubeError> {
        self.delete_uid(None).await
    }

    async fn delete_uid(&self, uid: Option<&str>) -> Result<(), KubeError> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match self.jobs.delete(&self.name, &params).await {
            Ok(_) => Ok(()),
            // Gone, or replaced by another Job of the same name (failed precondition).
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(self.runner.error("delete", JOBS, &self.name, e)),
        }
    }

    /// Deletes `job` and waits until it is gone; false when a stop came first.
    async fn delete_and_wait(&self, job: &Job) -> Result<bool, KubeError> {
        self.delete_uid(Self::uid(job)).await?;
        self.wait_gone(job).await
    }

    fn job_stream(&self) -> JobStream {
        watcher::watch_object(self.jobs.clone(), &self.name)
            .default_backoff()
            .boxed()
    }

    fn pod_stream(&self, selector: &str) -> PodStream {
        watcher::watcher(
            self.pods.clone(),
            watcher::Config::default().labels(selector),
        )
        .default_backoff()
        .boxed()
    }

    /// Waits until `job` no longer exists (a Job of the same name with another UID is not
    /// it); false when a stop came first.
    async fn wait_gone(&self, job: &Job) -> Result<bool, KubeError> {
        let uid = Self::uid(job).map(str::to_owned);
        let is_it = |other: &Job| Self::uid(other).map(str::to_owned) == uid;
        let deadline = Instant::now() + self.runner.deletion_timeout;
        let mut stream = self.job_stream();
        let mut resync = self.resync_timer();
        loop {
            tokio::select! {
                biased;
                () = self.run.stop.requested() => return Ok(false),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(KubeError::DeletionTimeout {
                        name: self.name.clone(),
                        namespace: self.runner.namespace.clone(),
                        seconds: self.runner.deletion_timeout.as_secs(),
                    });
                }
                event = stream.next() => match self.job_event(event, &mut stream)? {
                    Seen::Gone => return Ok(true),
                    Seen::Job(other) if !is_it(&other) => return Ok(true),
                    Seen::Job(_) | Seen::Nothing => {}
                },
                _ = resync.tick() => match self.get().await? {
                    None => return Ok(true),
                    Some(other) if !is_it(&other) => return Ok(true),
                    Some(_) => {}
                },
            }
        }
    }

    fn resync_timer(&self) -> tokio::time::Interval {
        let period = self.runner.resync_interval;
        let mut timer = tokio::time::interval_at(Instant::now() + period, period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    }

    /// Interprets one item of the child Job's watch; a 403 is an error, other watch errors
    /// are retried by the watcher (after a backoff), a 410 on starting a watch relists.
    fn job_event(
        &self,
        event: Option<Result<Option<Job>, watcher::Error>>,
        stream: &mut JobStream,
    ) -> Result<Seen, KubeError> {
        match event {
            Some(Ok(Some(job))) => Ok(Seen::Job(Box::new(job))),
            Some(Ok(None)) => Ok(Seen::Gone),
            Some(Err(error)) => {
                if self.watch_problem(error, JOBS)? {
                    *stream = self.job_stream();
                }
                Ok(Seen::Nothing)
            }
            None => {
                *stream = self.job_stream();
                Ok(Seen::Nothing)
            }
        }
    }

    /// Handles a watcher error: `Err` for a 403, `Ok(true)` when the watch must start over
    /// with a fresh list (410 Gone when starting it), else `Ok(false)`.
    fn watch_problem(
        &self,
        error: watcher::Error,
        resource: &'static str,
    ) -> Result<bool, KubeError> {
        let (verb, source) = match error {
            watcher::Error::InitialListFailed(source) => ("list", source),
            watcher::Error::WatchStartFailed(source) | watcher::Error::WatchFailed(source) => {
                ("watch", source)
            }
            watcher::Error::WatchError(status) => ("watch", kube::Error::Api(status)),
            other => {
                tracing::debug!(
                    job = %self.name,
                    error = %other,
                    "watch of {resource} interrupted; retrying"
                );
                return Ok(false);
            }
        };
        if is_forbidden(&source) {
            return Err(self.runner.error(verb, resource, &self.name, source));
        }
        if is_gone(&source) {
            tracing::debug!(job = %self.name, "watch of {resource} expired (410 Gone); relisting");
            return Ok(true);
        }
        tracing::warn!(job = %self.name, error = %source, "cannot {verb} {resource}; retrying");
        Ok(false)
    }

    /// Follows a running child Job to its end.
    async fn follow(&self, job: Job) -> Result<ContainerOutcome, KubeError> {
        let mut current = job;
        let mut selector = pod_selector(&current, &self.name);
        let mut job_stream = self.job_stream();
        let mut pod_stream = self.pod_stream(&selector);
        let limits = StartLimits {
            observations: self.runner.start_error_observations,
            grace: self.runner.start_error_grace,
            start_timeout: self.spec.start_timeout,
        };
        let mut tracker = PodTracker::new(limits, Instant::now());
        let mut resync = self.resync_timer();
        let mut resync_failures = 0u32;
        let backstop = self
            .spec
            .active_deadline
            .map(|deadline| Instant::now() + deadline + self.runner.deadline_slack);
        loop {
            match job_state(&current) {
                JobState::Complete => return self.succeeded(&current, &tracker.pods()).await,
                JobState::Failed { .. } => return self.failed(&current).await,
                JobState::Running => {}
            }
            let now = Instant::now();
            if let Some(failure) = tracker.verdict(now) {
                return self.give_up(failure.reason, Vec::new()).await;
            }
            if backstop.is_some_and(|at| now >= at) {
                let limit = self.spec.active_deadline.unwrap_or_default().as_secs();
                let reason = format!(
                    "DeadlineExceeded: still running {} s after its active deadline of {limit} s",
                    self.runner.deadline_slack.as_secs()
                );
                let tail = self.running_tail(&tracker).await;
                return self.give_up(reason, tail).await;
            }
            let wake = [tracker.next_deadline(), backstop]
                .into_iter()
                .flatten()
                .min();
            let replaced = tokio::select! {
                biased;
                () = self.run.stop.requested() => return self.stop(&tracker).await,
                event = job_stream.next() => match self.job_event(event, &mut job_stream)? {
                    Seen::Job(job) => self.update(&mut current, *job),
                    Seen::Gone => match self.get().await? {
                        Some(job) => self.update(&mut current, job),
                        None => return Ok(self.deleted()),
                    },
                    Seen::Nothing => false,
                },
                event = pod_stream.next() => {
                    match event {
                        Some(Ok(Event::Init)) => tracker.begin_relist(),
                        Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => {
                            tracker.observe(pod, Instant::now());
                        }
                        Some(Ok(Event::InitDone)) => tracker.end_relist(),
                        Some(Ok(Event::Delete(pod))) => tracker.remove(&pod),
                        Some(Err(error)) => {
                            if self.watch_problem(error, PODS)? {
                                pod_stream = self.pod_stream(&selector);
                            }
                        }
                        None => pod_stream = self.pod_stream(&selector),
                    }
                    false
                },
                _ = resync.tick() => {
                    let replaced = match self.jobs.get_opt(&self.name).await {
                        Ok(Some(job)) => {
                            resync_failures = 0;
                            self.update(&mut current, job)
                        }
                        Ok(None) => return Ok(self.deleted()),
                        Err(e) if is_forbidden(&e) => {
                            return Err(self.runner.error("get", JOBS, &self.name, e));
                        }
                        Err(e) => {
                            resync_failures += 1;
                            if resync_failures >= MAX_RESYNC_FAILURES {
                                return Err(self.runner.error("get", JOBS, &self.name, e));
                            }
                            tracing::warn!(
                                job = %self.name,
                                error = %e,
                                "cannot re-read the child Job; retrying"
                            );
                            false
                        }
                    };
                    if !replaced {
                        match self.pods.list(&ListParams::default().labels(&selector)).await {
                            Ok(list) => tracker.replace(list.items, Instant::now()),
                            Err(e) if is_forbidden(&e) => {
                                return Err(self.runner.error("list", PODS, &selector, e));
                            }
                            Err(e) => {
                                tracing::warn!(
                                    job = %self.name,
                                    error = %e,
                                    "cannot list the child Job's pods; retrying"
                                );
                            }
                        }
                    }
                    replaced
                },
                () = sleep_until(wake) => false,
            };
            if replaced {
                // Another Job of the same name: follow it from scratch.
                selector = pod_selector(&current, &self.name);
                pod_stream = self.pod_stream(&selector);
                tracker = PodTracker::new(limits, Instant::now());
            }
        }
    }

    /// Takes a newer view of the child Job; true when it is another Job of the same name (the
    /// one followed was deleted and replaced by another launcher).
    fn update(&self, current: &mut Job, job: Job) -> bool {
        let replaced = Self::uid(&job).is_some() && Self::uid(&job) != Self::uid(current);
        if replaced {
            tracing::warn!(
                job = %self.name,
                "the child Job {} was replaced by another of the same name; following that one",
                self.name
            );
        }
        *current = job;
        replaced
    }

    fn deleted(&self) -> ContainerOutcome {
        ContainerOutcome::failure(
            None,
            format!(
                "deleted: the child Job {} was deleted before it finished",
                self.name
            ),
            Vec::new(),
        )
    }

    /// The pods of `job`, freshly listed.
    async fn list_pods(&self, job: &Job) -> Result<Vec<Pod>, KubeError> {
        let selector = pod_selector(job, &self.name);
        match self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => Ok(list.items),
            Err(e) if is_forbidden(&e) => Err(self.runner.error("list", PODS, &selector, e)),
            Err(e) => {
                tracing::warn!(job = %self.name, error = %e, "cannot list the child Job's pods");
                Ok(Vec::new())
            }
        }
    }

    /// The last lines of the container's log in `pod`; empty when it has none or cannot be
    /// read (except for a 403, which is an error).
    async fn log_tail(&self, pod: &Pod) -> Result<Vec<String>, KubeError> {
        let Some(name) = pod.meta().name.as_deref() else {
            return Ok(Vec::new());
        };
        if self.runner.tail_lines == 0 || !status::container_started(pod) {
            return Ok(Vec::new());
        }
        let params = LogParams {
            container: Some(self.spec.name.clone()),
            tail_lines: Some(i64::from(self.runner.tail_lines)),
            ..LogParams::default()
        };
        match self.pods.logs(name, &params).await {
            Ok(text) => {
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                let keep = usize::try_from(self.runner.tail_lines).unwrap_or(usize::MAX);
                let skip = lines.len().saturating_sub(keep);
                Ok(lines.into_iter().skip(skip).collect())
            }
            Err(e) if is_forbidden(&e) => Err(self.runner.error("get", POD_LOGS, name, e)),
            Err(e) => {
                tracing::warn!(
                    job = %self.name,
                    pod = name,
                    error = %e,
                    "cannot read the pod's log"
                );
                Ok(Vec::new())
            }
        }
    }

    /// The outcome of a Job that completed: success with its pod's log tail.
    async fn succeeded(&self, job: &Job, known: &[Pod]) -> Result<ContainerOutcome, KubeError> {
        let listed;
        let pods = if known
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        {
            known
        } else {
            listed = self.list_pods(job).await?;
            &listed[..]
        };
        let tail = match status::pick_pod(pods, "Succeeded") {
            Some(pod) => self.log_tail(pod).await?,
            None => Vec::new(),
        };
        tracing::info!(job = %self.name, "child Job {} completed", self.name);
        Ok(ContainerOutcome::success(tail))
    }

    /// The outcome of a Job that failed: its reason and the failed pod's log tail, read before
    /// anything is deleted.
    async fn failed(&self, job: &Job) -> Result<ContainerOutcome, KubeError> {
        let pods = self.list_pods(job).await?;
        let pod = status::pick_pod(&pods, "Failed");
        let (reason, exit_code) = status::failure_reason(job, pod, &self.spec.name);
        let tail = match pod {
            Some(pod) => self.log_tail(pod).await?,
            None => Vec::new(),
        };
        tracing::info!(job = %self.name, %reason, "child Job {} failed: {reason}", self.name);
        Ok(ContainerOutcome::failure(exit_code, reason, tail))
    }

    /// The outcome of a Job the runner gives up on (its pod cannot start, or it outlived its
    /// deadline): the reason, after deleting the Job so that it does not linger (and a restart
    /// creates a fresh one).
    async fn give_up(
        &self,
        reason: String,
        tail: Vec<String>,
    ) -> Result<ContainerOutcome, KubeError> {
        tracing::warn!(
            job = %self.name,
            %reason,
            "giving up on child Job {}: {reason}; deleting it",
            self.name
        );
        self.delete().await?;
        Ok(ContainerOutcome::failure(None, reason, tail))
    }

    /// Ends a run on a stop request: the running pod's log tail (best effort), then the Job is
    /// deleted with its pods.
    async fn stop(&self, tracker: &PodTracker) -> Result<ContainerOutcome, KubeError> {
        tracing::info!(job = %self.name, "stop requested: deleting child Job {}", self.name);
        let tail = self.running_tail(tracker).await;
        self.delete().await?;
        Ok(ContainerOutcome::stopped(tail))
    }

    /// The log tail of the running pod, if any, best effort and quickly: for a Job about to be
    /// deleted while it runs.
    async fn running_tail(&self, tracker: &PodTracker) -> Vec<String> {
        let pods = tracker.pods();
        let Some(pod) = status::pick_pod(&pods, "Running") else {
            return Vec::new();
        };
        match tokio::time::timeout(STOP_LOG_TIMEOUT, self.log_tail(pod)).await {
            Ok(Ok(tail)) => tail,
            Ok(Err(error)) => {
                tracing::warn!(job = %self.name, %error, "cannot read the running pod's log");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
