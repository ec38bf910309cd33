//! The table writers on a real job repository (SQLite files and PostgreSQL databases): rows
//! commit with the step's progress or not at all, and every value round-trips exactly.

use std::sync::Arc;
use std::time::Duration;

use batch_core::job::parameters::{JobParameter, JobParameters};
use batch_core::repository::{JobRepository, LaunchRequest};
use batch_core::step::StepExecution;
use batch_core::step::item::{ChunkTransaction, ItemWriter};
use batch_core::{BatchStatus, ExecutionContext};
use batch_io::postgres::{PgCopyWriter, PgInsertWriter};
use batch_io::sqlite::SqliteInsertWriter;
use batch_io::table::TableTarget;
use batch_repository::{Repository, SpringBatchVersion};
use batch_repository::{postgres_pool, sqlite_pool};
use batch_testkit::{TestDb, on_both_databases};
use sqlx::PgConnection;

/// A `people` row: first and last name, `None` for NULL.
type Person = Vec<Option<String>>;

fn people() -> TableTarget {
    TableTarget {
        table: "people".into(),
        columns: vec!["first_name".into(), "last_name".into()],
        create_postgres: "CREATE TABLE IF NOT EXISTS people (person_id SERIAL PRIMARY KEY, \
                          first_name VARCHAR(20), last_name VARCHAR(20))"
            .into(),
        create_sqlite: "CREATE TABLE IF NOT EXISTS people (person_id INTEGER PRIMARY KEY \
                        AUTOINCREMENT, first_name VARCHAR(20), last_name VARCHAR(20))"
            .into(),
    }
}

fn person(first: Option<&str>, last: Option<&str>) -> Person {
    vec![first.map(str::to_string), last.map(str::to_string)]
}

/// `count` people numbered from `from`.
fn numbered(from: usize, count: usize) -> Vec<Person> {
    (from..from + count)
        .map(|n| person(Some(&format!("First{n}")), Some(&format!("Last{n}"))))
        .collect()
}

/// A repository with a started step execution.
struct Fixture {
    db: TestDb,
    repository: Repository,
    jobs: Arc<dyn JobRepository>,
    step: StepExecution,
}

impl Fixture {
    async fn new(db: TestDb) -> Self {
        let repository = db.connect(SpringBatchVersion::V6).await;
        let jobs = repository.job_repository();
        let parameters: JobParameters = [("run".to_string(), JobParameter::string("1"))]
            .into_iter()
            .collect();
        let mut execution = jobs
            .create_job_execution(&LaunchRequest {
                job_name: "importUserJob",
                parameters: &parameters,
                lease: Duration::from_secs(60),
            })
            .await
            .expect("job execution");
        execution.status = BatchStatus::Started;
        jobs.update_job_execution(&mut execution)
            .await
            .expect("start the job");
        let mut step = jobs
            .create_step_execution(&execution, "step1", ExecutionContext::new())
            .await
            .expect("step execution");
        step.status = BatchStatus::Started;
        jobs.update_step_execution(&mut step)
            .await
            .expect("start the step");
        Fixture {
            db,
            repository,
            jobs,
            step,
        }
    }

    /// The fast writer of the repository's database.
    fn writer(&self) -> Box<dyn ItemWriter<Person>> {
        let repository = self.repository.job_repository();
        match (postgres_pool(&*repository), sqlite_pool(&*repository)) {
            (Some(pool), _) => Box::new(PgCopyWriter::new(pool, people())),
            (_, Some(pool)) => Box::new(SqliteInsertWriter::new(pool, people())),
            (None, None) => unreachable!("a repository has a pool"),
        }
    }

    /// Writes `items` and commits them with the step's progress.
    async fn commit_chunk(&mut self, writer: &mut dyn ItemWriter<Person>, items: &[Person]) {
        let mut transaction = self.jobs.begin_chunk().await.expect("begin");
        writer
            .write(items, transaction.as_mut())
            .await
            .expect("write");
        self.step.counters.write += items.len() as i64;
        self.step.counters.commit += 1;
        transaction.commit(&mut self.step).await.expect("commit");
    }

    /// The rows of `people` by `person_id`, with the id.
    async fn rows(&self) -> Vec<(i64, Person)> {
        self.db
            .query(
                "SELECT CAST(person_id AS TEXT) AS id, first_name, last_name FROM people \
                 ORDER BY person_id",
            )
            .await
            .into_iter()
            .map(|mut row| {
                let id = row.remove(0).expect("id").parse().expect("numeric id");
                (id, row)
            })
            .collect()
    }

    /// The step row's VERSION in the database.
    async fn stored_version(&self) -> i64 {
        self.db
            .scalar(&format!(
                "SELECT CAST(VERSION AS TEXT) FROM BATCH_STEP_EXECUTION \
                 WHERE STEP_EXECUTION_ID = {}",
                self.step.id
            ))
            .await
            .parse()
            .expect("numeric version")
    }
}

fn names(rows: &[(i64, Person)]) -> Vec<Person> {
    rows.iter().map(|(_, person)| person.clone()).collect()
}

fn assert_ascending(rows: &[(i64, Person)]) {
    assert!(
        rows.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "person_id ascending"
    );
}

async fn chunks_commit_in_order_with_the_step(db: TestDb) {
    let mut fixture = Fixture::new(db).await;
    let mut writer = fixture.writer();
    writer.open().await.expect("open");
    let version = fixture.step.version;
    // Sizes cover SQLite's full statements and remainders, and PostgreSQL's 64 KiB sends.
    let chunks = [numbered(0, 1200), numbered(1200, 1), numbered(1201, 70_000)];
    for chunk in &chunks {
        fixture.commit_chunk(writer.as_mut(), chunk).await;
    }
    let rows = fixture.rows().await;
    assert_eq!(names(&rows), chunks.concat());
    assert_ascending(&rows);
    assert_eq!(fixture.step.version, version + 3);
    assert_eq!(fixture.stored_version().await, version + 3);
}

async fn a_chunk_not_committed_leaves_no_rows_and_the_step_unchanged(db: TestDb) {
    let mut fixture = Fixture::new(db).await;
    let mut writer = fixture.writer();
    writer.open().await.expect("open");
    fixture.commit_chunk(writer.as_mut(), &numbered(0, 5)).await;
    let version = fixture.stored_version().await;
    for rolled_back_explicitly in [true, false] {
        let mut transaction = fixture.jobs.begin_chunk().await.expect("begin");
        writer
            .write(&numbered(5, 3000), transaction.as_mut())
            .await
            .expect("write");
        if rolled_back_explicitly {
            transaction.rollback().await.expect("rollback");
        } else {
            drop(transaction);
        }
        assert_eq!(names(&fixture.rows().await), numbered(0, 5));
        assert_eq!(fixture.stored_version().await, version);
        assert_eq!(fixture.step.version, version);
    }
    // The repository and the writer go on working after the rollbacks.
    fixture.commit_chunk(writer.as_mut(), &numbered(5, 2)).await;
    assert_eq!(names(&fixture.rows().await), numbered(0, 7));
    assert_eq!(fixture.stored_version().await, version + 1);
}

/// Values that trip up CSV, COPY text format or encodings; each at most 20 characters.
fn awkward_people() -> Vec<Person> {
    vec![
        person(None, Some("Doe")),
        person(Some("Jill"), None),
        person(None, None),
        person(Some(""), Some("")),
        person(Some("José"), Some("Straße")),
        person(Some("漢字"), Some("Ünïcødé ✓ 🦀")),
        person(Some("a,b"), Some("\"quoted\"")),
        person(Some("back\\slash"), Some("\\N")),
        person(Some("tab\there"), Some("new\nline")),
        person(Some("cr\r\nlf"), Some("O'Brien")),
        person(Some("  spaced  "), Some("NULL")),
        person(Some("x".repeat(20).as_str()), Some("é".repeat(20).as_str())),
    ]
}

async fn nulls_and_awkward_text_round_trip_exactly(db: TestDb) {
    let mut fixture = Fixture::new(db).await;
    let mut writer = fixture.writer();
    writer.open().await.expect("open");
    fixture
        .commit_chunk(writer.as_mut(), &awkward_people())
        .await;
    assert_eq!(names(&fixture.rows().await), awkward_people());
}

async fn open_twice_creates_the_table_as_specified(db: TestDb) {
    let fixture = Fixture::new(db).await;
    let mut writer = fixture.writer();
    writer.open().await.expect("open");
    writer.open().await.expect("open again");
    let columns = if fixture.db.is_sqlite() {
        fixture
            .db
            .query(
                "SELECT name, type, CAST(pk AS TEXT) FROM pragma_table_info('people') ORDER BY cid",
            )
            .await
    } else {
        fixture
            .db
            .query(
                "SELECT column_name::text, data_type::text, \
                 CAST(character_maximum_length AS TEXT) FROM information_schema.columns \
                 WHERE table_name = 'people' ORDER BY ordinal_position",
            )
            .await
    };
    let expected: &[[&str; 3]] = if fixture.db.is_sqlite() {
        &[
            ["person_id", "INTEGER", "1"],
            ["first_name", "VARCHAR(20)", "0"],
            ["last_name", "VARCHAR(20)", "0"],
        ]
    } else {
        &[
            ["person_id", "integer", ""],
            ["first_name", "character varying", "20"],
            ["last_name", "character varying", "20"],
        ]
    };
    let columns: Vec<Vec<String>> = columns
        .into_iter()
        .map(|row| row.into_iter().map(Option::unwrap_or_default).collect())
        .collect();
    assert_eq!(columns, expected);
}

async fn a_writer_for_the_other_database_refuses_the_transaction(db: TestDb) {
    let fixture = Fixture::new(db).await;
    let (mut writer, expected): (Box<dyn ItemWriter<Person>>, _) = if fixture.db.is_sqlite() {
        let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("pool");
        (
            Box::new(PgCopyWriter::new(pool, people())),
            "job repository is not PostgreSQL",
        )
    } else {
        let pool = sqlx::SqlitePool::connect_lazy("sqlite::memory:").expect("pool");
        (
            Box::new(SqliteInsertWriter::new(pool, people())),
            "job repository is not SQLite",
        )
    };
    let mut transaction = fixture.jobs.begin_chunk().await.expect("begin");
    let error = writer
        .write(&numbered(0, 1), transaction.as_mut())
        .await
        .expect_err("another database's transaction");
    assert!(error.to_string().contains(expected), "{error}");
}

async fn invalid_names_are_refused_before_any_sql(db: TestDb) {
    let fixture = Fixture::new(db).await;
    let mut target = people();
    target.columns[1] = "last_name) VALUES ('x', 'y'); --".into();
    let repository = fixture.repository.job_repository();
    let mut writer: Box<dyn ItemWriter<Person>> =
        match (postgres_pool(&*repository), sqlite_pool(&*repository)) {
            (Some(pool), _) => Box::new(PgCopyWriter::new(pool, target)),
            (_, Some(pool)) => Box::new(SqliteInsertWriter::new(pool, target)),
            (None, None) => unreachable!(),
        };
    let error = writer.open().await.expect_err("invalid column");
    assert!(error.to_string().contains("invalid column name"), "{error}");
    let mut transaction = fixture.jobs.begin_chunk().await.expect("begin");
    let error = writer
        .write(&numbered(0, 1), transaction.as_mut())
        .await
        .expect_err("invalid column");
    assert!(error.to_string().contains("invalid column name"), "{error}");
}

async fn a_row_with_the_wrong_field_count_fails_the_chunk(db: TestDb) {
    let mut fixture = Fixture::new(db).await;
    let mut writer = fixture.writer();
    writer.open().await.expect("open");
    let mut chunk = numbered(0, 600);
    chunk[550] = vec![Some("only one field".into())];
    {
        let mut transaction = fixture.jobs.begin_chunk().await.expect("begin");
        let error = writer
            .write(&chunk, transaction.as_mut())
            .await
            .expect_err("1 field of 2");
        assert!(error.to_string().contains("has 1 fields"), "{error}");
    }
    assert!(fixture.rows().await.is_empty());
    fixture.commit_chunk(writer.as_mut(), &numbered(0, 2)).await;
    assert_eq!(names(&fixture.rows().await), numbered(0, 2));
}

on_both_databases!(
    chunks_commit_in_order_with_the_step,
    a_chunk_not_committed_leaves_no_rows_and_the_step_unchanged,
    nulls_and_awkward_text_round_trip_exactly,
    open_twice_creates_the_table_as_specified,
    a_writer_for_the_other_database_refuses_the_transaction,
    invalid_names_are_refused_before_any_sql,
    a_row_with_the_wrong_field_count_fails_the_chunk,
);

mod postgres_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_value_too_long_fails_the_copy_and_the_chunk_rolls_back() {
        let mut fixture = Fixture::new(TestDb::postgres().await).await;
        let mut writer = fixture.writer();
        writer.open().await.expect("open");
        let mut chunk = numbered(0, 100);
        chunk[42] = person(Some("Jill"), Some(&"x".repeat(21)));
        let version = fixture.stored_version().await;
        {
            let mut transaction = fixture.jobs.begin_chunk().await.expect("begin");
            let error = writer
                .write(&chunk, transaction.as_mut())
                .await
                .expect_err("too long");
            assert!(error.to_string().contains("value too long"), "{error}");
        }
        assert!(fixture.rows().await.is_empty());
        assert_eq!(fixture.stored_version().await, version);
        fixture.commit_chunk(writer.as_mut(), &numbered(0, 3)).await;
        assert_eq!(names(&fixture.rows().await), numbered(0, 3));
    }

    /// The server process serving a chunk transaction.
    async fn backend_pid(transaction: &mut dyn ChunkTransaction) -> i32 {
        let connection = transaction
            .connection()
            .downcast_mut::<PgConnection>()
            .expect("a PostgreSQL connection");
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(connection)
            .await
            .expect("pg_backend_pid")
    }

    /// Chunks run one after another on one connection, kept outside the pool after a commit; a
    /// rollback or a dropped chunk transaction closes it, and the next chunk opens another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_transactions_keep_their_connection() {
        let mut fixture = Fixture::new(TestDb::postgres().await).await;
        let mut writer = fixture.writer();
        writer.open().await.expect("open");
        let mut pids = Vec::new();
        for end in ["commit", "commit", "rollback", "drop", "commit"] {
            let mut transaction = fixture.jobs.begin_chunk().await.expect("begin");
            pids.push(backend_pid(transaction.as_mut()).await);
            writer
                .write(&numbered(0, 10), transaction.as_mut())
                .await
                .expect("write");
            match end {
                "commit" => {
                    fixture.step.counters.write += 10;
                    transaction.commit(&mut fixture.step).await.expect("commit");
                }
                "rollback" => transaction.rollback().await.expect("rollback"),
                _ => drop(transaction),
            }
        }
        assert_eq!(pids[0], pids[1], "kept after a commit");
        assert_eq!(pids[1], pids[2], "kept after a commit");
        assert_ne!(pids[2], pids[3], "closed by a rollback");
        assert_ne!(pids[3], pids[4], "closed when dropped");
        assert_eq!(fixture.rows().await.len(), 30);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_insert_baseline_writes_the_same_rows() {
        let mut fixture = Fixture::new(TestDb::postgres().await).await;
        let pool = postgres_pool(&*fixture.repository.job_repository()).expect("pg");
        let mut writer = PgInsertWriter::<Person>::new(pool, people());
        writer.open().await.expect("open");
        writer.open().await.expect("open again");
        fixture.commit_chunk(&mut writer, &awkward_people()).await;
        fixture.commit_chunk(&mut writer, &numbered(0, 50)).await;
        let rows = fixture.rows().await;
        assert_eq!(names(&rows), [awkward_people(), numbered(0, 50)].concat());
        assert_ascending(&rows);
    }
}
