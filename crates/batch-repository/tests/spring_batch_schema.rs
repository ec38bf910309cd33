//! Fidelity to Spring Batch's metadata: the exact schema csv2db creates, the seed README's
//! metadata queries, launches racing from separate processes, rows written by Spring Batch on the
//! SQLite JDBC driver, and contexts too long for SHORT_CONTEXT.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use batch_core::error::{LaunchRefusal, RepositoryError};
use batch_core::job::key::{JobKeyFormat, job_key};
use batch_core::job::parameters::{JobParameter, JobParameters};
use batch_core::job::{Job, JobExecution};
use batch_core::launch::{JobLauncher, LaunchError, LaunchSettings};
use batch_core::repository::JobRepository;
use batch_core::step::tasklet::{RepeatStatus, Tasklet, TaskletStep};
use batch_core::step::{StepContext, StepError, StopSignal};
use batch_core::{BatchStatus, ExecutionContext};
use batch_repository::{ConnectOptions, SpringBatchVersion};
use batch_testkit::{TestDb, on_both_databases, string_parameters};
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use sqlx::{Column, Connection, Row};

/// Finishes at once.
struct Done;
#[async_trait]
impl Tasklet for Done {
    async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        Ok(RepeatStatus::Finished)
    }
}

/// Fails with `message` while `failures` is above zero, then finishes.
struct FailsFirst {
    failures: Arc<AtomicUsize>,
    message: &'static str,
}
#[async_trait]
impl Tasklet for FailsFirst {
    async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        if take_failure(&self.failures) {
            return Err(StepError::Failed(self.message.into()));
        }
        Ok(RepeatStatus::Finished)
    }
}

/// Fails while `failures` is above zero; otherwise counts the run, sleeps `pause` and finishes.
struct CountedSleep {
    failures: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
    pause: Duration,
}
#[async_trait]
impl Tasklet for CountedSleep {
    async fn execute(&self, _: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        if take_failure(&self.failures) {
            return Err(StepError::Failed("the first attempt fails".into()));
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.pause).await;
        Ok(RepeatStatus::Finished)
    }
}

/// Puts [`long_value`] under `long` when its context lacks it (recording what it found
/// otherwise), saves, and fails while `failures` is above zero.
struct KeepsALongValue {
    failures: Arc<AtomicUsize>,
    found: Arc<Mutex<Option<String>>>,
}
#[async_trait]
impl Tasklet for KeepsALongValue {
    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<RepeatStatus, StepError> {
        let inherited = ctx
            .step_execution()
            .context
            .get_str("long")
            .map(str::to_string);
        match inherited {
            Some(value) => *self.found.lock().expect("not poisoned") = Some(value),
            None => ctx.step_execution_mut().context.put("long", long_value()),
        }
        if take_failure(&self.failures) {
            ctx.save().await?;
            return Err(StepError::Failed("failing after saving the context".into()));
        }
        Ok(RepeatStatus::Finished)
    }
}

/// Decrements `failures` if it is above zero; true if it was.
fn take_failure(failures: &AtomicUsize) -> bool {
    failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// 3000 characters.
fn long_value() -> String {
    "0123456789".repeat(300)
}

fn launcher(repository: Arc<dyn JobRepository>) -> JobLauncher {
    JobLauncher::new(repository, LaunchSettings::default())
}

/// `rows` with every cell as `&str`, for comparing with expected tables.
fn as_strs(rows: &[Vec<String>]) -> Vec<Vec<&str>> {
    rows.iter()
        .map(|row| row.iter().map(String::as_str).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The schema is Spring Batch 6's, column for column.
// ---------------------------------------------------------------------------------------------

/// PostgreSQL columns: name, data_type, character_maximum_length ("" when none), is_nullable.
/// No column has a default: `DEFAULT NULL` stores none.
type PgColumn = (&'static str, &'static str, &'static str, &'static str);

const BIGINT: &str = "bigint";
const VARCHAR: &str = "character varying";
const TIMESTAMP: &str = "timestamp without time zone";

/// Spring Batch 6's `schema-postgresql.sql`, table by table, in column order.
fn spring_batch_6_postgresql_tables() -> Vec<(&'static str, Vec<PgColumn>)> {
    let counter = |name| (name, BIGINT, "", "YES");
    vec![
        (
            "batch_job_instance",
            vec![
                ("job_instance_id", BIGINT, "", "NO"),
                ("version", BIGINT, "", "YES"),
                ("job_name", VARCHAR, "100", "NO"),
                ("job_key", VARCHAR, "32", "NO"),
            ],
        ),
        (
            "batch_job_execution",
            vec![
                ("job_execution_id", BIGINT, "", "NO"),
                ("version", BIGINT, "", "YES"),
                ("job_instance_id", BIGINT, "", "NO"),
                ("create_time", TIMESTAMP, "", "NO"),
                ("start_time", TIMESTAMP, "", "YES"),
                ("end_time", TIMESTAMP, "", "YES"),
                ("status", VARCHAR, "10", "YES"),
                ("exit_code", VARCHAR, "2500", "YES"),
                ("exit_message", VARCHAR, "2500", "YES"),
                ("last_updated", TIMESTAMP, "", "YES"),
            ],
        ),
        (
            "batch_job_execution_params",
            vec![
                ("job_execution_id", BIGINT, "", "NO"),
                ("parameter_name", VARCHAR, "100", "NO"),
                ("parameter_type", VARCHAR, "100", "NO"),
                ("parameter_value", VARCHAR, "2500", "YES"),
                ("identifying", "character", "1", "NO"),
            ],
        ),
        (
            "batch_step_execution",
            vec![
                ("step_execution_id", BIGINT, "", "NO"),
                ("version", BIGINT, "", "NO"),
                ("step_name", VARCHAR, "100", "NO"),
                ("job_execution_id", BIGINT, "", "NO"),
                ("create_time", TIMESTAMP, "", "NO"),
                ("start_time", TIMESTAMP, "", "YES"),
                ("end_time", TIMESTAMP, "", "YES"),
                ("status", VARCHAR, "10", "YES"),
                counter("commit_count"),
                counter("read_count"),
                counter("filter_count"),
                counter("write_count"),
                counter("read_skip_count"),
                counter("write_skip_count"),
                counter("process_skip_count"),
                counter("rollback_count"),
                ("exit_code", VARCHAR, "2500", "YES"),
                ("exit_message", VARCHAR, "2500", "YES"),
                ("last_updated", TIMESTAMP, "", "YES"),
            ],
        ),
        (
            "batch_step_execution_context",
            vec![
                ("step_execution_id", BIGINT, "", "NO"),
                ("short_context", VARCHAR, "2500", "NO"),
                ("serialized_context", "text", "", "YES"),
            ],
        ),
        (
            "batch_job_execution_context",
            vec![
                ("job_execution_id", BIGINT, "", "NO"),
                ("short_context", VARCHAR, "2500", "NO"),
                ("serialized_context", "text", "", "YES"),
            ],
        ),
    ]
}

/// SQLite columns as `pragma_table_info` shows them: name, declared type, notnull,
/// dflt_value ("" when none), pk.
type SqliteColumn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Spring Batch 6's `schema-sqlite.sql`, table by table, in column order.
fn spring_batch_6_sqlite_tables() -> Vec<(&'static str, Vec<SqliteColumn>)> {
    let counter = |name| (name, "INTEGER", "0", "", "0");
    let id_sequence = vec![("ID", "INTEGER", "0", "", "1")];
    vec![
        (
            "BATCH_JOB_INSTANCE",
            vec![
                ("JOB_INSTANCE_ID", "INTEGER", "1", "", "1"),
                ("VERSION", "INTEGER", "0", "", "0"),
                ("JOB_NAME", "VARCHAR(100)", "1", "", "0"),
                ("JOB_KEY", "VARCHAR(32)", "1", "", "0"),
            ],
        ),
        (
            "BATCH_JOB_EXECUTION",
            vec![
                ("JOB_EXECUTION_ID", "INTEGER", "1", "", "1"),
                ("VERSION", "INTEGER", "0", "", "0"),
                ("JOB_INSTANCE_ID", "INTEGER", "1", "", "0"),
                ("CREATE_TIME", "TIMESTAMP", "1", "", "0"),
                ("START_TIME", "TIMESTAMP", "0", "NULL", "0"),
                ("END_TIME", "TIMESTAMP", "0", "NULL", "0"),
                ("STATUS", "VARCHAR(10)", "0", "", "0"),
                ("EXIT_CODE", "VARCHAR(100)", "0", "", "0"),
                ("EXIT_MESSAGE", "VARCHAR(2500)", "0", "", "0"),
                ("LAST_UPDATED", "TIMESTAMP", "0", "", "0"),
            ],
        ),
        (
            "BATCH_JOB_EXECUTION_PARAMS",
            vec![
                ("JOB_EXECUTION_ID", "INTEGER", "1", "", "0"),
                ("PARAMETER_NAME", "VARCHAR(100)", "1", "", "0"),
                ("PARAMETER_TYPE", "VARCHAR(100)", "1", "", "0"),
                ("PARAMETER_VALUE", "VARCHAR(2500)", "0", "", "0"),
                ("IDENTIFYING", "CHAR(1)", "1", "", "0"),
            ],
        ),
        (
            "BATCH_STEP_EXECUTION",
            vec![
                ("STEP_EXECUTION_ID", "INTEGER", "1", "", "1"),
                ("VERSION", "INTEGER", "1", "", "0"),
                ("STEP_NAME", "VARCHAR(100)", "1", "", "0"),
                ("JOB_EXECUTION_ID", "INTEGER", "1", "", "0"),
                ("CREATE_TIME", "TIMESTAMP", "1", "", "0"),
                ("START_TIME", "TIMESTAMP", "0", "NULL", "0"),
                ("END_TIME", "TIMESTAMP", "0", "NULL", "0"),
                ("STATUS", "VARCHAR(10)", "0", "", "0"),
                counter("COMMIT_COUNT"),
                counter("READ_COUNT"),
                counter("FILTER_COUNT"),
                counter("WRITE_COUNT"),
                counter("READ_SKIP_COUNT"),
                counter("WRITE_SKIP_COUNT"),
                counter("PROCESS_SKIP_COUNT"),
                counter("ROLLBACK_COUNT"),
                ("EXIT_CODE", "VARCHAR(100)", "0", "", "0"),
                ("EXIT_MESSAGE", "VARCHAR(2500)", "0", "", "0"),
                ("LAST_UPDATED", "TIMESTAMP", "0", "", "0"),
            ],
        ),
        (
            "BATCH_STEP_EXECUTION_CONTEXT",
            vec![
                ("STEP_EXECUTION_ID", "INTEGER", "1", "", "1"),
                ("SHORT_CONTEXT", "VARCHAR(2500)", "1", "", "0"),
                ("SERIALIZED_CONTEXT", "CLOB", "0", "", "0"),
            ],
        ),
        (
            "BATCH_JOB_EXECUTION_CONTEXT",
            vec![
                ("JOB_EXECUTION_ID", "INTEGER", "1", "", "1"),
                ("SHORT_CONTEXT", "VARCHAR(2500)", "1", "", "0"),
                ("SERIALIZED_CONTEXT", "CLOB", "0", "", "0"),
            ],
        ),
        ("BATCH_STEP_EXECUTION_SEQ", id_sequence.clone()),
        ("BATCH_JOB_EXECUTION_SEQ", id_sequence.clone()),
        ("BATCH_JOB_INSTANCE_SEQ", id_sequence),
    ]
}

/// The foreign keys of Spring Batch 6's schema: name, table, column, referenced table and column.
const FOREIGN_KEYS: [(&str, &str, &str, &str, &str); 5] = [
    (
        "job_exec_ctx_fk",
        "batch_job_execution_context",
        "job_execution_id",
        "batch_job_execution",
        "job_execution_id",
    ),
    (
        "job_exec_params_fk",
        "batch_job_execution_params",
        "job_execution_id",
        "batch_job_execution",
        "job_execution_id",
    ),
    (
        "job_exec_step_fk",
        "batch_step_execution",
        "job_execution_id",
        "batch_job_execution",
        "job_execution_id",
    ),
    (
        "job_inst_exec_fk",
        "batch_job_execution",
        "job_instance_id",
        "batch_job_instance",
        "job_instance_id",
    ),
    (
        "step_exec_ctx_fk",
        "batch_step_execution_context",
        "step_execution_id",
        "batch_step_execution",
        "step_execution_id",
    ),
];

async fn schema_matches_spring_batch_6_exactly(db: TestDb) {
    drop(db.connect(SpringBatchVersion::V6).await);
    if db.url.starts_with("sqlite:") {
        sqlite_schema_matches_spring_batch_6(&db).await;
    } else {
        postgresql_schema_matches_spring_batch_6(&db).await;
    }
}

async fn postgresql_schema_matches_spring_batch_6(db: &TestDb) {
    assert_eq!(
        db.object_names().await,
        [
            "batch_job_execution",
            "batch_job_execution_context",
            "batch_job_execution_params",
            "batch_job_execution_seq",
            "batch_job_instance",
            "batch_job_instance_seq",
            "batch_step_execution",
            "batch_step_execution_context",
            "batch_step_execution_seq",
        ],
        "exactly Spring Batch's six tables and three sequences"
    );

    for (table, expected) in spring_batch_6_postgresql_tables() {
        let columns = db
            .query_strings(&format!(
                "SELECT column_name::text, data_type::text, character_maximum_length::text, \
                 is_nullable::text, CASE WHEN column_default IS NULL THEN 'no default' \
                 ELSE 'default ' || column_default::text END \
                 FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = '{table}' \
                 ORDER BY ordinal_position"
            ))
            .await;
        let expected: Vec<Vec<&str>> = expected
            .iter()
            .map(|&(name, data_type, length, nullable)| {
                vec![name, data_type, length, nullable, "no default"]
            })
            .collect();
        assert_eq!(as_strs(&columns), expected, "columns of {table}");
    }

    let sequences = db
        .query_strings(
            "SELECT sequence_name::text, data_type::text, start_value::text, \
             minimum_value::text, maximum_value::text, increment::text, cycle_option::text \
             FROM information_schema.sequences WHERE sequence_schema = 'public' \
             ORDER BY sequence_name",
        )
        .await;
    let sequence = |name| vec![name, "bigint", "1", "1", "9223372036854775807", "1", "NO"];
    assert_eq!(
        as_strs(&sequences),
        vec![
            sequence("batch_job_execution_seq"),
            sequence("batch_job_instance_seq"),
            sequence("batch_step_execution_seq"),
        ]
    );

    let constraints = db
        .query_strings(
            "SELECT tc.constraint_type::text, tc.constraint_name::text, tc.table_name::text, \
             string_agg(kcu.column_name::text, ',' ORDER BY kcu.ordinal_position) \
             FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage kcu \
               ON kcu.constraint_schema = tc.constraint_schema \
              AND kcu.constraint_name = tc.constraint_name \
              AND kcu.table_name = tc.table_name \
             WHERE tc.table_schema = 'public' \
               AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY') \
             GROUP BY 1, 2, 3 ORDER BY 1, 2",
        )
        .await;
    let mut expected = vec![];
    for (name, table, column, _, _) in FOREIGN_KEYS {
        expected.push(vec!["FOREIGN KEY", name, table, column]);
    }
    for (name, table, column) in [
        (
            "batch_job_execution_context_pkey",
            "batch_job_execution_context",
            "job_execution_id",
        ),
        (
            "batch_job_execution_pkey",
            "batch_job_execution",
            "job_execution_id",
        ),
        (
            "batch_job_instance_pkey",
            "batch_job_instance",
            "job_instance_id",
        ),
        (
            "batch_step_execution_context_pkey",
            "batch_step_execution_context",
            "step_execution_id",
        ),
        (
            "batch_step_execution_pkey",
            "batch_step_execution",
            "step_execution_id",
        ),
    ] {
        expected.push(vec!["PRIMARY KEY", name, table, column]);
    }
    expected.push(vec![
        "UNIQUE",
        "job_inst_un",
        "batch_job_instance",
        "job_name,job_key",
    ]);
    assert_eq!(as_strs(&constraints), expected);

    let references = db
        .query_strings(
            "SELECT rc.constraint_name::text, ccu.table_name::text, ccu.column_name::text, \
             rc.delete_rule::text \
             FROM information_schema.referential_constraints rc \
             JOIN information_schema.constraint_column_usage ccu \
               ON ccu.constraint_schema = rc.constraint_schema \
              AND ccu.constraint_name = rc.constraint_name \
             WHERE rc.constraint_schema = 'public' ORDER BY 1",
        )
        .await;
    let expected: Vec<Vec<&str>> = FOREIGN_KEYS
        .iter()
        .map(|&(name, _, _, table, column)| vec![name, table, column, "NO ACTION"])
        .collect();
    assert_eq!(as_strs(&references), expected);

    // No index beyond the primary keys and JOB_INST_UN.
    let indexes = db
        .query_strings(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        )
        .await;
    assert_eq!(
        as_strs(&indexes),
        [
            "batch_job_execution_context_pkey",
            "batch_job_execution_pkey",
            "batch_job_instance_pkey",
            "batch_step_execution_context_pkey",
            "batch_step_execution_pkey",
            "job_inst_un",
        ]
        .map(|name| vec![name])
    );
}

async fn sqlite_schema_matches_spring_batch_6(db: &TestDb) {
    assert_eq!(
        db.object_names().await,
        [
            "batch_job_execution",
            "batch_job_execution_context",
            "batch_job_execution_params",
            "batch_job_execution_seq",
            "batch_job_instance",
            "batch_job_instance_seq",
            "batch_step_execution",
            "batch_step_execution_context",
            "batch_step_execution_seq",
            // Created by SQLite for the AUTOINCREMENT keys, as with Spring's own DDL.
            "sqlite_sequence",
        ]
    );

    for (table, expected) in spring_batch_6_sqlite_tables() {
        let columns = db
            .query_strings(&format!(
                "SELECT name, type, \"notnull\", dflt_value, pk \
                 FROM pragma_table_info('{table}') ORDER BY cid"
            ))
            .await;
        let expected: Vec<Vec<&str>> = expected
            .iter()
            .map(|&(name, declared, not_null, default, pk)| {
                vec![name, declared, not_null, default, pk]
            })
            .collect();
        assert_eq!(as_strs(&columns), expected, "columns of {table}");
    }

    let autoincrement = db
        .query_strings(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND upper(sql) LIKE '%PRIMARY KEY AUTOINCREMENT%' ORDER BY name",
        )
        .await;
    assert_eq!(
        as_strs(&autoincrement),
        [
            "BATCH_JOB_EXECUTION",
            "BATCH_JOB_EXECUTION_SEQ",
            "BATCH_JOB_INSTANCE",
            "BATCH_JOB_INSTANCE_SEQ",
            "BATCH_STEP_EXECUTION",
            "BATCH_STEP_EXECUTION_SEQ",
        ]
        .map(|name| vec![name])
    );

    // JOB_INST_UN: the only index besides the implicit rowid keys.
    let indexes = db
        .query_strings(
            "SELECT m.tbl_name, l.\"unique\", l.origin, \
             (SELECT group_concat(name, ',') FROM \
               (SELECT name FROM pragma_index_info(m.name) ORDER BY seqno)) \
             FROM sqlite_master m JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name \
             WHERE m.type = 'index' ORDER BY m.name",
        )
        .await;
    assert_eq!(
        as_strs(&indexes),
        vec![vec!["BATCH_JOB_INSTANCE", "1", "u", "JOB_NAME,JOB_KEY"]]
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'BATCH_JOB_INSTANCE' \
             AND lower(sql) LIKE '%constraint job_inst_un unique (job_name, job_key)%'"
        )
        .await,
        1,
        "JOB_INST_UN is named as in Spring's DDL"
    );

    for (name, table, column, target, target_column) in FOREIGN_KEYS {
        let keys = db
            .query_strings(&format!(
                "SELECT lower(\"table\"), lower(\"from\"), lower(\"to\") \
                 FROM pragma_foreign_key_list('{table}')"
            ))
            .await;
        assert_eq!(
            as_strs(&keys),
            vec![vec![target, column, target_column]],
            "foreign keys of {table}"
        );
        let named = db
            .count(&format!(
                "SELECT COUNT(*) FROM sqlite_master WHERE lower(name) = '{table}' \
                 AND lower(sql) LIKE '%constraint {name} foreign key ({column})%'"
            ))
            .await;
        assert_eq!(named, 1, "{name} is named as in Spring's DDL");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Spring Batch 5's schema names the job-instance sequence BATCH_JOB_SEQ.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_schema_uses_batch_job_seq() {
    let db = TestDb::postgres().await;
    let repository = db.connect(SpringBatchVersion::V5).await.job_repository();
    let sequences = db
        .query_strings(
            "SELECT sequence_name::text, maximum_value::text, cycle_option::text \
             FROM information_schema.sequences WHERE sequence_schema = 'public' \
             ORDER BY sequence_name",
        )
        .await;
    let sequence = |name| vec![name, "9223372036854775807", "NO"];
    assert_eq!(
        as_strs(&sequences),
        vec![
            sequence("batch_job_execution_seq"),
            sequence("batch_job_seq"),
            sequence("batch_step_execution_seq"),
        ],
        "batch_job_seq, and no batch_job_instance_seq"
    );

    // The instance id comes from it.
    let job = Job::builder("importUserJob")
        .step(TaskletStep::new("step1", Done))
        .build();
    let execution = launcher(repository)
        .run(&job, string_parameters(&[("run", "1")]), StopSignal::new())
        .await
        .expect("run");
    assert_eq!(execution.status, BatchStatus::Completed);
    assert_eq!(
        db.query_strings("SELECT last_value::text, is_called::text FROM batch_job_seq")
            .await,
        vec![vec![execution.instance.id.to_string(), "true".to_string()]]
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The seed README's psql queries read what csv2db wrote.
// ---------------------------------------------------------------------------------------------

/// The failure the seed README shows in BATCH_STEP_EXECUTION.EXIT_MESSAGE: the job's service
/// account may not watch jobs (OpenShift RBAC).
const RBAC_FAILURE: &str = "io.fabric8.kubernetes.client.KubernetesClientException: \
     User \"system:serviceaccount:batch:default\" cannot watch jobs.batch in the namespace \"batch\": \
     User \"system:serviceaccount:batch:default\" cannot watch jobs.batch in project \"batch\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_metadata_queries_run_unchanged() {
    let db = TestDb::postgres().await;
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let job = Job::builder("importUserJob")
        .step(TaskletStep::new(
            "step1",
            FailsFirst {
                failures: Arc::new(AtomicUsize::new(1)),
                message: RBAC_FAILURE,
            },
        ))
        .step(TaskletStep::new("step2", Done))
        .build();
    let launcher = launcher(repository);
    let failed = launcher
        .run(
            &job,
            string_parameters(&[("jobFileLocation", "/test/myfile.csv")]),
            StopSignal::new(),
        )
        .await
        .expect("first run");
    assert_eq!(failed.status, BatchStatus::Failed);
    let completed = launcher
        .run(
            &job,
            string_parameters(&[("jobFileLocation", "/test/myfile2.csv"), ("batchRun", "2")]),
            StopSignal::new(),
        )
        .await
        .expect("second run");
    assert_eq!(completed.status, BatchStatus::Completed);
    assert_ne!(failed.instance.id, completed.instance.id);

    let mut conn = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("psql-like connection");

    let rows = sqlx::query("select * from batch_job_instance;")
        .fetch_all(&mut conn)
        .await
        .expect("the instance query");
    assert_eq!(rows.len(), 2);
    let names: Vec<&str> = rows[0].columns().iter().map(Column::name).collect();
    assert_eq!(names, ["job_instance_id", "version", "job_name", "job_key"]);
    let mut instances: Vec<(i64, Option<i64>, String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.get("job_instance_id"),
                row.get("version"),
                row.get("job_name"),
                row.get("job_key"),
            )
        })
        .collect();
    instances.sort();
    assert_eq!(
        instances.iter().map(|i| i.0).collect::<Vec<_>>(),
        [failed.instance.id, completed.instance.id]
    );
    for (_, version, job_name, job_key) in &instances {
        assert_eq!(*version, Some(0));
        assert_eq!(job_name, "importUserJob");
        assert!(
            job_key.len() == 32
                && job_key
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{job_key}"
        );
    }
    assert_ne!(instances[0].3, instances[1].3);

    let rows = sqlx::query(
        "SELECT step_execution_id, version, step_name, job_execution_id, start_time, end_time, status FROM public.batch_step_execution;",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the step execution query");
    let names: Vec<&str> = rows[0].columns().iter().map(Column::name).collect();
    assert_eq!(
        names,
        [
            "step_execution_id",
            "version",
            "step_name",
            "job_execution_id",
            "start_time",
            "end_time",
            "status"
        ]
    );
    let mut steps: Vec<(i64, i64, String, i64, NaiveDateTime, NaiveDateTime, String)> = rows
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get::<Option<NaiveDateTime>, _>(4).expect("start_time"),
                row.get::<Option<NaiveDateTime>, _>(5).expect("end_time"),
                row.get(6),
            )
        })
        .collect();
    steps.sort_by_key(|step| step.0);
    let summary: Vec<(i64, &str, i64, &str)> = steps
        .iter()
        .map(|(id, _, name, job_execution_id, _, _, status)| {
            (*id, name.as_str(), *job_execution_id, status.as_str())
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "step1", failed.id, "FAILED"),
            (2, "step1", completed.id, "COMPLETED"),
            (3, "step2", completed.id, "COMPLETED"),
        ]
    );
    for (id, version, _, _, start, end, _) in &steps {
        assert!(*version >= 2, "step {id} has version {version}");
        assert!(start <= end, "step {id}: {start} > {end}");
        for time in [start, end] {
            assert_eq!(
                time.nanosecond() % 1_000_000,
                0,
                "millisecond precision, as Spring Batch writes"
            );
        }
    }

    let rows = sqlx::query(
        "SELECT EXIT_MESSAGE FROM public.batch_step_execution WHERE step_execution_id=1;",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the exit message query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].columns()[0].name(), "exit_message");
    assert_eq!(rows[0].get::<String, _>(0), RBAC_FAILURE);
}

// ---------------------------------------------------------------------------------------------
// 4. Launches of one instance racing from separate processes: exactly one runs.
// ---------------------------------------------------------------------------------------------

const LAUNCHERS: usize = 8;

/// Connects `LAUNCHERS` separate repositories to `db` (separate pools and connections, as
/// separate processes would have), then releases them at once to run `job` with `parameters`.
async fn race(
    db: &TestDb,
    job: &Arc<Job>,
    parameters: &JobParameters,
) -> Vec<Result<JobExecution, LaunchError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(LAUNCHERS));
    let launches: Vec<_> = (0..LAUNCHERS)
        .map(|_| {
            let options = ConnectOptions {
                url: db.url.clone(),
                ..Default::default()
            };
            let (barrier, job, parameters) = (barrier.clone(), job.clone(), parameters.clone());
            tokio::spawn(async move {
                let connected = batch_repository::connect(&options).await;
                // Every launcher reaches the barrier, so a failed connect fails the test
                // instead of hanging it.
                barrier.wait().await;
                let repository = connected?;
                Ok::<_, RepositoryError>(
                    launcher(repository.job_repository())
                        .run(&job, parameters, StopSignal::new())
                        .await,
                )
            })
        })
        .collect();
    let mut results = Vec::with_capacity(LAUNCHERS);
    let mut connect_errors = Vec::new();
    for launch in launches {
        match launch.await.expect("a launch task") {
            Ok(result) => results.push(result),
            Err(error) => connect_errors.push(error.to_string()),
        }
    }
    assert!(
        connect_errors.is_empty(),
        "{} of {LAUNCHERS} concurrent connects failed: {connect_errors:#?}",
        connect_errors.len()
    );
    results
}

/// Checks that exactly one of `results` ran to COMPLETED and the others were refused as
/// already running it; returns the one that ran.
fn exactly_one_ran(results: Vec<Result<JobExecution, LaunchError>>) -> JobExecution {
    let (ran, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let errors: Vec<LaunchError> = refused.into_iter().filter_map(Result::err).collect();
    assert_eq!(ran.len(), 1, "launches that ran; refusals: {errors:?}");
    let winner = ran
        .into_iter()
        .next()
        .and_then(Result::ok)
        .expect("one ran");
    assert_eq!(winner.status, BatchStatus::Completed);
    assert_eq!(errors.len(), LAUNCHERS - 1);
    for error in &errors {
        assert!(
            matches!(
                error.refusal(),
                Some(LaunchRefusal::AlreadyRunning { instance_id, execution_id, .. })
                    if *instance_id == winner.instance.id && *execution_id == winner.id
            ),
            "{error}"
        );
    }
    winner
}

fn racing_job(failures: usize, runs: &Arc<AtomicUsize>) -> Arc<Job> {
    Arc::new(
        Job::builder("importUserJob")
            .step(TaskletStep::new(
                "step1",
                CountedSleep {
                    failures: Arc::new(AtomicUsize::new(failures)),
                    runs: runs.clone(),
                    pause: Duration::from_secs(1),
                },
            ))
            .build(),
    )
}

async fn concurrent_launches_of_one_instance_run_exactly_once(db: TestDb) {
    let parameters =
        string_parameters(&[("jobFileLocation", "/test/myfile2.csv"), ("batchRun", "2")]);

    // A brand-new instance. The schema exists already: first connects racing on a new SQLite
    // file are a separate matter (see `concurrent_first_connects_to_a_new_sqlite_file_all_succeed`).
    drop(db.connect(SpringBatchVersion::V6).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let job = racing_job(0, &runs);
    let winner = exactly_one_ran(race(&db, &job, &parameters).await);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the tasklet ran once");
    assert_eq!(db.count("SELECT COUNT(*) FROM BATCH_JOB_INSTANCE").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM BATCH_JOB_EXECUTION").await,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM BATCH_STEP_EXECUTION").await,
        1
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM BATCH_JOB_EXECUTION_PARAMS WHERE JOB_EXECUTION_ID = {}",
            winner.id
        ))
        .await,
        2
    );

    // The restart of a FAILED instance.
    let db = db.renew().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let job = racing_job(1, &runs);
    let failed = launcher(db.connect(SpringBatchVersion::V6).await.job_repository())
        .run(&job, parameters.clone(), StopSignal::new())
        .await
        .expect("the failing run");
    assert_eq!(failed.status, BatchStatus::Failed);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let winner = exactly_one_ran(race(&db, &job, &parameters).await);
    assert_eq!(winner.instance.id, failed.instance.id);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the tasklet ran once");
    assert_eq!(db.count("SELECT COUNT(*) FROM BATCH_JOB_INSTANCE").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM BATCH_JOB_EXECUTION").await,
        2,
        "the failed execution and one restart"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM BATCH_STEP_EXECUTION").await,
        2
    );
}

/// Connects `LAUNCHERS` repositories to `db` at once; returns the errors.
async fn first_connects_race(db: &TestDb) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(LAUNCHERS));
    let connects: Vec<_> = (0..LAUNCHERS)
        .map(|_| {
            let options = ConnectOptions {
                url: db.url.clone(),
                ..Default::default()
            };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                batch_repository::connect(&options).await.map(drop)
            })
        })
        .collect();
    let mut errors = Vec::new();
    for connect in connects {
        if let Err(error) = connect.await.expect("a connect task") {
            errors.push(error.to_string());
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_to_a_new_postgresql_database_create_the_schema_once() {
    for _ in 0..5 {
        let db = TestDb::postgres().await;
        let errors = first_connects_race(&db).await;
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(
            db.object_names().await.len(),
            9,
            "six tables, three sequences"
        );
    }
}

/// A few first opens in a thousand of a new SQLite file, racing others, used to fail with
/// "(code: 5) database is locked": `PRAGMA journal_mode = WAL` needs an exclusive lock and SQLite
/// does not apply the busy timeout to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_to_a_new_sqlite_file_all_succeed() {
    let mut errors = Vec::new();
    for _ in 0..60 {
        let db = TestDb::sqlite();
        errors.extend(first_connects_race(&db).await);
        if errors.is_empty() {
            assert_eq!(
                db.object_names().await.len(),
                10,
                "nine tables and sqlite_sequence"
            );
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {} connects failed: {errors:#?}",
        errors.len(),
        200 * LAUNCHERS
    );
}

// ---------------------------------------------------------------------------------------------
// 5. SQLite rows written by Spring Batch through the SQLite JDBC driver.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_written_by_the_sqlite_jdbc_driver_are_read() {
    let db = TestDb::sqlite();
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();

    // Spring Batch writes `Timestamp.valueOf(LocalDateTime)`; the JDBC driver stores its
    // `getTime()`: epoch milliseconds of the local wall-clock time.
    let at = |h, m, s, ms| {
        NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_milli_opt(h, m, s, ms))
            .expect("a valid time")
    };
    let millis = |time: NaiveDateTime| {
        time.and_local_timezone(chrono::Local)
            .earliest()
            .expect("a local time")
            .timestamp_millis()
    };
    let (created, started, ended) = (at(3, 4, 5, 678), at(3, 4, 6, 1), at(3, 5, 7, 999));
    let parameters: JobParameters = [("run".to_string(), JobParameter::long(7))]
        .into_iter()
        .collect();
    let key = job_key(&parameters, JobKeyFormat::V6);
    for statement in [
        // Spring's SqliteMaxValueIncrementer takes ids 1 from the sequence tables.
        "INSERT INTO BATCH_JOB_INSTANCE_SEQ VALUES (NULL)".to_string(),
        "INSERT INTO BATCH_JOB_EXECUTION_SEQ VALUES (NULL)".to_string(),
        format!(
            "INSERT INTO BATCH_JOB_INSTANCE (JOB_INSTANCE_ID, JOB_NAME, JOB_KEY, VERSION) \
             VALUES (1, 'importUserJob', '{key}', 0)"
        ),
        format!(
            "INSERT INTO BATCH_JOB_EXECUTION (JOB_EXECUTION_ID, JOB_INSTANCE_ID, CREATE_TIME, \
             START_TIME, END_TIME, STATUS, EXIT_CODE, EXIT_MESSAGE, VERSION, LAST_UPDATED) \
             VALUES (1, 1, {}, {}, {}, 'COMPLETED', 'COMPLETED', '', 2, {})",
            millis(created),
            millis(started),
            millis(ended),
            millis(ended)
        ),
        "INSERT INTO BATCH_JOB_EXECUTION_PARAMS (JOB_EXECUTION_ID, PARAMETER_NAME, \
         PARAMETER_TYPE, PARAMETER_VALUE, IDENTIFYING) VALUES (1, 'run', 'java.lang.Long', '7', 'Y')"
            .to_string(),
        r#"INSERT INTO BATCH_JOB_EXECUTION_CONTEXT (JOB_EXECUTION_ID, SHORT_CONTEXT, SERIALIZED_CONTEXT) VALUES (1, '{"@class":"java.util.HashMap","batch.version":"6.0.4"}', NULL)"#
            .to_string(),
    ] {
        db.execute(&statement).await;
    }
    assert_eq!(
        db.query_strings("SELECT typeof(CREATE_TIME), typeof(START_TIME), typeof(END_TIME), typeof(LAST_UPDATED) FROM BATCH_JOB_EXECUTION")
            .await,
        vec![vec!["integer"; 4]],
        "stored as the JDBC driver stores them"
    );

    let execution = repository
        .job_execution(1)
        .await
        .expect("read")
        .expect("execution 1");
    assert_eq!(execution.create_time, created);
    assert_eq!(execution.start_time, Some(started));
    assert_eq!(execution.end_time, Some(ended));
    assert_eq!(execution.last_updated, Some(ended));
    assert_eq!(execution.status, BatchStatus::Completed);
    assert_eq!(execution.exit_status.code, "COMPLETED");
    assert_eq!(execution.version, 2);
    assert_eq!(execution.instance.job_key, key);
    assert_eq!(execution.parameters, parameters);
    assert_eq!(execution.parameters.get_long("run"), Some(7));
    assert!(execution.parameters.get("run").expect("run").identifying);
    assert_eq!(execution.context.get_str("batch.version"), Some("6.0.4"));

    // The launch rules read the same rows: the instance is complete.
    let job = Job::builder("importUserJob")
        .step(TaskletStep::new("step1", Done))
        .build();
    let launcher = launcher(repository);
    let error = launcher
        .run(&job, parameters, StopSignal::new())
        .await
        .expect_err("complete");
    assert!(
        matches!(
            error.refusal(),
            Some(LaunchRefusal::AlreadyComplete {
                instance_id: 1,
                execution_id: 1,
                ..
            })
        ),
        "{error}"
    );

    // csv2db itself writes `yyyy-MM-dd HH:mm:ss.SSS` text, which the JDBC driver parses.
    let ours = launcher
        .run(
            &job,
            [("run".to_string(), JobParameter::long(8))]
                .into_iter()
                .collect(),
            StopSignal::new(),
        )
        .await
        .expect("a run of csv2db");
    assert_eq!(ours.status, BatchStatus::Completed);
    assert_eq!(ours.id, 2, "the next id of BATCH_JOB_EXECUTION_SEQ");
    let stored = db
        .query_strings(&format!(
            "SELECT typeof(CREATE_TIME), length(CREATE_TIME), CREATE_TIME, \
             typeof(START_TIME), length(START_TIME), typeof(END_TIME), length(END_TIME), \
             typeof(LAST_UPDATED), length(LAST_UPDATED) \
             FROM BATCH_JOB_EXECUTION WHERE JOB_EXECUTION_ID = {}",
            ours.id
        ))
        .await;
    let row = &stored[0];
    assert_eq!(
        (row[0].as_str(), row[1].as_str()),
        ("text", "23"),
        "CREATE_TIME {}",
        row[2]
    );
    assert_eq!(
        row[2],
        ours.create_time.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
    );
    assert_eq!(
        as_strs(&[row[3..].to_vec()]),
        vec![vec!["text", "23", "text", "23", "text", "23"]]
    );
    let steps = db
        .query_strings(
            "SELECT typeof(CREATE_TIME), length(CREATE_TIME), typeof(START_TIME), \
             length(START_TIME), typeof(END_TIME), length(END_TIME) FROM BATCH_STEP_EXECUTION",
        )
        .await;
    assert_eq!(
        as_strs(&steps),
        vec![vec!["text", "23", "text", "23", "text", "23"]]
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Contexts longer than SHORT_CONTEXT spill into SERIALIZED_CONTEXT and read back whole.
// ---------------------------------------------------------------------------------------------

async fn a_long_context_spills_into_serialized_context(db: TestDb) {
    let repository = db.connect(SpringBatchVersion::V6).await.job_repository();
    let found = Arc::new(Mutex::new(None));
    let job = Job::builder("longContext")
        .step(TaskletStep::new(
            "step1",
            KeepsALongValue {
                failures: Arc::new(AtomicUsize::new(1)),
                found: found.clone(),
            },
        ))
        .build();
    let launcher = launcher(repository.clone());
    let parameters = string_parameters(&[("run", "1")]);
    let failed = launcher
        .run(&job, parameters.clone(), StopSignal::new())
        .await
        .expect("first run");
    assert_eq!(failed.status, BatchStatus::Failed);

    let rows = db
        .query_strings(
            "SELECT SHORT_CONTEXT, SERIALIZED_CONTEXT FROM BATCH_STEP_EXECUTION_CONTEXT \
             ORDER BY STEP_EXECUTION_ID",
        )
        .await;
    let (short, serialized) = (&rows[0][0], &rows[0][1]);
    let stored = ExecutionContext::from_json(serialized).expect("SERIALIZED_CONTEXT is JSON");
    assert_eq!(stored.get_str("long"), Some(long_value().as_str()));
    assert!(
        serialized.starts_with(r#"{"@class":"java.util.HashMap""#),
        "{serialized}"
    );
    // JdbcExecutionContextDao: `serialized.substring(0, 2500 - 8) + " ..."`, 2496 characters.
    let head: String = serialized.chars().take(2492).collect();
    assert_eq!(*short, format!("{head} ..."));
    assert_eq!(short.chars().count(), 2496);
    assert!(short.chars().count() <= 2500 && short.ends_with(" ..."));

    let restarted = launcher
        .run(&job, parameters, StopSignal::new())
        .await
        .expect("restart");
    assert_eq!(restarted.status, BatchStatus::Completed);
    assert_eq!(restarted.instance.id, failed.instance.id);
    assert_eq!(
        found.lock().expect("not poisoned").as_deref(),
        Some(long_value().as_str()),
        "the restarted step inherits the whole value"
    );
    let steps = repository
        .step_executions(restarted.id)
        .await
        .expect("steps");
    assert_eq!(
        steps[0].context.get_str("long"),
        Some(long_value().as_str())
    );
    let rows = db
        .query_strings(
            "SELECT SHORT_CONTEXT, SERIALIZED_CONTEXT FROM BATCH_STEP_EXECUTION_CONTEXT \
             ORDER BY STEP_EXECUTION_ID",
        )
        .await;
    assert_eq!(rows.len(), 2);
    assert!(rows[1][0].ends_with(" ...") && rows[1][1].contains(&long_value()));
}

on_both_databases!(
    schema_matches_spring_batch_6_exactly,
    concurrent_launches_of_one_instance_run_exactly_once,
    a_long_context_spills_into_serialized_context,
);
