//! The JobRepository contract and the engine's launch, restart and recovery rules, on real
//! SQLite files and a real PostgreSQL database.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use batch_core::error::{LaunchRefusal, RepositoryError};
use batch_core::job::Job;
use batch_core::job::parameters::{JobParameter, JobParameters};
use batch_core::launch::{JobLauncher, JobOperator, JobRegistry, LaunchError, LaunchSettings};
use batch_core::repository::{ExecutionFilter, JobRepository, LaunchRequest};
use batch_core::step::tasklet::{RepeatStatus, Tasklet, TaskletStep};
use batch_core::step::{StepContext, StepError, StopSignal};
use batch_core::{BatchStatus, ExitStatus};
use batch_repository::SpringBatchVersion;
use batch_testkit::{TestDb, on_both_databases, string_parameters};

/// Finishes at once.
struct Done;
#[async_trait]
impl Tasklet for Done {
    async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        Ok(RepeatStatus::Finished)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not write the report")]
struct ReportError(#[source] std::io::Error);

/// Fails (with a cause) while `failures` is above zero, recording how far it got in its context.
struct FailWhileCounting {
    failures: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}
#[async_trait]
impl Tasklet for FailWhileCounting {
    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let position = ctx
            .step_execution()
            .context
            .get_i64("position")
            .unwrap_or(0);
        ctx.step_execution_mut()
            .context
            .put("position", position + 5);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            ctx.save().await?;
            return Err(ReportError(std::io::Error::other("disk full")).into());
        }
        Ok(RepeatStatus::Finished)
    }
}

/// Keeps going in short iterations until stopped.
struct UntilStopped;
#[async_trait]
impl Tasklet for UntilStopped {
    async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(RepeatStatus::Continuable)
    }
}

/// Sleeps, then finishes.
struct Sleep(Duration);
#[async_trait]
impl Tasklet for Sleep {
    async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        tokio::time::sleep(self.0).await;
        Ok(RepeatStatus::Finished)
    }
}

fn launcher(repository: Arc<dyn JobRepository>) -> JobLauncher {
    JobLauncher::new(repository, LaunchSettings::default())
}

fn seed_parameters() -> JobParameters {
    string_parameters(&[("jobFileLocation", "/test/myfile2.csv"), ("batchRun", "2")])
}

async fn schema_is_created_and_keys_and_parameters_are_stored_as_spring_batch_does(db: TestDb) {
    for version in [SpringBatchVersion::V6, SpringBatchVersion::V5] {
        let db = if version == SpringBatchVersion::V6 {
            &db
        } else {
            &db.renew().await
        };
        let repository = db.connect(version).await.job_repository();
        let job = Job::builder("importUserJob")
            .step(TaskletStep::new("step1", Done))
            .build();
        let execution = launcher(repository.clone())
            .run(&job, seed_parameters(), StopSignal::new())
            .await
            .expect("launch");
        assert_eq!(execution.status, BatchStatus::Completed);
        let expected_key = match version {
            SpringBatchVersion::V6 => "6403516befe52ba404e72c2afb9145f8",
            SpringBatchVersion::V5 => "722ee0deaad528e656158d90f4134b1f",
        };
        assert_eq!(execution.instance.job_key, expected_key);
        let rows = db
            .query_strings(
                "SELECT PARAMETER_NAME, PARAMETER_TYPE, PARAMETER_VALUE, IDENTIFYING \
                 FROM BATCH_JOB_EXECUTION_PARAMS ORDER BY PARAMETER_NAME",
            )
            .await;
        assert_eq!(
            rows,
            vec![
                vec!["batchRun", "java.lang.String", "2", "Y"],
                vec![
                    "jobFileLocation",
                    "java.lang.String",
                    "/test/myfile2.csv",
                    "Y"
                ],
            ]
        );
        let keys = db
            .query_strings("SELECT JOB_KEY FROM BATCH_JOB_INSTANCE")
            .await;
        assert_eq!(keys, vec![vec![expected_key]]);
        let sequence = db.object_names().await;
        assert!(
            sequence.contains(&version.job_instance_sequence().to_ascii_lowercase()),
            "{sequence:?}"
        );
    }
}

async fn a_schema_of_the_other_release_is_refused(db: TestDb) {
    drop(db.connect(SpringBatchVersion::V5).await);
    let error = batch_repository::connect(&batch_repository::ConnectOptions {
        url: db.url.clone(),
        version: SpringBatchVersion::V6,
        ..Default::default()
    })
    .await
    .err()
    .expect("a v5 schema must be refused when v6 is configured");
    let message = error.to_string();
    assert!(
        message.contains("BATCH_JOB_INSTANCE_SEQ") && message.contains("spring_batch_version = 5"),
        "{message}"
    );
}

async fn contexts_are_jackson_json(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let failures = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let job = Job::builder("ctx")
        .step(TaskletStep::new("s", FailWhileCounting { failures, runs }))
        .build();
    launcher(repository)
        .run(&job, string_parameters(&[("a", "1")]), StopSignal::new())
        .await
        .expect("run");
    let rows = db
        .query_strings("SELECT SHORT_CONTEXT FROM BATCH_STEP_EXECUTION_CONTEXT")
        .await;
    let short = &rows[0][0];
    assert!(
        short.starts_with(r#"{"@class":"java.util.HashMap""#),
        "{short}"
    );
    assert!(
        short.contains(r#""batch.executed":true"#) && short.contains(r#""position":5"#),
        "{short}"
    );
}

async fn new_parameters_make_new_instances_and_completed_ones_are_refused(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let job = Job::builder("importUserJob")
        .step(TaskletStep::new("step1", Done))
        .build();
    let launcher = launcher(repository.clone());
    let first = launcher
        .run(
            &job,
            string_parameters(&[("batchRun", "1")]),
            StopSignal::new(),
        )
        .await
        .expect("first");
    let second = launcher
        .run(
            &job,
            string_parameters(&[("batchRun", "2")]),
            StopSignal::new(),
        )
        .await
        .expect("second");
    assert_ne!(first.instance.id, second.instance.id);
    // A non-identifying parameter does not change the instance.
    let again = string_parameters(&[("batchRun", "1")])
        .with("note", JobParameter::string("x").non_identifying());
    let error = launcher
        .run(&job, again, StopSignal::new())
        .await
        .expect_err("completed instance");
    assert!(
        matches!(error.refusal(), Some(LaunchRefusal::AlreadyComplete { execution_id, .. }) if *execution_id == first.id),
        "{error}"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM BATCH_JOB_EXECUTION").await,
        2
    );
}

async fn missing_required_parameters_are_refused_before_anything_is_written(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let job = Job::builder("importUserJob")
        .required_parameter("jobFileLocation")
        .step(TaskletStep::new("step1", Done))
        .build();
    let error = launcher(repository)
        .run(
            &job,
            string_parameters(&[("batchRun", "1")]),
            StopSignal::new(),
        )
        .await
        .expect_err("missing parameter");
    assert!(
        matches!(error, LaunchError::InvalidParameters(ref m) if m.contains("jobFileLocation")),
        "{error}"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM BATCH_JOB_INSTANCE").await, 0);
}

async fn a_failed_instance_restarts_skipping_completed_steps_with_the_step_context(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let step1_runs = Arc::new(AtomicUsize::new(0));
    let step2_runs = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(1));
    let job = Job::builder("restartable")
        .step(TaskletStep::new(
            "step1",
            FailWhileCounting {
                failures: Arc::new(AtomicUsize::new(0)),
                runs: step1_runs.clone(),
            },
        ))
        .step(TaskletStep::new(
            "step2",
            FailWhileCounting {
                failures,
                runs: step2_runs.clone(),
            },
        ))
        .build();
    let launcher = launcher(repository.clone());
    let failed = launcher
        .run(&job, string_parameters(&[("run", "1")]), StopSignal::new())
        .await
        .expect("first run");
    assert_eq!(failed.status, BatchStatus::Failed);
    assert_eq!(failed.exit_status.code, "FAILED");
    assert_eq!(
        failed.exit_status.description,
        "could not write the report\nCaused by: disk full"
    );
    let steps = repository.step_executions(failed.id).await.expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1].status, BatchStatus::Failed);
    assert_eq!(steps[1].exit_status, failed.exit_status);
    assert_eq!(steps[1].counters.rollback, 1);

    let restarted = launcher
        .run(&job, string_parameters(&[("run", "1")]), StopSignal::new())
        .await
        .expect("restart");
    assert_eq!(restarted.status, BatchStatus::Completed);
    assert_eq!(restarted.instance.id, failed.instance.id);
    assert_ne!(restarted.id, failed.id);
    assert_eq!(
        step1_runs.load(Ordering::SeqCst),
        1,
        "completed step1 must be skipped"
    );
    let steps = repository
        .step_executions(restarted.id)
        .await
        .expect("steps");
    assert_eq!(steps.len(), 1, "no row for the skipped step");
    assert_eq!(steps[0].step_name, "step2");
    assert_eq!(
        steps[0].context.get_i64("position"),
        Some(10),
        "restart inherits the saved context"
    );
    assert_eq!(steps[0].counters.commit, 1);
}

async fn failures_are_recorded_on_step_and_job_cut_to_2500_characters(db: TestDb) {
    struct Verbose;
    #[async_trait]
    impl Tasklet for Verbose {
        async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
            Err(StepError::Failed(
                format!("boom {}", "x".repeat(5000)).into(),
            ))
        }
    }
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let job = Job::builder("verbose")
        .step(TaskletStep::new("step1", Verbose))
        .build();
    let execution = launcher(repository)
        .run(&job, JobParameters::new(), StopSignal::new())
        .await
        .expect("run");
    assert_eq!(execution.status, BatchStatus::Failed);
    for table in ["BATCH_JOB_EXECUTION", "BATCH_STEP_EXECUTION"] {
        let rows = db
            .query_strings(&format!(
                "SELECT STATUS, EXIT_CODE, EXIT_MESSAGE FROM {table}"
            ))
            .await;
        assert_eq!(rows[0][0], "FAILED");
        assert_eq!(rows[0][1], "FAILED");
        assert!(rows[0][2].starts_with("boom xxx"));
        assert_eq!(rows[0][2].chars().count(), 2500, "{table}");
    }
}

async fn a_running_instance_is_refused_and_a_stale_one_is_recovered(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let parameters = string_parameters(&[("batchRun", "9")]);
    let crashed = repository
        .create_job_execution(&LaunchRequest {
            job_name: "j",
            parameters: &parameters,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("a launcher that will crash");
    let job = Job::builder("j")
        .step(TaskletStep::new("step1", Done))
        .build();
    let live = JobLauncher::new(
        repository.clone(),
        LaunchSettings::with_lease(Duration::from_secs(60)),
    );
    let error = live
        .run(&job, parameters.clone(), StopSignal::new())
        .await
        .expect_err("still running");
    assert!(
        matches!(error.refusal(), Some(LaunchRefusal::AlreadyRunning { execution_id, .. }) if *execution_id == crashed.id),
        "{error}"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let recovering = JobLauncher::new(
        repository.clone(),
        LaunchSettings::with_lease(Duration::from_secs(1)),
    );
    let execution = recovering
        .run(&job, parameters, StopSignal::new())
        .await
        .expect("recovered and restarted");
    assert_eq!(execution.status, BatchStatus::Completed);
    assert_eq!(execution.instance.id, crashed.instance.id);
    let dead = repository
        .job_execution(crashed.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(dead.status, BatchStatus::Failed);
    assert_eq!(dead.exit_status.code, "FAILED");
    assert!(
        dead.exit_status.description.contains("stopped reporting"),
        "{}",
        dead.exit_status.description
    );
    assert!(dead.end_time.is_some());
}

async fn the_heartbeat_keeps_a_long_step_alive(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let job = Arc::new(
        Job::builder("slow")
            .step(TaskletStep::new(
                "step1",
                Sleep(Duration::from_millis(2500)),
            ))
            .build(),
    );
    let settings = LaunchSettings {
        lease: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
    };
    let first = JobLauncher::new(repository.clone(), settings);
    let running = tokio::spawn({
        let job = job.clone();
        async move {
            first
                .run(&job, string_parameters(&[("k", "v")]), StopSignal::new())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let second = JobLauncher::new(repository.clone(), settings);
    let error = second
        .run(&job, string_parameters(&[("k", "v")]), StopSignal::new())
        .await
        .expect_err("alive");
    assert!(
        matches!(error.refusal(), Some(LaunchRefusal::AlreadyRunning { .. })),
        "{error}"
    );
    let finished = running.await.expect("join").expect("run");
    assert_eq!(finished.status, BatchStatus::Completed);
}

async fn stop_ends_a_running_execution_stopped_and_it_can_be_restarted(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let mut registry = JobRegistry::new();
    registry.register(
        Job::builder("looping")
            .step(TaskletStep::new("step1", UntilStopped))
            .build(),
    );
    let settings = LaunchSettings {
        lease: Duration::from_secs(60),
        heartbeat: Duration::from_millis(100),
    };
    let operator = JobOperator::new(
        JobLauncher::new(repository.clone(), settings),
        Arc::new(registry),
    );
    let running = tokio::spawn({
        let operator = operator.clone();
        async move {
            operator
                .start(
                    "looping",
                    string_parameters(&[("k", "v")]),
                    StopSignal::new(),
                )
                .await
        }
    });
    let id = loop {
        let executions = repository
            .find_job_executions(&ExecutionFilter::default())
            .await
            .expect("list");
        if let Some(execution) = executions.iter().find(|e| e.status == BatchStatus::Started) {
            break execution.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopping = operator.stop(id).await.expect("stop");
    assert_eq!(stopping.status, BatchStatus::Stopping);
    let stopped = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("run");
    assert_eq!(stopped.status, BatchStatus::Stopped);
    assert_eq!(stopped.exit_status.code, "STOPPED");
    let steps = repository.step_executions(id).await.expect("steps");
    assert_eq!(steps[0].status, BatchStatus::Stopped);
    assert!(steps[0].counters.commit > 0);

    let error = operator.stop(id).await.expect_err("not running any more");
    assert!(
        matches!(
            error,
            LaunchError::Repository(RepositoryError::InvalidState { .. })
        ),
        "{error}"
    );

    // A stopped execution restarts; stop it again through the signal.
    let signal = StopSignal::new();
    let restarting = tokio::spawn({
        let operator = operator.clone();
        let signal = signal.clone();
        async move { operator.restart(id, signal).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal.request();
    let restarted = restarting.await.expect("join").expect("restart");
    assert_eq!(restarted.instance.id, stopped.instance.id);
    assert_eq!(restarted.status, BatchStatus::Stopped);
}

async fn abandoned_instances_are_never_restarted(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let failures = Arc::new(AtomicUsize::new(1));
    let mut registry = JobRegistry::new();
    registry.register(
        Job::builder("fragile")
            .step(TaskletStep::new(
                "s",
                FailWhileCounting {
                    failures,
                    runs: Arc::new(AtomicUsize::new(0)),
                },
            ))
            .build(),
    );
    let operator = JobOperator::new(launcher(repository.clone()), Arc::new(registry));
    let failed = operator
        .start(
            "fragile",
            string_parameters(&[("k", "v")]),
            StopSignal::new(),
        )
        .await
        .expect("run");
    assert_eq!(failed.status, BatchStatus::Failed);
    let abandoned = operator.abandon(failed.id).await.expect("abandon");
    assert_eq!(abandoned.status, BatchStatus::Abandoned);
    let error = operator
        .restart(failed.id, StopSignal::new())
        .await
        .expect_err("abandoned");
    assert!(
        matches!(
            error.refusal(),
            Some(LaunchRefusal::AlreadyComplete {
                status: BatchStatus::Abandoned,
                ..
            })
        ),
        "{error}"
    );
}

async fn start_next_increments_run_id(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let mut registry = JobRegistry::new();
    registry.register(
        Job::builder("daily")
            .step(TaskletStep::new("s", Done))
            .build(),
    );
    let operator = JobOperator::new(launcher(repository.clone()), Arc::new(registry));
    let first = operator
        .start_next(
            "daily",
            string_parameters(&[("region", "eu")]),
            StopSignal::new(),
        )
        .await
        .expect("first");
    let second = operator
        .start_next("daily", JobParameters::new(), StopSignal::new())
        .await
        .expect("second");
    assert_eq!(first.parameters.get_long("run.id"), Some(1));
    assert_eq!(second.parameters.get_long("run.id"), Some(2));
    assert_eq!(second.parameters.get_string("region"), Some("eu"));
    assert_ne!(first.instance.id, second.instance.id);
    let types = db.query_strings("SELECT DISTINCT PARAMETER_TYPE FROM BATCH_JOB_EXECUTION_PARAMS WHERE PARAMETER_NAME = 'run.id'").await;
    assert_eq!(types, vec![vec!["java.lang.Long"]]);
}

async fn versions_lock_optimistically_and_stop_requests_are_adopted(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let parameters = string_parameters(&[("k", "v")]);
    let request = LaunchRequest {
        job_name: "j",
        parameters: &parameters,
        lease: Duration::from_secs(60),
    };
    let mut execution = repository
        .create_job_execution(&request)
        .await
        .expect("create");
    execution.status = BatchStatus::Started;
    repository
        .update_job_execution(&mut execution)
        .await
        .expect("update");
    assert_eq!(execution.version, 1);
    let mut stale_copy = execution.clone();
    repository
        .update_job_execution(&mut execution)
        .await
        .expect("update again");
    let error = repository
        .update_job_execution(&mut stale_copy)
        .await
        .expect_err("stale version");
    assert!(
        matches!(
            error,
            RepositoryError::OptimisticLock {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{error}"
    );

    repository.request_stop(execution.id).await.expect("stop");
    execution.status = BatchStatus::Stopped;
    execution.exit_status = ExitStatus::stopped();
    repository
        .update_job_execution(&mut execution)
        .await
        .expect("a stop request is adopted");
    let stored = repository
        .job_execution(execution.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.status, BatchStatus::Stopped);
    assert_eq!(stored.version, execution.version);
}

async fn explorer_queries_filter_and_summarize(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let launcher = launcher(repository.clone());
    let ok = Job::builder("ok").step(TaskletStep::new("s", Done)).build();
    for run in ["1", "2", "3"] {
        launcher
            .run(&ok, string_parameters(&[("run", run)]), StopSignal::new())
            .await
            .expect("run");
    }
    let summaries = repository.job_summaries().await.expect("summaries");
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        (summaries[0].instance_count, summaries[0].execution_count),
        (3, 3)
    );
    let filter = ExecutionFilter {
        job_name: Some("ok".into()),
        status: Some(BatchStatus::Completed),
        limit: Some(2),
    };
    let executions = repository.find_job_executions(&filter).await.expect("find");
    assert_eq!(executions.len(), 2);
    assert!(executions[0].id > executions[1].id);
    assert_eq!(executions[0].parameters.get_string("run"), Some("3"));
    let none = ExecutionFilter {
        status: Some(BatchStatus::Failed),
        ..Default::default()
    };
    assert!(
        repository
            .find_job_executions(&none)
            .await
            .expect("find")
            .is_empty()
    );
    assert!(
        repository
            .job_execution(999_999)
            .await
            .expect("read")
            .is_none()
    );
}

on_both_databases!(
    schema_is_created_and_keys_and_parameters_are_stored_as_spring_batch_does,
    a_schema_of_the_other_release_is_refused,
    contexts_are_jackson_json,
    new_parameters_make_new_instances_and_completed_ones_are_refused,
    missing_required_parameters_are_refused_before_anything_is_written,
    a_failed_instance_restarts_skipping_completed_steps_with_the_step_context,
    failures_are_recorded_on_step_and_job_cut_to_2500_characters,
    a_running_instance_is_refused_and_a_stale_one_is_recovered,
    the_heartbeat_keeps_a_long_step_alive,
    stop_ends_a_running_execution_stopped_and_it_can_be_restarted,
    abandoned_instances_are_never_restarted,
    start_next_increments_run_id,
    versions_lock_optimistically_and_stop_requests_are_adopted,
    explorer_queries_filter_and_summarize,
);
