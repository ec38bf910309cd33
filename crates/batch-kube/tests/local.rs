//! The local backend with real processes, and a container job step inside a real job on SQLite.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_core::BatchStatus;
use batch_core::job::Job;
use batch_core::job::parameters::JobParameters;
use batch_core::step::{StepExecution, StopSignal};
use batch_kube::step::{EXIT_CODE_KEY, REASON_KEY};
use batch_kube::{
    ContainerJobError, ContainerJobSpec, ContainerJobStep, ContainerOutcome, ContainerRunner,
    LocalRunner, RunContext, RunnerError,
};
use batch_testkit::{TestDb, launch_single_step, string_parameters};

fn shell(name: &str, script: &str) -> ContainerJobSpec {
    ContainerJobSpec::new(name, "busybox").command(["sh", "-c", script])
}

async fn run_with(
    runner: &LocalRunner,
    spec: &ContainerJobSpec,
    params: &JobParameters,
    stop: &StopSignal,
) -> Result<ContainerOutcome, RunnerError> {
    let resolved = spec.resolve(params).expect("the spec resolves");
    runner
        .run(&resolved, &RunContext::standalone("test-step", stop))
        .await
}

async fn run(spec: &ContainerJobSpec, params: &JobParameters) -> ContainerOutcome {
    run_with(&LocalRunner::new(), spec, params, &StopSignal::new())
        .await
        .expect("the process runs")
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// True while `pid` is a live (not zombie) process. Linux only; elsewhere assumed gone.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// True while `pid` exists at all, zombies included.
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_from_a_job_parameter_reaches_the_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("people.csv");
    let spec = shell(
        "generate-csv",
        "printf '%s|%s|%s\\n' \"$FILENAME\" \"$COUNT\" \"$FIXED\" > \"$FILENAME\"; echo written",
    )
    .env_parameter("FILENAME", "jobFileLocation")
    .env_parameter_or("COUNT", "count", "10")
    .env_literal("FIXED", "fixed value");
    let outcome = run(
        &spec,
        &string_parameters(&[("jobFileLocation", target.to_str().expect("utf-8 path"))]),
    )
    .await;
    assert!(outcome.succeeded, "{outcome:?}");
    assert!(!outcome.stopped);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.reason, "exit code 0");
    assert_eq!(outcome.log_tail, ["written"]);
    assert_eq!(
        std::fs::read_to_string(&target).expect("the process wrote the file"),
        format!("{}|10|fixed value\n", target.display())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inherited_environment_is_kept() {
    // PATH is inherited (sh is found through it) and HOME too.
    let outcome = run(
        &shell("env", "test -n \"$HOME\" && echo \"home=yes\""),
        &JobParameters::new(),
    )
    .await;
    assert!(outcome.succeeded, "{outcome:?}");
    assert_eq!(outcome.log_tail, ["home=yes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_exit_code_comes_with_the_last_fifty_lines() {
    let spec = shell(
        "fail-csv",
        "i=1; while [ $i -le 500 ]; do echo \"line $i\"; i=$((i+1)); done; \
         echo 'something broke' >&2; exit 3",
    );
    let outcome = run(&spec, &JobParameters::new()).await;
    assert!(!outcome.succeeded);
    assert!(!outcome.stopped);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.reason, "exit code 3");
    assert_eq!(outcome.log_tail.len(), 50);
    assert_eq!(outcome.log_tail[0], "line 452");
    assert_eq!(outcome.log_tail[48], "line 500");
    // stderr is merged into the same log, in order.
    assert_eq!(outcome.log_tail[49], "something broke");

    let message = ContainerJobError::Failed {
        job: "fail-csv".into(),
        outcome,
    }
    .to_string();
    let mut lines = message.lines();
    assert_eq!(
        lines.next(),
        Some("container job fail-csv failed: exit code 3")
    );
    assert_eq!(lines.next(), Some("Last lines of its log:"));
    assert_eq!(lines.next(), Some("line 452"));
    assert!(message.ends_with("line 499\nline 500\nsomething broke"));
    assert!(!message.contains("line 451\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_deadline_kills_the_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("pid");
    let child_file = dir.path().join("child");
    // `$$$$` is `$$` once Kubernetes-style expansion has turned `$$` into `$`.
    let script = format!(
        "echo $$$$ > {pid}; sleep 30 & echo $! > {child}; echo started; wait",
        pid = pid_file.display(),
        child = child_file.display()
    );
    let spec = shell("slow", &script).active_deadline(Duration::from_secs(1));
    let started = Instant::now();
    let outcome = run(&spec, &JobParameters::new()).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert!(!outcome.succeeded);
    assert!(!outcome.stopped);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.reason, "DeadlineExceeded: ran longer than 1 s");
    assert_eq!(outcome.log_tail, ["started"]);

    if cfg!(target_os = "linux") {
        let shell_pid = read_pid(&pid_file);
        let sleep_pid = read_pid(&child_file);
        // The shell was reaped: not even a zombie is left.
        assert!(!exists(shell_pid), "process {shell_pid} was not reaped");
        // The sleep it started was killed with it (its new parent reaps it).
        let gone_by = Instant::now() + Duration::from_secs(2);
        while is_running(sleep_pid) && Instant::now() < gone_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!is_running(sleep_pid), "sleep {sleep_pid} survived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_kills_a_long_process_promptly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$$$ > {pid}; echo working; sleep 60; echo never",
        pid = pid_file.display()
    );
    let spec = shell("long", &script);
    let stop = StopSignal::new();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            run_with(&LocalRunner::new(), &spec, &JobParameters::new(), &stop).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requested = Instant::now();
    stop.request();
    let outcome = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ends promptly")
        .expect("the task")
        .expect("the process ran");
    assert!(
        requested.elapsed() < Duration::from_secs(1),
        "{:?}",
        requested.elapsed()
    );
    assert!(outcome.stopped);
    assert!(!outcome.succeeded);
    assert_eq!(outcome.reason, "stopped");
    assert_eq!(outcome.log_tail, ["working"]);
    if cfg!(target_os = "linux") {
        let pid = read_pid(&pid_file);
        assert!(!exists(pid), "process {pid} was not reaped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_named() {
    let spec = ContainerJobSpec::new("missing", "img")
        .command(["csv2db-no-such-program-7f3a"])
        .arg("x");
    let error = run_with(
        &LocalRunner::new(),
        &spec,
        &JobParameters::new(),
        &StopSignal::new(),
    )
    .await
    .expect_err("cannot run");
    assert!(
        matches!(&error, RunnerError::ProgramNotFound { program } if program == "csv2db-no-such-program-7f3a"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "program 'csv2db-no-such-program-7f3a' not found"
    );

    let empty = ContainerJobSpec::new("empty", "img");
    let error = run_with(
        &LocalRunner::new(),
        &empty,
        &JobParameters::new(),
        &StopSignal::new(),
    )
    .await
    .expect_err("nothing to run");
    assert!(error.to_string().contains("has no command"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_are_expanded_as_kubernetes_does() {
    let spec = ContainerJobSpec::new("expand", "img")
        .command(["sh", "-c"])
        .arg("printf '%s\\n' '$(GREETING), $(NAME)! $(UNDEFINED) $$(GREETING) cost: $5'")
        .env_literal("GREETING", "Hello")
        .env_parameter("NAME", "who");
    let outcome = run(&spec, &string_parameters(&[("who", "World")])).await;
    assert!(outcome.succeeded, "{outcome:?}");
    assert_eq!(
        outcome.log_tail,
        ["Hello, World! $(UNDEFINED) $(GREETING) cost: $5"]
    );

    // Only args are given: the first one is the program.
    let args_only = ContainerJobSpec::new("args", "img").args(["sh", "-c", "echo $(MSG)"]);
    let outcome = run(
        &args_only.env_literal("MSG", "from-args"),
        &JobParameters::new(),
    )
    .await;
    assert_eq!(outcome.log_tail, ["from-args"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv2db_runs_the_current_executable() {
    // In this test, the current executable is the test binary: ask it for its test list.
    let spec = ContainerJobSpec::new("self", "csv2db:latest").command(["csv2db", "--list"]);
    let outcome = run(&spec, &JobParameters::new()).await;
    assert!(outcome.succeeded, "{outcome:?}");
    assert!(
        outcome
            .log_tail
            .iter()
            .any(|line| line == "csv2db_runs_the_current_executable: test"),
        "{:?}",
        outcome.log_tail
    );

    let runner = LocalRunner::new().self_executable("sh");
    let spec = ContainerJobSpec::new("self", "img").command(["csv2db", "-c", "echo overridden"]);
    let outcome = run_with(&runner, &spec, &JobParameters::new(), &StopSignal::new())
        .await
        .expect("runs");
    assert_eq!(outcome.log_tail, ["overridden"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_are_retried_up_to_the_backoff_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let attempts = dir.path().join("attempts");
    let runner = LocalRunner::new().retry_delay(Duration::from_millis(20));
    let always_failing = shell(
        "retry",
        &format!("echo try >> {}; echo failing; exit 1", attempts.display()),
    )
    .backoff_limit(2);
    let outcome = run_with(
        &runner,
        &always_failing,
        &JobParameters::new(),
        &StopSignal::new(),
    )
    .await
    .expect("runs");
    assert!(!outcome.succeeded);
    assert_eq!(outcome.exit_code, Some(1));
    assert_eq!(outcome.reason, "exit code 1 (after 3 attempts)");
    assert_eq!(outcome.log_tail, ["failing"]);
    assert_eq!(
        std::fs::read_to_string(&attempts)
            .expect("attempts")
            .lines()
            .count(),
        3
    );

    let marker = dir.path().join("marker");
    let second_time_lucky = shell(
        "retry",
        &format!(
            "if [ -f {m} ]; then echo ok; exit 0; fi; touch {m}; exit 1",
            m = marker.display()
        ),
    )
    .backoff_limit(1);
    let outcome = run_with(
        &runner,
        &second_time_lucky,
        &JobParameters::new(),
        &StopSignal::new(),
    )
    .await
    .expect("runs");
    assert!(outcome.succeeded, "{outcome:?}");
    assert_eq!(outcome.log_tail, ["ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_left_behind_do_not_hold_the_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child_file = dir.path().join("child");
    let spec = shell(
        "leaves-a-child",
        &format!("sleep 30 & echo $! > {}; echo done", child_file.display()),
    );
    let started = Instant::now();
    let outcome = run(&spec, &JobParameters::new()).await;
    assert!(outcome.succeeded, "{outcome:?}");
    assert_eq!(outcome.log_tail, ["done"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    if cfg!(target_os = "linux") {
        let sleep_pid = read_pid(&child_file);
        let gone_by = Instant::now() + Duration::from_secs(2);
        while is_running(sleep_pid) && Instant::now() < gone_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!is_running(sleep_pid), "sleep {sleep_pid} survived");
    }
}

// ---------------------------------------------------------------------------------------------
// Inside a real job, on a SQLite repository.

fn job_with(spec: ContainerJobSpec) -> Job {
    Job::builder("containerJob")
        .step(ContainerJobStep::new(
            "step1",
            spec,
            Arc::new(LocalRunner::new()),
        ))
        .build()
}

async fn launch(
    db: &TestDb,
    spec: ContainerJobSpec,
    parameters: JobParameters,
    stop: StopSignal,
) -> (BatchStatus, StepExecution) {
    launch_single_step(
        &db.job_repository().await,
        &job_with(spec),
        parameters,
        stop,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_container_job_fails_its_step_with_the_log_tail() {
    let db = TestDb::sqlite();
    let spec = shell(
        "fail-csv",
        "i=1; while [ $i -le 60 ]; do echo \"row $i\"; i=$((i+1)); done; \
         echo \"cannot write $FILENAME\" >&2; exit 3",
    )
    .env_parameter("FILENAME", "jobFileLocation");
    let (status, step) = launch(
        &db,
        spec,
        string_parameters(&[("jobFileLocation", "/test/myfile1.csv")]),
        StopSignal::new(),
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
    assert_eq!(step.counters.commit, 0);
    assert_eq!(step.counters.rollback, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeding_container_job_completes_its_step() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("people.csv");
    let spec = shell("generate-csv", "echo 'Jill,Doe' > \"$FILENAME\"")
        .env_parameter("FILENAME", "jobFileLocation");
    let (status, step) = launch(
        &db,
        spec,
        string_parameters(&[("jobFileLocation", target.to_str().expect("utf-8 path"))]),
        StopSignal::new(),
    )
    .await;
    assert_eq!(status, BatchStatus::Completed);
    assert_eq!(step.status, BatchStatus::Completed);
    assert_eq!(step.exit_status.code, "COMPLETED");
    assert_eq!(step.context.get_i64(EXIT_CODE_KEY), Some(0));
    assert_eq!(step.context.get_str(REASON_KEY), Some("exit code 0"));
    assert_eq!(
        step.context.get_str("batch.stepType"),
        Some("csv2db.ContainerJobStep")
    );
    assert_eq!(step.counters.commit, 1);
    assert_eq!(step.counters.rollback, 0);
    assert_eq!(
        std::fs::read_to_string(&target).expect("written"),
        "Jill,Doe\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_job_parameter_fails_the_step_naming_it() {
    let db = TestDb::sqlite();
    let spec = shell("generate-csv", "true").env_parameter("FILENAME", "jobFileLocation");
    let (status, step) = launch(
        &db,
        spec,
        string_parameters(&[("batchRun", "1")]),
        StopSignal::new(),
    )
    .await;
    assert_eq!(status, BatchStatus::Failed);
    assert_eq!(
        step.exit_status.description,
        "container job generate-csv: environment variable FILENAME takes its value from job \
         parameter 'jobFileLocation', which is not set"
    );
    assert_eq!(step.context.get_i64(EXIT_CODE_KEY), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_job_kills_the_container_job_and_stops_the_step() {
    let db = TestDb::sqlite();
    let spec = shell("long", "echo working; sleep 60");
    let stop = StopSignal::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.request();
        });
    }
    let started = Instant::now();
    let (status, step) = launch(&db, spec, JobParameters::new(), stop).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, BatchStatus::Stopped);
    assert_eq!(step.status, BatchStatus::Stopped);
    assert_eq!(step.context.get_str(REASON_KEY), Some("stopped"));
}
