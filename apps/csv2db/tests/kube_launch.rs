//! `csv2db kube launch --dry-run`: the launching Job, printed as YAML or JSON without any
//! cluster, and its copy in `deploy/launch/`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const PASSWORD: &str = "s3cret-Never-Printed";

/// Runs csv2db in `dir` with a clean configuration environment, a password in every place
/// csv2db reads one from, and no usable cluster configuration.
fn csv2db(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let properties = dir.join("batch.properties");
    std::fs::write(
        &properties,
        format!(
            "spring.datasource.url=jdbc:postgresql://postgresql:5432/batch\n\
             spring.datasource.username=sqladmin\n\
             spring.datasource.password={PASSWORD}\n"
        ),
    )
    .expect("write properties");
    let mut command = Command::new(env!("CARGO_BIN_EXE_csv2db"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CSV2DB_CONFIG")
        .env_remove("CSV2DB_IMAGE")
        .env_remove("CSV2DB_NAMESPACE")
        .env_remove("CSV2DB_PVC_NAME")
        .env_remove("CSV2DB_MOUNT_PATH")
        .env_remove("SPRING_DATASOURCE_URL")
        .env("SPRING_CONFIG_LOCATION", &properties)
        .env("SPRING_DATASOURCE_PASSWORD", PASSWORD)
        .env("CSV2DB_DATABASE_PASSWORD", PASSWORD)
        // Any attempt to reach a cluster fails.
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run csv2db")
}

/// `csv2db kube launch <args> --dry-run -o json`: the Job, and what was printed.
fn dry_run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Value, String) {
    let mut argv = vec!["kube", "launch"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--dry-run", "-o", "json"]);
    let output = csv2db(dir, &argv, env);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}: {stdout}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let json = serde_json::from_str(&stdout).expect("the dry run prints JSON");
    (json, stdout)
}

fn env_entry<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn the_dry_run_prints_the_launching_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (job, text) = dry_run(
        dir.path(),
        &[
            "importUserJob",
            "jobFileLocation=/test/myfile1.csv",
            "batchRun=1",
        ],
        &[],
    );
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    let name = job["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("import-user-job-"), "{name}");
    assert!(name.len() <= 63);
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "csv2db-launcher");
    assert_eq!(pod["restartPolicy"], "Never");
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("csv2db:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(container["command"], serde_json::json!(["csv2db"]));
    assert_eq!(
        container["args"],
        serde_json::json!([
            "importUserJob",
            "jobFileLocation=/test/myfile1.csv",
            "batchRun=1"
        ])
    );
    assert_eq!(
        env_entry(container, "SPRING_CONFIG_LOCATION")["value"],
        "/config/batch.properties"
    );
    assert_eq!(
        env_entry(container, "SPRING_DATASOURCE_PASSWORD")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "csv2db-db", "key": "password"})
    );
    for (var, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_UID", "metadata.uid"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ] {
        assert_eq!(
            env_entry(container, var)["valueFrom"]["fieldRef"]["fieldPath"],
            path
        );
    }
    for key in ["requests", "limits"] {
        assert_eq!(
            container["resources"][key],
            serde_json::json!({"cpu": "300m", "memory": "512Mi"})
        );
    }
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert!(security.get("runAsUser").is_none());
    // Nothing fixes a user, group or fsGroup: OpenShift's restricted-v2 picks them.
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    for fixed in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert!(pod_security.get(fixed).is_none(), "{fixed}");
    }

    let mounts = container["volumeMounts"].as_array().expect("mounts");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume_at = |path: &str| {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume")
            .clone()
    };
    assert_eq!(
        volume_at("/test")["persistentVolumeClaim"]["claimName"],
        "spring-batch-claim"
    );
    assert_eq!(volume_at("/config")["configMap"]["name"], "batch-config");
    assert_eq!(volume_at("/tmp")["emptyDir"], serde_json::json!({}));

    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    assert!(!text.contains("password="), "{text}");
}

#[test]
fn names_follow_the_job_and_its_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = |args: &[&str]| {
        let (job, _) = dry_run(dir.path(), args, &[]);
        job["metadata"]["name"].as_str().expect("name").to_owned()
    };
    let first = name(&[
        "importUserJob",
        "jobFileLocation=/test/myfile1.csv",
        "batchRun=1",
    ]);
    assert_eq!(
        first,
        name(&[
            "importUserJob",
            "jobFileLocation=/test/myfile1.csv",
            "batchRun=1"
        ])
    );
    assert_eq!(
        first,
        name(&[
            "importUserJob",
            "batchRun=1",
            "jobFileLocation=/test/myfile1.csv"
        ])
    );
    let second = name(&[
        "importUserJob",
        "jobFileLocation=/test/myfile2.csv",
        "batchRun=2",
    ]);
    assert_ne!(first, second);
}

#[test]
fn the_configuration_picks_image_namespace_and_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (job, text) = dry_run(
        dir.path(),
        &["importUserJob", "jobFileLocation=/test/$(HOME).csv"],
        &[
            ("CSV2DB_IMAGE", "quay.io/example/csv2db:1.2"),
            ("CSV2DB_NAMESPACE", "batch"),
            ("CSV2DB_PVC_NAME", "other-claim"),
        ],
    );
    assert_eq!(job["metadata"]["namespace"], "batch");
    let pod = &job["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "quay.io/example/csv2db:1.2");
    assert_eq!(
        env_entry(container, "CSV2DB_IMAGE")["value"],
        "quay.io/example/csv2db:1.2"
    );
    // Kubernetes would expand $(HOME); the argument is escaped so that it arrives as given.
    assert_eq!(container["args"][1], "jobFileLocation=/test/$$(HOME).csv");
    assert!(text.contains("other-claim"));
    assert!(!text.contains(PASSWORD));

    let (job, _) = dry_run(
        dir.path(),
        &[
            "importUserJob",
            "jobFileLocation=/test/x.csv",
            "--image",
            "registry.local/csv2db:dev",
        ],
        &[("CSV2DB_IMAGE", "quay.io/example/csv2db:1.2")],
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/csv2db:dev"
    );
}

#[test]
fn bad_launches_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = csv2db(
        dir.path(),
        &["kube", "launch", "noSuchJob", "--dry-run"],
        &[],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(unknown.stdout.is_empty());
    let both = csv2db(
        dir.path(),
        &[
            "kube",
            "launch",
            "importUserJob",
            "jobFileLocation=/test/x.csv",
            "--dry-run",
            "--follow",
        ],
        &[],
    );
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn the_dry_run_prints_yaml_that_reads_back_as_the_same_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Values YAML would read as numbers, booleans, nulls or structure unless quoted.
    let args = [
        "importUserJob",
        "jobFileLocation=/test/a: b #c [1].csv",
        "batchRun=1",
        "--image",
        "0775",
    ];
    let env = [("CSV2DB_NAMESPACE", "null"), ("CSV2DB_PVC_NAME", "true")];
    let (json, _) = dry_run(dir.path(), &args, &env);
    assert_eq!(json["metadata"]["namespace"], "null");
    let mut argv = vec!["kube", "launch"];
    argv.extend_from_slice(&args);
    argv.push("--dry-run");
    let output = csv2db(dir.path(), &argv, &env);
    assert!(output.status.success(), "{output:?}");
    let yaml = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        yaml.starts_with("apiVersion: batch/v1\nkind: Job\n"),
        "{yaml}"
    );
    let read_back: Value = serde_saphyr::from_str(&yaml).expect("the dry run prints YAML");
    assert_eq!(read_back, json, "{yaml}");
}

#[test]
fn deploy_holds_the_launching_job_that_the_dry_run_prints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/launch/import-user-job.yaml");
    let committed = std::fs::read_to_string(&path).expect("deploy/launch/import-user-job.yaml");
    let manifest: String = committed
        .lines()
        .skip_while(|line| line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let output = csv2db(
        dir.path(),
        &[
            "kube",
            "launch",
            "importUserJob",
            "jobFileLocation=/test/myfile1.csv",
            "batchRun=1",
            "--dry-run",
        ],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        manifest == printed,
        "deploy/launch/import-user-job.yaml is out of date: replace everything below its \
         comment with what `csv2db kube launch importUserJob jobFileLocation=/test/myfile1.csv \
         batchRun=1 --dry-run` prints:\n{printed}"
    );
}
