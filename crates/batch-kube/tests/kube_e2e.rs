//! The Kubernetes backend end to end, against the real control plane of `../shared/k8s-local`
//! (kube-apiserver and kube-controller-manager 1.20 plus a fake kubelet running pods' commands as
//! local processes). Run by `tests/e2e/run`, which starts it with
//! `K8S_LOCAL_KUBELET_ARGS="--fail-images ^bad/"` and sets `CSV2DB_E2E_KUBECONFIG`.
//!
//! Every test is ignored by default; with `--include-ignored` but without
//! `CSV2DB_E2E_KUBECONFIG` each one says so and passes. Each test works in a namespace of its
//! own, deleted at the end.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_core::BatchStatus;
use batch_core::job::Job as BatchJob;
use batch_core::job::parameters::JobParameters;
use batch_core::step::{StepExecution, StopSignal};
use batch_kube::kube::{
    KubeError, LauncherPod, MANAGED_BY_LABEL, STEP_EXECUTION_LABEL, child_job_name,
};
use batch_kube::step::{EXIT_CODE_KEY, REASON_KEY};
use batch_kube::{
    ContainerJobSpec, ContainerJobStep, ContainerOutcome, ContainerRunner, KubeRunner, RunContext,
    RunnerError,
};
use batch_testkit::{Kubectl, TestDb, launch_single_step, string_parameters};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

const KUBECONFIG_VAR: &str = "CSV2DB_E2E_KUBECONFIG";
const IGNORED: &str = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)";
const SERVICE_ACCOUNT: &str = "csv2db-launcher";

/// A test's cluster connection and namespace.
#[derive(Clone)]
struct Env {
    config: Config,
    client: Client,
    namespace: String,
    kubeconfig: PathBuf,
}

impl Env {
    fn runner(&self) -> KubeRunner {
        KubeRunner::new(self.client.clone(), self.namespace.clone())
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The directory the fake kubelet mounts for the claim named like the namespace.
    fn claim_dir(&self) -> PathBuf {
        pv_root().join(&self.namespace)
    }
}

fn pv_root() -> PathBuf {
    if let Some(root) = std::env::var_os("K8S_LOCAL_PV_ROOT") {
        return PathBuf::from(root);
    }
    let base = std::env::var_os("K8S_LOCAL")
        .map_or_else(|| PathBuf::from("/opt/k8s-local"), PathBuf::from);
    base.join("run").join("pv")
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "csv2db-e2e-{tag}-{:x}{:x}",
        std::process::id() & 0xfff,
        nanos & 0xfffff
    )
}

/// Runs `test` in a fresh namespace, deleting it afterwards even when the test fails. Without
/// `CSV2DB_E2E_KUBECONFIG`, says so and returns.
async fn in_namespace<F, Fut>(tag: &str, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(kubeconfig) = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from) else {
        eprintln!("skipped: {IGNORED}");
        return;
    };
    let parsed = Kubeconfig::read_from(&kubeconfig).expect("read the kubeconfig");
    let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .expect("a client configuration");
    let client = Client::try_from(config.clone()).expect("a client");
    let namespace = unique(tag);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .expect("create the test namespace");
    // Pods created before the namespace's `default` service account has its token (1.20) are
    // refused, and the 1.20 Job controller then notices a deadline late: wait for the token,
    // as any namespace in use has it.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    while accounts
        .get_opt("default")
        .await
        .expect("get the default service account")
        .and_then(|sa| sa.secrets)
        .is_none_or(|secrets| secrets.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "no default service account in {namespace}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let env = Env {
        config,
        client,
        namespace: namespace.clone(),
        kubeconfig,
    };
    let claim_dir = env.claim_dir();
    let result = tokio::spawn(test(env)).await;
    if let Err(error) = namespaces
        .delete(&namespace, &DeleteParams::background())
        .await
    {
        eprintln!("cannot delete namespace {namespace}: {error}");
    }
    let _ = std::fs::remove_dir_all(claim_dir);
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn shell(name: &str, script: &str) -> ContainerJobSpec {
    ContainerJobSpec::new(name, "busybox:1.36").command(["sh", "-c", script])
}

async fn run_direct(
    runner: &KubeRunner,
    spec: &ContainerJobSpec,
    params: &JobParameters,
    instance: i64,
) -> Result<ContainerOutcome, RunnerError> {
    let resolved = spec.resolve(params).expect("the spec resolves");
    let stop = StopSignal::new();
    let run = RunContext {
        job_name: "e2eJob",
        job_instance_id: instance,
        job_execution_id: instance,
        step_execution_id: instance,
        step_name: "step1",
        stop: &stop,
    };
    tokio::time::timeout(Duration::from_secs(120), runner.run(&resolved, &run))
        .await
        .expect("the runner ends within 2 minutes")
}

// ---------------------------------------------------------------------------------------------
// Through a real job launcher on SQLite.

async fn launch(
    runner: KubeRunner,
    spec: ContainerJobSpec,
    parameters: JobParameters,
) -> (BatchStatus, StepExecution) {
    let db = TestDb::sqlite();
    let job = BatchJob::builder("importUserJob")
        .step(ContainerJobStep::new("step1", spec, Arc::new(runner)))
        .build();
    tokio::time::timeout(
        Duration::from_secs(120),
        launch_single_step(
            &db.job_repository().await,
            &job,
            parameters,
            StopSignal::new(),
        ),
    )
    .await
    .expect("the job ends within 2 minutes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn a_child_job_succeeds_and_writes_to_the_claim() {
    in_namespace("ok", |env| async move {
        let claim = env.namespace.clone();
        let spec = shell("generate-csv", "echo hello > $FILENAME")
            .env_parameter("FILENAME", "jobFileLocation")
            .volume(&claim, "/test")
            .ttl_after_finished(Duration::from_secs(600));
        let (status, step) = launch(
            env.runner(),
            spec,
            string_parameters(&[("jobFileLocation", "/test/people.csv"), ("batchRun", "1")]),
        )
        .await;
        assert_eq!(status, BatchStatus::Completed, "{:?}", step.exit_status);
        assert_eq!(step.status, BatchStatus::Completed);
        assert_eq!(step.exit_status.code, "COMPLETED");
        assert_eq!(step.context.get_i64(EXIT_CODE_KEY), Some(0));
        assert_eq!(step.context.get_str(REASON_KEY), Some("exit code 0"));
        let written = env.claim_dir().join("people.csv");
        assert_eq!(
            std::fs::read_to_string(&written)
                .unwrap_or_else(|e| panic!("{} written: {e}", written.display())),
            "hello\n"
        );

        // The child Job is there, labelled, and named after the job instance and step.
        let jobs = env
            .jobs()
            .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}=csv2db")))
            .await
            .expect("list jobs");
        assert_eq!(jobs.items.len(), 1);
        let job = &jobs.items[0];
        let name = job.metadata.name.clone().expect("name");
        assert!(name.starts_with("generate-csv-1-"), "{name}");
        let labels = job.metadata.labels.clone().expect("labels");
        assert_eq!(
            labels.get(STEP_EXECUTION_LABEL).map(String::as_str),
            Some(step.id.to_string().as_str())
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn a_failing_child_job_fails_its_step_with_the_log_tail() {
    in_namespace("fail", |env| async move {
        let spec = shell(
            "fail-csv",
            "i=1; while [ $i -le 60 ]; do echo \"row $i\"; i=$((i+1)); done; \
             echo \"cannot write $FILENAME\" >&2; exit 3",
        )
        .env_parameter("FILENAME", "jobFileLocation");
        let (status, step) = launch(
            env.runner(),
            spec,
            string_parameters(&[("jobFileLocation", "/test/myfile1.csv")]),
        )
        .await;
        assert_eq!(status, BatchStatus::Failed);
        assert_eq!(step.status, BatchStatus::Failed);
        assert_eq!(step.exit_status.code, "FAILED");
        let message = &step.exit_status.description;
        assert!(
            message.starts_with(
                "container job fail-csv failed: exit code 3\nLast lines of its log:\nrow 12\n"
            ),
            "{message}"
        );
        assert!(
            message.ends_with("row 59\nrow 60\ncannot write /test/myfile1.csv"),
            "{message}"
        );
        assert!(!message.contains("row 11\n"), "{message}");
        assert_eq!(step.context.get_i64(EXIT_CODE_KEY), Some(3));
        assert_eq!(step.context.get_str(REASON_KEY), Some("exit code 3"));
        assert_eq!(step.counters.rollback, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn an_image_that_cannot_be_pulled_fails_with_the_pull_reason() {
    in_namespace("pull", |env| async move {
        // The fake kubelet runs with --fail-images ^bad/.
        let spec = ContainerJobSpec::new("pull-csv", "bad/image:1").command(["sh", "-c", "true"]);
        let started = Instant::now();
        let outcome = run_direct(&env.runner(), &spec, &JobParameters::new(), 5)
            .await
            .expect("runs");
        assert!(!outcome.succeeded);
        assert!(
            outcome.reason.starts_with("ImagePullBackOff: ")
                || outcome.reason.starts_with("ErrImagePull: "),
            "{}",
            outcome.reason
        );
        assert!(outcome.reason.contains("bad/image:1"), "{}", outcome.reason);
        // Two updates of the pod's status, about 10 s apart with the fake kubelet; nowhere
        // near the 5-minute start timeout.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
        // The stuck Job is deleted.
        let name = child_job_name(
            "pull-csv",
            &RunContext {
                job_name: "e2eJob",
                job_instance_id: 5,
                job_execution_id: 5,
                step_execution_id: 5,
                step_name: "step1",
                stop: &StopSignal::new(),
            },
        );
        let left = env.jobs().get_opt(&name).await.expect("get");
        assert!(
            left.is_none_or(|job| job.metadata.deletion_timestamp.is_some()),
            "the Job {name} is still there"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn the_active_deadline_fails_the_step() {
    in_namespace("deadline", |env| async move {
        let spec =
            shell("slow-csv", "echo started; sleep 60").active_deadline(Duration::from_secs(3));
        // Should the Job controller be late, the runner's own backstop fails it 10 s past the
        // deadline.
        let runner = env.runner().deadline_slack(Duration::from_secs(10));
        let started = Instant::now();
        let outcome = run_direct(&runner, &spec, &JobParameters::new(), 6)
            .await
            .expect("runs");
        assert!(!outcome.succeeded);
        assert!(
            outcome.reason.starts_with("DeadlineExceeded: "),
            "{}",
            outcome.reason
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// RBAC: the seed's 403, and the Role of deploy/base.

fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/base")
}

/// `kubectl apply -n <namespace>` of a file of deploy/base, with the RoleBinding's subject
/// namespace adapted.
fn kubectl_apply(env: &Env, file: &str) {
    let text = std::fs::read_to_string(rbac_dir().join(file)).expect("read deploy/base");
    let text = text.replace("namespace: batch", &format!("namespace: {}", env.namespace));
    let kubectl = Kubectl {
        kubeconfig: env.kubeconfig.clone(),
        namespace: env.namespace.clone(),
    };
    kubectl.ok(&["apply", "-f", "-"], Some(&text));
}

/// A client acting as the service account, with its token from the Secret the 1.20 token
/// controller creates.
async fn service_account_client(env: &Env, account: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let secret_name = accounts
            .get_opt(account)
            .await
            .expect("get the service account")
            .and_then(|sa| sa.secrets)
            .and_then(|refs| refs.into_iter().find_map(|r| r.name));
        if let Some(name) = secret_name
            && let Some(secret) = secrets.get_opt(&name).await.expect("get the token secret")
            && let Some(token) = secret.data.and_then(|mut data| data.remove("token"))
        {
            break String::from_utf8(token.0).expect("a UTF-8 token");
        }
        assert!(
            Instant::now() < deadline,
            "no token Secret for service account {account}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut config = env.config.clone();
    config.auth_info =
        serde_json::from_value(serde_json::json!({ "token": token })).expect("an auth info");
    Client::try_from(config).expect("a client")
}

fn forbidden(error: RunnerError) -> (String, KubeError) {
    let message = error.to_string();
    match error {
        RunnerError::Other(source) => match source.downcast::<KubeError>() {
            Ok(error) => (message, *error),
            Err(other) => panic!("not a Kubernetes error: {other}"),
        },
        other => panic!("not a Kubernetes error: {other:?}"),
    }
}

/// A Role granting everything the launcher needs but `watch` on jobs: the seed's situation.
async fn role_without_watch(env: &Env) {
    let roles: Api<Role> = Api::namespaced(env.client.clone(), &env.namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), &env.namespace);
    let meta = ObjectMeta {
        name: Some("no-watch".into()),
        ..ObjectMeta::default()
    };
    roles
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta.clone(),
                rules: Some(vec![
                    PolicyRule {
                        api_groups: Some(vec!["batch".into()]),
                        resources: Some(vec!["jobs".into()]),
                        verbs: vec![
                            "create".into(),
                            "get".into(),
                            "list".into(),
                            "delete".into(),
                        ],
                        ..PolicyRule::default()
                    },
                    PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec!["pods".into(), "pods/log".into()]),
                        verbs: vec!["get".into(), "list".into(), "watch".into()],
                        ..PolicyRule::default()
                    },
                ]),
            },
        )
        .await
        .expect("create the Role");
    bindings
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta,
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "no-watch".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: SERVICE_ACCOUNT.into(),
                    namespace: Some(env.namespace.clone()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .expect("create the RoleBinding");
}

/// Waits until the account may `list` jobs (RBAC changes reach the authorizer's cache quickly,
/// but not instantly).
async fn wait_for_rights(client: &Client, namespace: &str) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    while jobs.list(&ListParams::default()).await.is_err() {
        assert!(Instant::now() < deadline, "the Role never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn a_service_account_without_the_role_is_refused_and_told_what_to_grant() {
    in_namespace("rbac", |env| async move {
        kubectl_apply(&env, "serviceaccount.yaml");
        let client = service_account_client(&env, SERVICE_ACCOUNT).await;
        let runner = KubeRunner::new(client.clone(), env.namespace.clone());
        let spec = shell("rbac-csv", "echo granted");
        let ns = &env.namespace;

        // No rights at all: refused at the first call.
        let error = run_direct(&runner, &spec, &JobParameters::new(), 7)
            .await
            .expect_err("refused");
        let (message, error) = forbidden(error);
        assert!(
            message.starts_with(&format!(
                "Kubernetes refused to let service account {ns}:{SERVICE_ACCOUNT} get jobs.batch \
                 in namespace {ns} (403 Forbidden): grant it the Role in deploy/base/role.yaml \
                 (kubectl apply -k deploy/base/). The API server said: "
            )),
            "{message}"
        );
        assert!(matches!(error, KubeError::Forbidden { verb: "get", .. }));

        // As the seed recorded it: the step fails, and its exit message says what to grant.
        let (status, step) = launch(runner.clone(), spec.clone(), JobParameters::new()).await;
        assert_eq!(status, BatchStatus::Failed);
        assert_eq!(step.status, BatchStatus::Failed);
        assert!(
            step.exit_status.description.starts_with(&format!(
                "container job rbac-csv could not run: Kubernetes refused to let service account \
                 {ns}:{SERVICE_ACCOUNT} get jobs.batch in namespace {ns} (403 Forbidden): grant \
                 it the Role in deploy/base/role.yaml (kubectl apply -k deploy/base/)"
            )),
            "{}",
            step.exit_status.description
        );

        // The seed's case: it may create and list jobs, but not watch them.
        role_without_watch(&env).await;
        wait_for_rights(&client, ns).await;
        let error = run_direct(&runner, &spec, &JobParameters::new(), 8)
            .await
            .expect_err("refused");
        let (message, error) = forbidden(error);
        assert!(
            message.starts_with(&format!(
                "Kubernetes refused to let service account {ns}:{SERVICE_ACCOUNT} watch \
                 jobs.batch in namespace {ns} (403 Forbidden): grant it the Role in \
                 deploy/base/role.yaml"
            )),
            "{message}"
        );
        // The API server's own words, as the seed logged them.
        assert!(
            message.contains(&format!(
                "User \"system:serviceaccount:{ns}:{SERVICE_ACCOUNT}\" cannot watch"
            )),
            "{message}"
        );
        assert!(matches!(
            error,
            KubeError::Forbidden {
                verb: "watch",
                resource: "jobs.batch",
                ..
            }
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn the_same_account_with_the_deploy_role_succeeds() {
    in_namespace("role", |env| async move {
        kubectl_apply(&env, "serviceaccount.yaml");
        let client = service_account_client(&env, SERVICE_ACCOUNT).await;
        let runner = KubeRunner::new(client.clone(), env.namespace.clone());
        let spec = shell("rbac-csv", "echo granted; echo 'it failed' >&2; exit 4");

        let error = run_direct(&runner, &spec, &JobParameters::new(), 9)
            .await
            .expect_err("refused before the Role");
        assert!(error.to_string().contains("403 Forbidden"));

        kubectl_apply(&env, "role.yaml");
        kubectl_apply(&env, "rolebinding.yaml");
        wait_for_rights(&client, &env.namespace).await;
        // A failing child exercises every right: create, get, list and watch jobs, list and
        // watch pods, read the failed pod's log.
        let outcome = run_direct(&runner, &spec, &JobParameters::new(), 9)
            .await
            .expect("runs with the Role");
        assert!(!outcome.succeeded);
        assert_eq!(outcome.reason, "exit code 4");
        assert_eq!(outcome.log_tail, ["granted", "it failed"]);

        // And a restart of the same step replaces the failed child (delete is granted too).
        let ok = shell("rbac-csv", "echo granted");
        let outcome = run_direct(&runner, &ok, &JobParameters::new(), 9)
            .await
            .expect("runs with the Role");
        assert!(outcome.succeeded, "{outcome:?}");
        assert_eq!(outcome.log_tail, ["granted"]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Stop, ownership and configuration.

/// Waits until `check` holds, up to `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn running_pods(env: &Env, job: &str) -> usize {
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list pods")
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
}

fn context_name(spec_name: &str, instance: i64) -> String {
    child_job_name(
        spec_name,
        &RunContext {
            job_name: "e2eJob",
            job_instance_id: instance,
            job_execution_id: instance,
            step_execution_id: instance,
            step_name: "step1",
            stop: &StopSignal::new(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn stop_deletes_the_running_child_job_and_its_pods() {
    in_namespace("stop", |env| async move {
        let spec = shell("long-csv", "echo working; sleep 120");
        let resolved = spec.resolve(&JobParameters::new()).expect("resolves");
        let runner = env.runner();
        let stop = StopSignal::new();
        let name = context_name("long-csv", 10);
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let run = RunContext {
                    job_name: "e2eJob",
                    job_instance_id: 10,
                    job_execution_id: 10,
                    step_execution_id: 10,
                    step_name: "step1",
                    stop: &stop,
                };
                runner.run(&resolved, &run).await
            })
        };
        eventually(Duration::from_secs(30), "the pod runs", || async {
            running_pods(&env, &name).await > 0
        })
        .await;
        stop.request();
        let outcome = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("stops in time")
            .expect("the task")
            .expect("runs");
        assert!(outcome.stopped, "{outcome:?}");
        assert_eq!(outcome.log_tail, ["working"]);
        let jobs = env.jobs();
        eventually(Duration::from_secs(30), "the Job is gone", || async {
            jobs.get_opt(&name).await.expect("get").is_none()
        })
        .await;
        eventually(Duration::from_secs(60), "its pod is gone", || async {
            running_pods(&env, &name).await == 0
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn deleting_the_launcher_pod_deletes_its_children() {
    in_namespace("owner", |env| async move {
        // A stand-in for the launcher's pod.
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(env.client.clone(), &env.namespace);
        let launcher: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "csv2db-launcher"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "csv2db", "image": "csv2db:1", "command": ["sleep", "300"]}]}
        }))
        .expect("a pod");
        let launcher = pods
            .create(&PostParams::default(), &launcher)
            .await
            .expect("create the launcher pod");
        let runner = env.runner().launcher_pod(Some(LauncherPod {
            name: "csv2db-launcher".into(),
            uid: launcher.metadata.uid.clone().expect("uid"),
            namespace: Some(env.namespace.clone()),
        }));
        let spec = shell("child-csv", "sleep 120");
        let resolved = spec.resolve(&JobParameters::new()).expect("resolves");
        let name = context_name("child-csv", 11);
        let task = tokio::spawn(async move {
            let stop = StopSignal::new();
            let run = RunContext {
                job_name: "e2eJob",
                job_instance_id: 11,
                job_execution_id: 11,
                step_execution_id: 11,
                step_name: "step1",
                stop: &stop,
            };
            runner.run(&resolved, &run).await
        });
        let jobs = env.jobs();
        eventually(Duration::from_secs(30), "the child Job exists", || async {
            jobs.get_opt(&name).await.expect("get").is_some()
        })
        .await;
        let child = jobs.get(&name).await.expect("the child Job");
        let owners = child.metadata.owner_references.expect("an owner");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Pod");
        assert_eq!(owners[0].name, "csv2db-launcher");
        assert_eq!(owners[0].block_owner_deletion, None);

        // The launcher goes: the garbage collector takes its child with it, and the runner
        // (were it still alive) says so.
        pods.delete("csv2db-launcher", &DeleteParams::background())
            .await
            .expect("delete the launcher pod");
        eventually(
            Duration::from_secs(60),
            "the child Job is collected",
            || async { jobs.get_opt(&name).await.expect("get").is_none() },
        )
        .await;
        let outcome = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("ends in time")
            .expect("the task")
            .expect("runs");
        assert!(!outcome.succeeded);
        assert!(
            outcome.reason.starts_with("deleted: "),
            "{}",
            outcome.reason
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn from_environment_finds_the_cluster_and_namespace() {
    in_namespace("environ", |env| async move {
        // tests/e2e/run also exports KUBECONFIG; elsewhere this test has nothing to check.
        if std::env::var_os("KUBECONFIG").map(PathBuf::from) != Some(env.kubeconfig.clone()) {
            eprintln!("skipped: KUBECONFIG is not the e2e cluster's");
            return;
        }
        if !Path::new(batch_kube::kube::IN_CLUSTER_NAMESPACE_FILE).exists() {
            let runner = KubeRunner::from_environment(None)
                .await
                .expect("configured");
            // The kit's kubeconfig context names the `default` namespace.
            assert_eq!(runner.namespace(), "default");
        }
        let runner = KubeRunner::from_environment(Some(env.namespace.clone()))
            .await
            .expect("configured");
        assert_eq!(runner.namespace(), env.namespace);
        let outcome = run_direct(
            &runner,
            &shell("env-csv", "echo found"),
            &JobParameters::new(),
            12,
        )
        .await
        .expect("runs");
        assert!(outcome.succeeded, "{outcome:?}");
        assert_eq!(outcome.log_tail, ["found"]);
    })
    .await;
}
