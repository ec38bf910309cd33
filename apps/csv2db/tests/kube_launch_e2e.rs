//! `csv2db kube launch --follow` end to end, as an operator runs it, against the real control
//! plane of `../shared/k8s-local` (its fake kubelet runs pods' commands as local processes, so
//! `tests/e2e/run` puts this build's `csv2db` on the kubelet's PATH, starts a throwaway
//! PostgreSQL and sets `CSV2DB_E2E_KUBECONFIG` and `DATABASE_URL`).
//!
//! The test applies `deploy/base` (ServiceAccount, Role, RoleBinding, ConfigMap) with kubectl
//! into a namespace of its own, then launches importUserJob: the launcher runs in a pod under
//! its own service account, its step1 child Job writes the CSV onto the shared claim, step2
//! imports it into PostgreSQL, and the exit code comes back. Without the RoleBinding the run
//! fails with the Role named in its exit message; with it back, launching again restarts it.
//!
//! Ignored by default; with `--include-ignored` but without `CSV2DB_E2E_KUBECONFIG` it says so
//! and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use batch_testkit::{Kubectl, TestDb};

const KUBECONFIG_VAR: &str = "CSV2DB_E2E_KUBECONFIG";
/// How long one launch may take, from creating the Job to its pod's exit.
const LAUNCH_DEADLINE: Duration = Duration::from_secs(240);
const ROWS: i64 = 300;

/// A namespace of the test's own with `deploy/base` applied, deleted on drop.
struct Cluster {
    kubectl: Kubectl,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Creates the namespace, the database password's Secret, and the base with its ConfigMap
    /// pointing at `database_url` (without its password, which goes into the Secret) and a
    /// claim of the namespace's name.
    fn new(kubeconfig: PathBuf, database_url: &str) -> Cluster {
        let (database_url, password) = split_password(database_url);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let namespace = format!("csv2db-e2e-launch-{:x}", nanos & 0xfffff);
        let cluster = Cluster {
            kubectl: Kubectl {
                kubeconfig,
                namespace,
            },
            dir: tempfile::tempdir().expect("temp dir"),
        };
        cluster
            .kubectl
            .ok(&["create", "namespace", &cluster.kubectl.namespace], None);
        std::fs::write(
            cluster.properties(),
            format!(
                "spring.datasource.url={database_url}\n\
                 openshift.project.name={ns}\n\
                 openshift.pvc.name={ns}\n",
                ns = cluster.kubectl.namespace
            ),
        )
        .expect("write batch.properties");
        cluster.kubectl.ok(
            &[
                "create",
                "secret",
                "generic",
                "csv2db-db",
                &format!(
                    "--from-literal=password={}",
                    password.as_deref().unwrap_or("unused-with-trust-auth")
                ),
            ],
            None,
        );
        cluster.apply_base();
        cluster.wait_for_token("csv2db-launcher");
        cluster
    }

    /// The configuration both the operator's csv2db and the launcher pod read.
    fn properties(&self) -> PathBuf {
        self.dir.path().join("batch.properties")
    }

    /// Renders `deploy/base` in an overlay that sets the namespace (the RoleBinding's subject
    /// too, as README says) and replaces the ConfigMap's properties, and applies it.
    fn apply_base(&self) {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/base");
        let base = base.canonicalize().expect("deploy/base");
        let overlay = self.dir.path().join("overlay");
        std::fs::create_dir_all(&overlay).expect("overlay dir");
        let overlay = overlay.canonicalize().expect("overlay dir");
        // kustomize takes no absolute paths: climb from the overlay to / and down to the base.
        let climb = "../".repeat(overlay.components().count() - 1);
        let base = format!(
            "{climb}{}",
            base.display().to_string().trim_start_matches('/')
        );
        std::fs::copy(self.properties(), overlay.join("batch.properties")).expect("copy");
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\n\
                 kind: Kustomization\n\
                 resources:\n  - {base}\n\
                 transformers:\n\
                 \x20 - |-\n\
                 \x20   apiVersion: builtin\n\
                 \x20   kind: NamespaceTransformer\n\
                 \x20   metadata: {{ name: namespace, namespace: {namespace} }}\n\
                 \x20   setRoleBindingSubjects: allServiceAccounts\n\
                 configMapGenerator:\n\
                 \x20 - name: batch-config\n\
                 \x20   behavior: replace\n\
                 \x20   files: [batch.properties]\n\
                 \x20   options: {{ disableNameSuffixHash: true }}\n",
                namespace = self.kubectl.namespace
            ),
        )
        .expect("write kustomization");
        let rendered = self
            .kubectl
            .ok(&["kustomize", &overlay.display().to_string()], None);
        self.kubectl.ok(&["apply", "-f", "-"], Some(&rendered));
    }

    /// Waits until the service account has its token Secret (1.20 refuses pods before).
    fn wait_for_token(&self, account: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let secrets = self.kubectl.ok(
                &[
                    "get",
                    "serviceaccount",
                    account,
                    "-o",
                    "jsonpath={.secrets[*].name}",
                ],
                None,
            );
            if !secrets.trim().is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "no token for {account}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `csv2db kube launch importUserJob <parameters> <options>`, with the operator's
    /// kubeconfig and the test's configuration.
    fn kube_launch(&self, parameters: &[&str], options: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_csv2db"));
        command
            .args(["kube", "launch", "importUserJob"])
            .args(parameters)
            .args(options)
            .env("KUBECONFIG", &self.kubectl.kubeconfig)
            .env("SPRING_CONFIG_LOCATION", self.properties())
            .env_remove("DATABASE_URL")
            .env_remove("CSV2DB_CONFIG")
            .env_remove("CSV2DB_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST");
        command
    }

    /// `csv2db kube launch importUserJob <parameters> --follow`, as the operator runs it.
    fn launch(&self, parameters: &[&str]) -> Launch {
        self.launch_with(parameters, &[])
    }

    /// [`Cluster::launch`] with more options.
    fn launch_with(&self, parameters: &[&str], options: &[&str]) -> Launch {
        let options: Vec<&str> = options.iter().copied().chain(["--follow"]).collect();
        let child = self
            .kube_launch(parameters, &options)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run csv2db kube launch");
        let output = wait_with_deadline(child, LAUNCH_DEADLINE);
        Launch {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The launcher Job's name for `parameters`, as `--dry-run` prints it.
    fn launcher_job_name(&self, parameters: &[&str]) -> String {
        let output = self
            .kube_launch(parameters, &["--dry-run", "-o", "json"])
            .output()
            .expect("run csv2db kube launch --dry-run");
        assert!(output.status.success(), "{output:?}");
        let job: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        job["metadata"]["name"].as_str().expect("a name").to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let output = self.kubectl.run(
            &[
                "delete",
                "namespace",
                &self.kubectl.namespace,
                "--wait=false",
            ],
            None,
        );
        if !output.status.success() {
            eprintln!(
                "cannot delete namespace {}: {}",
                self.kubectl.namespace,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// `database_url` without the password of its user information, and that password.
fn split_password(database_url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = database_url.split_once("://") else {
        return (database_url.to_owned(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (database_url.to_owned(), None);
    };
    match rest[..at].split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}{}", &rest[at..]),
            Some(password.to_owned()),
        ),
        None => (database_url.to_owned(), None),
    }
}

/// What `csv2db kube launch --follow` returned.
#[derive(Debug)]
struct Launch {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Waits for `child` while threads drain its output, killing it after `deadline`.
fn wait_with_deadline(child: std::process::Child, deadline: Duration) -> Output {
    let pid = child.id();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(deadline) {
        Ok(output) => output.expect("csv2db's output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let output = result
                .recv_timeout(Duration::from_secs(10))
                .map(|output| output.expect("csv2db's output"));
            panic!("csv2db kube launch did not finish in {deadline:?}: {output:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a cluster: run tests/e2e/run (sets CSV2DB_E2E_KUBECONFIG)"]
async fn an_operator_launches_fails_and_restarts_import_user_job() {
    let Some(kubeconfig) = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from) else {
        eprintln!("skipped: needs a cluster: run tests/e2e/run (sets {KUBECONFIG_VAR})");
        return;
    };
    let db = TestDb::postgres().await;
    let cluster = Cluster::new(kubeconfig, &db.url);
    let count = format!("count={ROWS}");

    // A run: the launcher pod under its own account, step1's child Job, rows in PostgreSQL.
    let first = ["jobFileLocation=/test/run1.csv", "batchRun=1", &count];
    let launch = cluster.launch(&first);
    assert_eq!(launch.code, Some(0), "{launch:?}");
    assert!(launch.stderr.contains("exited with code 0"), "{launch:?}");
    let launcher = cluster.launcher_job_name(&first);
    let account = cluster.kubectl.ok(
        &[
            "get",
            "pods",
            "-l",
            &format!("job-name={launcher}"),
            "-o",
            "jsonpath={.items[*].spec.serviceAccountName}",
        ],
        None,
    );
    assert_eq!(account, "csv2db-launcher");
    // step1 ran as a child Job of the launcher's own, which succeeded.
    let children = cluster.kubectl.ok(
        &[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.succeeded} {end}",
        ],
        None,
    );
    assert!(
        children
            .split_whitespace()
            .any(|job| job.starts_with("generate-csv-") && job.ends_with("=1")),
        "{children}"
    );
    assert_eq!(db.count("select count(*) from people").await, ROWS);
    assert_eq!(
        db.query_strings(
            "select s.step_name, s.status, s.write_count from batch_step_execution s \
             order by s.step_execution_id"
        )
        .await,
        vec![
            vec!["step1".to_owned(), "COMPLETED".to_owned(), "0".to_owned()],
            vec!["step2".to_owned(), "COMPLETED".to_owned(), ROWS.to_string()],
        ]
    );

    // Without the RoleBinding, step1 cannot create its child Job: the run fails, says why,
    // and the pod's exit code comes back.
    cluster
        .kubectl
        .ok(&["delete", "rolebinding", "csv2db-launcher"], None);
    let second = ["jobFileLocation=/test/run2.csv", "batchRun=2", &count];
    let failed = cluster.launch(&second);
    assert_eq!(failed.code, Some(1), "{failed:?}");
    let message = db
        .scalar(
            "select e.exit_message from batch_job_execution e \
             where e.status = 'FAILED'",
        )
        .await;
    assert!(
        message.contains("403") && message.contains("deploy/base/role.yaml"),
        "{message}"
    );
    assert!(failed.stdout.contains("403"), "{failed:?}");

    // A second identical launch is refused while the failed run's Job is there (exit 2), and
    // so is a relaunch of the completed one (exit 3, the instance is complete).
    let refused = cluster.launch(&second);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("failed") && refused.stderr.contains("--replace"),
        "{refused:?}"
    );
    let complete = cluster.launch_with(&first, &["--replace"]);
    assert_eq!(complete.code, Some(3), "{complete:?}");
    assert!(
        complete.stderr.contains("already completed"),
        "{complete:?}"
    );

    // With the Role bound again, relaunching with --replace restarts the failed run.
    cluster.apply_base();
    let restarted = cluster.launch_with(&second, &["--replace"]);
    assert!(
        restarted.stdout.contains(&format!(
            "job.batch/{} deleted (it had failed)",
            cluster.launcher_job_name(&second)
        )),
        "{restarted:?}"
    );
    assert_eq!(restarted.code, Some(0), "{restarted:?}");
    assert_eq!(db.count("select count(*) from people").await, 2 * ROWS);
    assert_eq!(
        db.query_strings(
            "select p.parameter_value, e.status from batch_job_execution e \
             join batch_job_execution_params p on p.job_execution_id = e.job_execution_id \
             where p.parameter_name = 'batchRun' order by e.job_execution_id"
        )
        .await,
        vec![
            vec!["1".to_owned(), "COMPLETED".to_owned()],
            vec!["2".to_owned(), "FAILED".to_owned()],
            vec!["2".to_owned(), "COMPLETED".to_owned()],
        ]
    );

    // A launcher whose image cannot be pulled fails the launch at once, saying why.
    let third = ["jobFileLocation=/test/run3.csv", "batchRun=3", &count];
    let unpulled = cluster.launch_with(&third, &["--image", "bad/csv2db:0"]);
    assert_eq!(unpulled.code, Some(1), "{unpulled:?}");
    assert!(
        unpulled.stderr.contains("cannot start: ErrImagePull")
            || unpulled.stderr.contains("cannot start: ImagePullBackOff"),
        "{unpulled:?}"
    );
}
