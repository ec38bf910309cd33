//! The `csv2db` binary end to end: exit codes, listings, operator commands and secrets.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use batch_core::BatchStatus;
use batch_core::job::parameters::{JobParameter, JobParameters};
use batch_core::repository::{JobRepository, LaunchRequest};
use batch_core::status::ExitStatus;
use batch_repository::SpringBatchVersion;
use batch_testkit::TestDb;

/// Runs csv2db in `dir` with a clean configuration environment.
fn csv2db(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csv2db"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CSV2DB_CONFIG")
        .env_remove("SPRING_CONFIG_LOCATION")
        .env_remove("SPRING_DATASOURCE_URL")
        .env_remove("SPRING_DATASOURCE_PASSWORD")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run csv2db")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Records a FAILED execution of `job` as a launcher would.
async fn failed_execution(repository: &dyn JobRepository, job: &str, message: &str) -> i64 {
    let parameters = JobParameters::new()
        .with("jobFileLocation", JobParameter::string("/test/myfile1.csv"))
        .with("batchRun", JobParameter::string("1"));
    let mut execution = repository
        .create_job_execution(&LaunchRequest {
            job_name: job,
            parameters: &parameters,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("create");
    execution.status = BatchStatus::Failed;
    execution.exit_status = ExitStatus::failed().with_description(message);
    execution.start_time = Some(batch_core::time::now());
    execution.end_time = execution.start_time;
    repository
        .update_job_execution(&mut execution)
        .await
        .expect("update");
    execution.id
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().expect("dir");
    let output = csv2db(dir.path(), &["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for line in [
        "3  the job instance is already complete",
        "4  the job instance is already running",
        "5  the job stopped",
    ] {
        assert!(text.contains(line), "{text}");
    }
}

#[test]
fn an_unknown_job_is_a_usage_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let output = csv2db(dir.path(), &["noSuchJob", "a=1"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output).trim().lines().count(),
        1,
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("no job named 'noSuchJob'"));
    assert!(
        !dir.path().join("csv2db.db").exists(),
        "nothing may be written for a refused launch"
    );
}

#[test]
fn bad_usage_exits_2() {
    let dir = tempfile::tempdir().expect("dir");
    assert_eq!(
        csv2db(dir.path(), &["executions", "--status", "RUNNING"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        csv2db(dir.path(), &["execution", "abc"]).status.code(),
        Some(2)
    );
    assert_eq!(
        csv2db(dir.path(), &["--output", "yaml", "jobs"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn an_unknown_execution_exits_2() {
    let dir = tempfile::tempdir().expect("dir");
    for command in ["execution", "restart", "stop", "abandon"] {
        let output = csv2db(dir.path(), &[command, "999"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("no job execution with id 999"),
            "{command}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn listings_show_executions_steps_and_exit_messages() {
    let db = TestDb::sqlite();
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let id = failed_execution(
        repository.as_ref(),
        "importUserJob",
        "User \"system:serviceaccount:batch:default\" cannot watch jobs.batch",
    )
    .await;

    let output = csv2db(db.dir(), &["executions"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(
        table.lines().next().unwrap_or_default().contains("STATUS"),
        "{table}"
    );
    assert!(
        table.contains("importUserJob")
            && table.contains("FAILED")
            && table.contains("jobFileLocation=/test/myfile1.csv"),
        "{table}"
    );

    let output = csv2db(db.dir(), &["executions", "--status", "completed"]);
    assert!(
        !stdout(&output).contains("importUserJob"),
        "{}",
        stdout(&output)
    );

    let output = csv2db(db.dir(), &["-o", "json", "execution", &id.to_string()]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["id"], id);
    assert_eq!(json["status"], "FAILED");
    assert_eq!(json["job_key"].as_str().map(str::len), Some(32));
    assert!(
        json["exit_message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot watch jobs.batch")
    );
    assert_eq!(json["parameters"][0]["name"], "batchRun");
    assert_eq!(json["parameters"][0]["type"], "java.lang.String");

    let output = csv2db(db.dir(), &["execution", &id.to_string()]);
    assert!(
        stdout(&output).contains("cannot watch jobs.batch"),
        "{}",
        stdout(&output)
    );

    let output = csv2db(db.dir(), &["jobs", "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let listed = jobs
        .as_array()
        .expect("array")
        .iter()
        .find(|j| j["job_name"] == "importUserJob")
        .cloned()
        .expect("listed");
    assert_eq!(listed["execution_count"], 1);
    assert_eq!(listed["last_status"], "FAILED");
}

#[tokio::test]
async fn stop_and_abandon_follow_spring_batch_rules() {
    let db = TestDb::sqlite();
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let failed = failed_execution(repository.as_ref(), "importUserJob", "boom").await;
    let parameters = JobParameters::new().with("batchRun", JobParameter::string("7"));
    let running = repository
        .create_job_execution(&LaunchRequest {
            job_name: "importUserJob",
            parameters: &parameters,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("create")
        .id;

    let output = csv2db(db.dir(), &["stop", &failed.to_string()]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a FAILED execution cannot be stopped: {}",
        stderr(&output)
    );
    let output = csv2db(db.dir(), &["abandon", &running.to_string()]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a running execution cannot be abandoned: {}",
        stderr(&output)
    );

    let output = csv2db(db.dir(), &["stop", &running.to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("STOPPING"), "{}", stdout(&output));
    assert_eq!(
        repository
            .job_execution(running)
            .await
            .expect("read")
            .expect("row")
            .status,
        BatchStatus::Stopping
    );

    let output = csv2db(db.dir(), &["abandon", &failed.to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        repository
            .job_execution(failed)
            .await
            .expect("read")
            .expect("row")
            .status,
        BatchStatus::Abandoned
    );
}

#[test]
fn passwords_never_appear_in_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let output = csv2db(
        dir.path(),
        &[
            "--database-url",
            "postgres://batch:TopSecret1@127.0.0.1:9/batch",
            "executions",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!text.contains("TopSecret1"), "{text}");
    assert!(text.contains("batch:***@127.0.0.1:9"), "{text}");

    let properties = dir.path().join("batch.properties");
    std::fs::write(
        &properties,
        "spring.datasource.url=jdbc:postgresql://127.0.0.1:9/batch\nspring.datasource.username=sqladmin\nspring.datasource.password=TopSecret2\nopenshift.project.name=batch\nopenshift.pvc.name=spring-batch-claim\n",
    )
    .expect("write properties");
    let output = Command::new(env!("CARGO_BIN_EXE_csv2db"))
        .args(["-vv", "executions"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("SPRING_CONFIG_LOCATION", &properties)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!text.contains("TopSecret2"), "{text}");
    assert!(
        text.contains("127.0.0.1:9"),
        "the seed's properties file must be used: {text}"
    );
}
