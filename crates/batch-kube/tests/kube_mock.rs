//! The Kubernetes backend against a scripted mock of the API server (kube-rs' `tower_test`
//! "ApiServerVerifier" pattern), for what a real 1.20 control plane cannot show: 410 Gone
//! mid-watch, 409 on create during a restart, podFailurePolicy in the spec, slow or dropped
//! watches, and the exact requests sent.
//!
//! The mock is a tiny fake cluster (one Job, its pods, a log) answering by route; each scenario
//! adds a script that can answer first, change the state or hold a request open.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use batch_core::job::parameters::{JobParameter, JobParameters};
use batch_core::step::StopSignal;
use batch_kube::kube::{KubeError, LauncherPod, spec_hash};
use batch_kube::{
    ContainerJobSpec, ContainerOutcome, ContainerRunner, KubeRunner, ResolvedSpec, ResourceList,
    RunContext, RunnerError,
};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

const NS: &str = "batch";
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: Option<Value>,
}

impl Seen {
    fn is_watch(&self) -> bool {
        self.query.contains("watch=true")
    }
    fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| percent_decode(value))
        })
    }
    fn describe(&self) -> String {
        format!("{} {}?{}", self.method, self.path, self.query)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// How the mock answers.
enum Reply {
    Json(u16, Value),
    Text(u16, String),
    /// Hold the request open (a watch with nothing to say).
    Hang,
}

/// The fake cluster.
#[derive(Default)]
struct Cluster {
    job: Option<Value>,
    pods: Vec<Value>,
    log: String,
    rv: u64,
    requests: Vec<Seen>,
}

impl Cluster {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Stores a created Job as the API server would: uid, resourceVersion, selector.
    fn create_job(&mut self, body: &Value, uid: &str) -> Value {
        let mut job = body.clone();
        job["metadata"]["uid"] = json!(uid);
        job["metadata"]["resourceVersion"] = json!(self.next_rv());
        job["spec"]["selector"] = json!({"matchLabels": {"controller-uid": uid}});
        job["spec"]["template"]["metadata"]["labels"]["controller-uid"] = json!(uid);
        job["spec"]["template"]["metadata"]["labels"]["job-name"] = job["metadata"]["name"].clone();
        self.job = Some(job.clone());
        job
    }

    /// Sets the Job's condition (`Complete` or `Failed`) and bumps its resourceVersion.
    fn finish_job(&mut self, kind: &str, reason: &str, message: &str, failed: i64) {
        let rv = self.next_rv();
        if let Some(job) = &mut self.job {
            job["metadata"]["resourceVersion"] = json!(rv);
            job["status"] = json!({
                "failed": failed,
                "succeeded": i64::from(kind == "Complete"),
                "conditions": [{"type": kind, "status": "True", "reason": reason,
                                "message": message}]
            });
        }
    }

    fn job_uid(&self) -> String {
        self.job
            .as_ref()
            .and_then(|j| j["metadata"]["uid"].as_str())
            .unwrap_or("none")
            .to_owned()
    }

    fn add_pod(&mut self, name: &str, phase: &str, state: Value) {
        let uid = self.job_uid();
        let rv = self.next_rv();
        self.pods.push(pod(name, &uid, &rv, phase, state));
    }

    fn requests_matching(&self, method: &Method, path_part: &str) -> Vec<Seen> {
        self.requests
            .iter()
            .filter(|r| r.method == *method && r.path.contains(path_part))
            .cloned()
            .collect()
    }
}

fn pod(name: &str, controller_uid: &str, rv: &str, phase: &str, state: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("pod-{name}"),
                     "resourceVersion": rv,
                     "creationTimestamp": "2024-01-01T00:00:00Z",
                     "labels": {"controller-uid": controller_uid, "job-name": JOB_NAME_HINT}},
        "spec": {"containers": [{"name": "generate-csv", "image": "csv2db:1"}]},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "generate-csv", "image": "csv2db:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": state}]}
    })
}

/// Only used as a label value; selection is by controller-uid.
const JOB_NAME_HINT: &str = "generate-csv";

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn list(kind: &str, rv: u64, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()},
           "items": items})
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][key].as_str() == Some(value)
    })
}

/// What the fake cluster answers when no script does.
fn default_reply(seen: &Seen, cluster: &mut Cluster) -> Reply {
    let jobs_path = format!("/apis/batch/v1/namespaces/{NS}/jobs");
    let pods_path = format!("/api/v1/namespaces/{NS}/pods");
    if seen.path == jobs_path {
        if seen.method == Method::POST {
            let body = seen.body.clone().expect("a body");
            if cluster.job.is_some() {
                return Reply::Json(409, status(409, "AlreadyExists", "jobs.batch exists"));
            }
            let job = cluster.create_job(&body, "uid-1");
            return Reply::Json(201, job);
        }
        if seen.is_watch() {
            return Reply::Hang;
        }
        let items = cluster.job.iter().cloned().collect();
        return Reply::Json(200, list("JobList", cluster.rv, items));
    }
    if let Some(name) = seen.path.strip_prefix(&format!("{jobs_path}/")) {
        let exists = cluster
            .job
            .as_ref()
            .is_some_and(|j| j["metadata"]["name"] == name);
        return match seen.method {
            Method::GET if exists => Reply::Json(200, cluster.job.clone().expect("job")),
            Method::DELETE if exists => {
                cluster.job = None;
                Reply::Json(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success"}),
                )
            }
            _ => Reply::Json(404, status(404, "NotFound", "jobs.batch not found")),
        };
    }
    if seen.path == pods_path {
        if seen.is_watch() {
            return Reply::Hang;
        }
        let selector = seen.param("labelSelector").unwrap_or_default();
        let items = cluster
            .pods
            .iter()
            .filter(|p| matches_selector(p, &selector))
            .cloned()
            .collect();
        return Reply::Json(200, list("PodList", cluster.rv, items));
    }
    if seen.path.starts_with(&format!("{pods_path}/")) && seen.path.ends_with("/log") {
        let tail: usize = seen
            .param("tailLines")
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        let lines: Vec<&str> = cluster.log.lines().collect();
        let kept = lines[lines.len().saturating_sub(tail)..].join("\n");
        return Reply::Text(200, format!("{kept}\n"));
    }
    Reply::Json(
        404,
        status(404, "NotFound", &format!("no route {}", seen.describe())),
    )
}

type Script = Box<dyn FnMut(&Seen, &mut Cluster) -> Option<Reply> + Send>;

/// Starts the mock API server; returns the client and the shared cluster state.
fn mock_cluster(cluster: Cluster, mut script: Script) -> (kube::Client, Arc<Mutex<Cluster>>) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(cluster));
    let shared = state.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let seen = Seen {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: (!bytes.is_empty())
                    .then(|| serde_json::from_slice(&bytes).expect("a JSON body")),
            };
            let reply = {
                let mut cluster = shared.lock().unwrap_or_else(PoisonError::into_inner);
                cluster.requests.push(seen.clone());
                match script(&seen, &mut cluster) {
                    Some(reply) => reply,
                    None => default_reply(&seen, &mut cluster),
                }
            };
            let response = match reply {
                Reply::Json(code, value) => Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).expect("json"))),
                Reply::Text(code, text) => Response::builder()
                    .status(code)
                    .header("content-type", "text/plain")
                    .body(Body::from(text.into_bytes())),
                Reply::Hang => {
                    held.push(send);
                    continue;
                }
            };
            send.send_response(response.expect("a response"));
        }
    });
    (kube::Client::new(service, NS), state)
}

fn no_script() -> Script {
    Box::new(|_, _| None)
}

fn spec() -> ContainerJobSpec {
    ContainerJobSpec::new("generate-csv", "csv2db:1")
        .command(["sh", "-c", "echo hello > $FILENAME"])
        .env_parameter("FILENAME", "jobFileLocation")
        .volume("spring-batch-claim", "/test")
        .requests(ResourceList::new().cpu("300m").memory("512Mi"))
        .limits(ResourceList::new().memory("512Mi"))
        .backoff_limit(1)
        .active_deadline(Duration::from_secs(600))
        .ttl_after_finished(Duration::from_secs(3600))
        .service_account("csv2db-worker")
        .label("team", "data")
}

fn runner(client: kube::Client) -> KubeRunner {
    KubeRunner::new(client, NS)
}

/// `spec` with the tests' job parameters.
fn resolve(spec: &ContainerJobSpec) -> ResolvedSpec {
    let params =
        JobParameters::new().with("jobFileLocation", JobParameter::string("/test/people.csv"));
    spec.resolve(&params).expect("resolves")
}

async fn run_spec(
    runner: &KubeRunner,
    spec: &ContainerJobSpec,
    stop: &StopSignal,
) -> Result<ContainerOutcome, RunnerError> {
    let resolved = resolve(spec);
    let run = RunContext {
        job_name: "importUserJob",
        job_instance_id: 42,
        job_execution_id: 7,
        step_execution_id: 11,
        step_name: "step1",
        stop,
    };
    tokio::time::timeout(TEST_TIMEOUT, runner.run(&resolved, &run))
        .await
        .expect("the runner finishes in time")
}

fn snapshot(state: &Arc<Mutex<Cluster>>) -> std::sync::MutexGuard<'_, Cluster> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The runner adopted the existing child: it neither created nor deleted a Job.
fn assert_no_job_created_or_deleted(cluster: &Cluster) {
    let all = describe_all(cluster);
    assert!(
        cluster.requests_matching(&Method::POST, "/jobs").is_empty(),
        "{all:#?}"
    );
    assert!(
        cluster
            .requests_matching(&Method::DELETE, "/jobs/")
            .is_empty(),
        "{all:#?}"
    );
}

/// The index of the first request matching, for ordering assertions.
fn position(cluster: &Cluster, method: &Method, path_part: &str) -> usize {
    cluster
        .requests
        .iter()
        .position(|r| r.method == *method && r.path.contains(path_part))
        .unwrap_or_else(|| panic!("no {method} {path_part} in {:#?}", describe_all(cluster)))
}

fn describe_all(cluster: &Cluster) -> Vec<String> {
    cluster.requests.iter().map(Seen::describe).collect()
}

fn completes_on_first_list() -> Script {
    Box::new(|seen, cluster| {
        if seen.method == Method::GET
            && seen.path.ends_with("/jobs")
            && !seen.is_watch()
            && cluster.job.is_some()
            && cluster.pods.is_empty()
        {
            cluster.add_pod(
                "generate-csv-pod-ok",
                "Succeeded",
                json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            );
            cluster.log = "hello from the pod".into();
            cluster.finish_job("Complete", "", "", 0);
        }
        None
    })
}

// (a) The create request carries everything; the Job completes; success with its log.
#[tokio::test]
async fn the_created_job_carries_the_spec_and_its_completion_is_seen() {
    let (client, state) = mock_cluster(Cluster::default(), completes_on_first_list());
    let runner = runner(client).launcher_pod(Some(LauncherPod {
        name: "csv2db-launcher-x1".into(),
        uid: "launcher-uid".into(),
        namespace: Some(NS.into()),
    }));
    let outcome = run_spec(&runner, &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    assert_eq!(outcome.log_tail, ["hello from the pod"]);

    let cluster = snapshot(&state);
    let posts = cluster.requests_matching(&Method::POST, "/jobs");
    assert_eq!(posts.len(), 1, "{:#?}", describe_all(&cluster));
    let job = posts[0].body.clone().expect("body");
    let name = job["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("generate-csv-42-"), "{name}");
    assert!(name.len() <= 63);
    assert_eq!(job["metadata"]["namespace"], NS);

    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "csv2db");
    assert_eq!(labels["csv2db.io/job-instance"], "42");
    assert_eq!(labels["csv2db.io/job-execution"], "7");
    assert_eq!(labels["csv2db.io/step-execution"], "11");
    assert_eq!(labels["csv2db.io/step"], "step1");
    assert_eq!(labels["team"], "data");
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], *labels);
    assert_eq!(
        job["metadata"]["annotations"]["csv2db.io/spec-hash"],
        spec_hash(&resolve(&spec()))
    );

    let owners = job["metadata"]["ownerReferences"]
        .as_array()
        .expect("owners");
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["apiVersion"], "v1");
    assert_eq!(owners[0]["kind"], "Pod");
    assert_eq!(owners[0]["name"], "csv2db-launcher-x1");
    assert_eq!(owners[0]["uid"], "launcher-uid");
    assert!(owners[0].get("blockOwnerDeletion").is_none(), "{owners:?}");

    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 1);
    assert_eq!(spec["activeDeadlineSeconds"], 600);
    assert_eq!(spec["ttlSecondsAfterFinished"], 3600);
    assert_eq!(
        spec["podFailurePolicy"],
        json!({"rules": [{"action": "Ignore",
                          "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "csv2db-worker");
    assert_eq!(
        pod["volumes"],
        json!([{"name": "spring-batch-claim",
                "persistentVolumeClaim": {"claimName": "spring-batch-claim"}}])
    );
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "generate-csv");
    assert_eq!(container["image"], "csv2db:1");
    // Values are final: `$` is escaped so that Kubernetes' expansion leaves them alone.
    assert_eq!(
        container["command"],
        json!(["sh", "-c", "echo hello > $$FILENAME"])
    );
    assert_eq!(
        container["env"],
        json!([{"name": "FILENAME", "value": "/test/people.csv"}])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "spring-batch-claim", "mountPath": "/test"}])
    );
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "300m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}})
    );
    assert_eq!(
        container["securityContext"],
        json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false,
               "capabilities": {"drop": ["ALL"]},
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert!(container["securityContext"].get("runAsUser").is_none());

    // It looked before creating, and waited with a watch, not by polling.
    assert!(
        position(&cluster, &Method::GET, "/jobs/") < position(&cluster, &Method::POST, "/jobs")
    );
    assert!(cluster.requests.iter().any(|r| r.path.ends_with("/jobs")
        && !r.is_watch()
        && r.param("fieldSelector").as_deref() == Some(&format!("metadata.name={name}")[..])));
    // Its pods are selected by the Job's own controller-uid.
    let pod_lists: Vec<_> = cluster
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/pods"))
        .collect();
    assert!(
        pod_lists
            .iter()
            .all(|r| r.param("labelSelector").as_deref() == Some("controller-uid=uid-1")),
        "{pod_lists:#?}"
    );
    assert!(
        cluster
            .requests_matching(&Method::DELETE, "/jobs/")
            .is_empty()
    );
}

// (b) 409 on create (a racing launcher): GET it and re-attach; one POST only.
#[tokio::test]
async fn already_exists_on_create_reattaches() {
    let mut raced = false;
    let script: Script = Box::new(move |seen, cluster| {
        if seen.method == Method::POST && !raced {
            raced = true;
            // Another launcher created it between our GET and our POST.
            let body = seen.body.clone().expect("body");
            cluster.create_job(&body, "uid-other");
            return Some(Reply::Json(
                409,
                status(409, "AlreadyExists", "jobs.batch \"x\" already exists"),
            ));
        }
        if seen.method == Method::GET && seen.path.ends_with("/jobs") && !seen.is_watch() {
            cluster.finish_job("Complete", "", "", 0);
        }
        None
    });
    let (client, state) = mock_cluster(Cluster::default(), script);
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    let cluster = snapshot(&state);
    assert_eq!(cluster.requests_matching(&Method::POST, "/jobs").len(), 1);
    let gets = cluster.requests_matching(&Method::GET, "/jobs/");
    assert_eq!(gets.len(), 2, "{:#?}", describe_all(&cluster));
    assert!(
        cluster
            .requests_matching(&Method::DELETE, "/jobs/")
            .is_empty()
    );
    // It followed the other launcher's Job.
    assert!(
        cluster
            .requests
            .iter()
            .any(|r| r.param("labelSelector").as_deref() == Some("controller-uid=uid-other"))
    );
}

fn failed_earlier() -> Cluster {
    let mut cluster = Cluster::default();
    let name = batch_kube::kube::child_job_name(
        "generate-csv",
        &RunContext {
            job_name: "importUserJob",
            job_instance_id: 42,
            job_execution_id: 6,
            step_execution_id: 9,
            step_name: "step1",
            stop: &StopSignal::new(),
        },
    );
    let body = json!({"apiVersion": "batch/v1", "kind": "Job",
                      "metadata": {"name": name, "namespace": NS},
                      "spec": {"template": {"metadata": {}}}});
    cluster.create_job(&body, "uid-old");
    cluster.finish_job(
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
        1,
    );
    cluster.add_pod(
        "generate-csv-old",
        "Failed",
        json!({"terminated": {"exitCode": 2, "reason": "Error"}}),
    );
    cluster.log = "cannot write /test/people.csv".into();
    cluster
}

/// Answers the create of a new child Job (uid `uid-new`), which completes at the next list.
fn creates_then_completes() -> Script {
    let mut created = false;
    Box::new(move |seen, cluster| {
        if seen.method == Method::POST {
            created = true;
            let body = seen.body.clone().expect("body");
            let job = cluster.create_job(&body, "uid-new");
            return Some(Reply::Json(201, job));
        }
        if created && seen.method == Method::GET && seen.path.ends_with("/jobs") && !seen.is_watch()
        {
            cluster.finish_job("Complete", "", "", 0);
        }
        None
    })
}

// (c) A failed child from an earlier execution: its reason and log are read, it is deleted
// (Background, only that UID), and a new one is created.
#[tokio::test]
async fn a_failed_child_is_recorded_deleted_and_replaced() {
    let script = creates_then_completes();
    let (client, state) = mock_cluster(failed_earlier(), script);
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    let cluster = snapshot(&state);
    let all = describe_all(&cluster);
    let log = position(&cluster, &Method::GET, "/pods/generate-csv-old/log");
    let delete = position(&cluster, &Method::DELETE, "/jobs/");
    let create = position(&cluster, &Method::POST, "/jobs");
    assert!(log < delete && delete < create, "{all:#?}");
    let deletes = cluster.requests_matching(&Method::DELETE, "/jobs/");
    assert_eq!(deletes.len(), 1, "{all:#?}");
    let body = deletes[0].body.clone().expect("delete options");
    assert_eq!(body["propagationPolicy"], "Background");
    assert_eq!(body["preconditions"]["uid"], "uid-old");
    assert_eq!(cluster.requests_matching(&Method::POST, "/jobs").len(), 1);
}

// (d) The watch answers 410 Gone mid-wait: the watcher relists and sees Complete (no resync).
#[tokio::test]
async fn gone_mid_watch_relists_and_sees_completion() {
    let mut watches = 0;
    let script: Script = Box::new(move |seen, cluster| {
        if seen.path.ends_with("/jobs") && seen.is_watch() {
            watches += 1;
            if watches == 1 {
                // The Job completes while the watch is broken.
                cluster.finish_job("Complete", "", "", 0);
                let event = json!({"type": "ERROR", "object": status(410, "Expired",
                    "too old resource version: 1 (5)")});
                return Some(Reply::Text(200, format!("{event}\n")));
            }
        }
        None
    });
    let (client, state) = mock_cluster(Cluster::default(), script);
    let runner = runner(client).resync_interval(Duration::from_secs(3600));
    let outcome = run_spec(&runner, &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    let cluster = snapshot(&state);
    let job_lists = cluster
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/jobs") && r.method == Method::GET && !r.is_watch())
        .count();
    assert_eq!(
        job_lists,
        2,
        "listed, then relisted: {:#?}",
        describe_all(&cluster)
    );
    // Found by the relist, not by a re-read.
    assert_eq!(cluster.requests_matching(&Method::GET, "/jobs/").len(), 1);
}

// (e) The watch ends and then stays silent: the periodic re-read finds Complete.
#[tokio::test]
async fn a_silent_watch_is_backed_by_the_periodic_reread() {
    let mut watches = 0;
    let script: Script = Box::new(move |seen, cluster| {
        if seen.path.ends_with("/jobs") && seen.is_watch() {
            watches += 1;
            if watches == 1 {
                // The Job completes; the watch ends without saying so...
                cluster.finish_job("Complete", "", "", 0);
                return Some(Reply::Text(200, String::new()));
            }
            // ...and the next one never says anything.
            return Some(Reply::Hang);
        }
        None
    });
    let (client, state) = mock_cluster(Cluster::default(), script);
    let runner = runner(client).resync_interval(Duration::from_millis(300));
    let outcome = run_spec(&runner, &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    let cluster = snapshot(&state);
    // The initial look plus at least one re-read.
    assert!(cluster.requests_matching(&Method::GET, "/jobs/").len() >= 2);
    let job_lists = cluster
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/jobs") && r.method == Method::GET && !r.is_watch())
        .count();
    assert_eq!(job_lists, 1, "no relist: {:#?}", describe_all(&cluster));
}

fn forbidden(message: &str) -> Reply {
    Reply::Json(403, status(403, "Forbidden", message))
}

fn kube_error(error: RunnerError) -> KubeError {
    match error {
        RunnerError::Other(source) => *source.downcast::<KubeError>().expect("a KubeError"),
        other => panic!("not a Kubernetes error: {other:?}"),
    }
}

// (f) 403 on create: the message names the account, verb, resource, namespace and the Role.
#[tokio::test]
async fn forbidden_create_names_account_verb_resource_namespace_and_role() {
    let script: Script = Box::new(|seen, _| {
        (seen.method == Method::POST).then(|| {
            forbidden(
                "jobs.batch is forbidden: User \"system:serviceaccount:batch:default\" cannot \
                 create resource \"jobs\" in API group \"batch\" in the namespace \"batch\"",
            )
        })
    });
    let (client, _state) = mock_cluster(Cluster::default(), script);
    let error = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "Kubernetes refused to let service account batch:default create jobs.batch in \
             namespace batch (403 Forbidden): grant it the Role in deploy/base/role.yaml \
             (kubectl apply -k deploy/base/)"
        ),
        "{message}"
    );
    assert!(matches!(
        kube_error(error),
        KubeError::Forbidden {
            verb: "create",
            resource: "jobs.batch",
            ..
        }
    ));
}

// The seed's own 403: watching jobs; with no account in the message, the configured one.
#[tokio::test]
async fn forbidden_watch_is_the_seeds_error_made_actionable() {
    let script: Script = Box::new(|seen, _| {
        (seen.path.ends_with("/jobs") && seen.is_watch()).then(|| {
            forbidden(
                "User \"system:serviceaccount:batch:default\" cannot watch jobs.batch in the \
                 namespace \"batch\": User \"system:serviceaccount:batch:default\" cannot watch \
                 jobs.batch in project \"batch\"",
            )
        })
    });
    let (client, _state) = mock_cluster(Cluster::default(), script);
    let message = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        message.starts_with(
            "Kubernetes refused to let service account batch:default watch jobs.batch in \
             namespace batch (403 Forbidden): grant it the Role in deploy/base/role.yaml"
        ),
        "{message}"
    );

    let script: Script = Box::new(|seen, _| {
        (seen.method == Method::GET && seen.path.contains("/jobs/")).then(|| forbidden("forbidden"))
    });
    let (client, _state) = mock_cluster(Cluster::default(), script);
    let runner = runner(client).launcher_service_account("csv2db-launcher");
    let message = run_spec(&runner, &spec(), &StopSignal::new())
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        message.starts_with(
            "Kubernetes refused to let service account batch:csv2db-launcher get jobs.batch in \
             namespace batch (403 Forbidden)"
        ),
        "{message}"
    );
}

// (g) A pod stuck pulling its image fails the step within the grace, without waiting for any
// deadline, and the Job is deleted.
#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_fast() {
    let mut pod_watches = 0;
    let script: Script = Box::new(move |seen, cluster| {
        if seen.path.ends_with("/pods") && !seen.is_watch() && cluster.pods.is_empty() {
            cluster.add_pod(
                "generate-csv-pull",
                "Pending",
                json!({"waiting": {"reason": "ErrImagePull",
                                   "message": "pull access denied for bad/image"}}),
            );
        }
        if seen.path.ends_with("/pods") && seen.is_watch() {
            pod_watches += 1;
            if pod_watches == 1 {
                let uid = cluster.job_uid();
                let rv = cluster.next_rv();
                let update = pod(
                    "generate-csv-pull",
                    &uid,
                    &rv,
                    "Pending",
                    json!({"waiting": {"reason": "ImagePullBackOff",
                                       "message": "Back-off pulling image \"bad/image:1\""}}),
                );
                let event = json!({"type": "MODIFIED", "object": update});
                return Some(Reply::Text(200, format!("{event}\n")));
            }
            return Some(Reply::Hang);
        }
        None
    });
    let (client, state) = mock_cluster(Cluster::default(), script);
    let started = tokio::time::Instant::now();
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!outcome.succeeded);
    assert_eq!(
        outcome.reason,
        "ImagePullBackOff: Back-off pulling image \"bad/image:1\""
    );
    assert_eq!(outcome.exit_code, None);
    let cluster = snapshot(&state);
    let deletes = cluster.requests_matching(&Method::DELETE, "/jobs/");
    assert_eq!(deletes.len(), 1, "{:#?}", describe_all(&cluster));
    assert_eq!(
        deletes[0].body.clone().expect("options")["propagationPolicy"],
        "Background"
    );
}

// (h) A failed pod: the reason is its exit code, and the last 50 lines of its log come along.
#[tokio::test]
async fn a_failed_pod_gives_its_exit_code_and_log_tail() {
    let script: Script = Box::new(|seen, cluster| {
        if seen.method == Method::GET
            && seen.path.ends_with("/jobs")
            && !seen.is_watch()
            && cluster.pods.is_empty()
        {
            cluster.add_pod(
                "generate-csv-fail",
                "Failed",
                json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
            );
            cluster.log = (1..=80).map(|i| format!("row {i}\n")).collect();
            cluster.finish_job(
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                1,
            );
        }
        None
    });
    let (client, state) = mock_cluster(Cluster::default(), script);
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(!outcome.succeeded);
    assert!(!outcome.stopped);
    assert_eq!(outcome.reason, "exit code 3");
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.log_tail.len(), 50);
    assert_eq!(outcome.log_tail[0], "row 31");
    assert_eq!(outcome.log_tail[49], "row 80");
    let cluster = snapshot(&state);
    let logs = cluster.requests_matching(&Method::GET, "/pods/generate-csv-fail/log");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].param("tailLines").as_deref(), Some("50"));
    assert_eq!(logs[0].param("container").as_deref(), Some("generate-csv"));
    // The failed Job is kept (its TTL cleans it up); a restart replaces it.
    assert!(
        cluster
            .requests_matching(&Method::DELETE, "/jobs/")
            .is_empty()
    );
}

// (i) A stop deletes the running child Job with Background propagation.
#[tokio::test]
async fn stop_deletes_the_child_job_with_its_pods() {
    let script: Script = Box::new(|seen, cluster| {
        if seen.path.ends_with("/pods") && !seen.is_watch() && cluster.pods.is_empty() {
            cluster.add_pod(
                "generate-csv-run",
                "Running",
                json!({"running": {"startedAt": "2024-01-01T00:00:01Z"}}),
            );
            cluster.log = "working".into();
        }
        None
    });
    let (client, state) = mock_cluster(Cluster::default(), script);
    let stop = StopSignal::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.request();
        });
    }
    let outcome = run_spec(&runner(client), &spec(), &stop)
        .await
        .expect("runs");
    assert!(outcome.stopped, "{outcome:?}");
    assert!(!outcome.succeeded);
    assert_eq!(outcome.log_tail, ["working"]);
    let cluster = snapshot(&state);
    let deletes = cluster.requests_matching(&Method::DELETE, "/jobs/");
    assert_eq!(deletes.len(), 1, "{:#?}", describe_all(&cluster));
    assert_eq!(
        deletes[0].body.clone().expect("options")["propagationPolicy"],
        "Background"
    );
    assert!(cluster.job.is_none());
}

// A running child from a crashed launcher is re-attached to, not duplicated.
#[tokio::test]
async fn a_running_child_is_reattached_to() {
    let mut cluster = failed_earlier();
    let job = cluster.job.as_mut().expect("job");
    job["status"] = json!({"active": 1});
    job["metadata"]["annotations"] = json!({"csv2db.io/spec-hash": spec_hash(&resolve(&spec()))});
    cluster.pods.clear();
    let script: Script = Box::new(|seen, cluster| {
        if seen.method == Method::GET && seen.path.ends_with("/jobs") && !seen.is_watch() {
            cluster.finish_job("Complete", "", "", 0);
        }
        None
    });
    let (client, state) = mock_cluster(cluster, script);
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    let cluster = snapshot(&state);
    assert_no_job_created_or_deleted(&cluster);
}

// A child that already succeeded counts as done: nothing is created or deleted.
#[tokio::test]
async fn a_succeeded_child_counts_as_done() {
    let mut cluster = failed_earlier();
    cluster.finish_job("Complete", "", "", 0);
    cluster.pods.clear();
    cluster.add_pod(
        "generate-csv-done",
        "Succeeded",
        json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
    );
    cluster.log = "done before".into();
    let (client, state) = mock_cluster(cluster, no_script());
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    assert_eq!(outcome.log_tail, ["done before"]);
    let cluster = snapshot(&state);
    assert_no_job_created_or_deleted(&cluster);
}

// A succeeded child of the same name made from another spec (another run's parameters, or
// another metadata database whose instance has the same id) is not this run's: it is deleted
// (only that UID) and the step runs afresh.
#[tokio::test]
async fn a_succeeded_child_of_another_spec_is_replaced() {
    let mut cluster = failed_earlier();
    cluster.finish_job("Complete", "", "", 0);
    cluster.job.as_mut().expect("job")["metadata"]["annotations"] =
        json!({"csv2db.io/spec-hash": "0123456789abcdef"});
    cluster.pods.clear();
    let script = creates_then_completes();
    let (client, state) = mock_cluster(cluster, script);
    let outcome = run_spec(&runner(client), &spec(), &StopSignal::new())
        .await
        .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    let cluster = snapshot(&state);
    let all = describe_all(&cluster);
    let deletes = cluster.requests_matching(&Method::DELETE, "/jobs/");
    assert_eq!(deletes.len(), 1, "{all:#?}");
    assert_eq!(
        deletes[0].body.clone().expect("delete options")["preconditions"]["uid"],
        "uid-old"
    );
    assert!(
        position(&cluster, &Method::DELETE, "/jobs/") < position(&cluster, &Method::POST, "/jobs"),
        "{all:#?}"
    );
    assert_eq!(cluster.requests_matching(&Method::POST, "/jobs").len(), 1);
}
