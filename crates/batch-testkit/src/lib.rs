//! Test support for the csv2db workspace, not part of the product: throwaway test databases
//! (a fresh SQLite file in a temporary directory, or a fresh database on the PostgreSQL server
//! that `DATABASE_URL` names; `./scripts/test` starts a throwaway one), raw queries on them,
//! and [`on_both_databases!`] to run one test body on each; job parameters and one-step jobs
//! launched on them; [`Kubectl`] for end-to-end tests on a cluster.

mod kubectl;

pub use kubectl::Kubectl;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use batch_core::BatchStatus;
use batch_core::job::Job;
use batch_core::job::parameters::{JobParameter, JobParameters};
use batch_core::launch::{JobLauncher, LaunchSettings};
use batch_core::repository::JobRepository;
use batch_core::step::{StepExecution, StopSignal};
use batch_repository::{ConnectOptions, Repository, SpringBatchVersion, connect};
use sqlx::{Connection, Executor, Row};

/// Which database server a [`TestDb`] lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A SQLite file in the test's temporary directory.
    Sqlite,
    /// A database of its own on the PostgreSQL server of `DATABASE_URL`.
    Postgres,
}

/// A new, empty database that lives as long as the test, with a scratch directory.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to connect to it.
    pub url: String,
    /// The kind of database.
    pub kind: DbKind,
    /// Holds the SQLite file, and any files the test writes; deleted on drop.
    dir: tempfile::TempDir,
}

impl TestDb {
    /// A new, empty SQLite file, `csv2db.db` in a new temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("csv2db.db").display());
        TestDb {
            url,
            kind: DbKind::Sqlite,
            dir,
        }
    }

    /// A new, empty database on the PostgreSQL server of `DATABASE_URL` (its query string, if
    /// any, is kept), and a new temporary directory.
    ///
    /// # Panics
    /// When `DATABASE_URL` is unset or the database cannot be created.
    pub async fn postgres() -> TestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "PostgreSQL tests need DATABASE_URL; run ./scripts/test, which starts a throwaway server"
            )
        });
        let name = format!(
            "csv2db_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_micros()
        );
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("connect to DATABASE_URL");
        admin
            .execute(AsRef::<str>::as_ref(&format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        let (base, query) = server.split_once('?').unwrap_or((&server, ""));
        let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        TestDb {
            url: format!("{base}/{name}{query}"),
            kind: DbKind::Postgres,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A new, empty database of the same kind as this one.
    pub async fn renew(&self) -> TestDb {
        match self.kind {
            DbKind::Sqlite => TestDb::sqlite(),
            DbKind::Postgres => TestDb::postgres().await,
        }
    }

    /// Whether this is a SQLite file.
    pub fn is_sqlite(&self) -> bool {
        self.kind == DbKind::Sqlite
    }

    /// The test's temporary directory (where a SQLite database's file lives).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Connects a repository following `version`.
    pub async fn connect(&self, version: SpringBatchVersion) -> Repository {
        connect(&ConnectOptions {
            url: self.url.clone(),
            version,
            ..Default::default()
        })
        .await
        .expect("connect to the test database")
    }

    /// The job repository on it, in Spring Batch's default schema version.
    pub async fn job_repository(&self) -> Arc<dyn JobRepository> {
        self.connect(SpringBatchVersion::default())
            .await
            .job_repository()
    }

    /// Runs `sql` directly, bypassing the repository.
    pub async fn execute(&self, sql: &str) {
        match self.kind {
            DbKind::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("open sqlite");
                conn.execute(sql).await.expect("sql");
            }
            DbKind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("open pg");
                conn.execute(sql).await.expect("sql");
            }
        }
    }

    /// Runs a query on a connection of its own; every column is text or an integer, returned
    /// as text (NULL is `None`). Fails while the database or a table cannot be read yet.
    pub async fn try_query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        async fn rows<C: Connection>(
            url: &str,
            sql: &str,
        ) -> Result<Vec<Vec<Option<String>>>, sqlx::Error>
        where
            for<'c> &'c mut C: Executor<'c, Database = C::Database>,
            for<'q> <C::Database as sqlx::Database>::Arguments<'q>:
                sqlx::IntoArguments<'q, C::Database>,
            Option<String>: for<'r> sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
            Option<i64>: for<'r> sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
            usize: sqlx::ColumnIndex<<C::Database as sqlx::Database>::Row>,
        {
            let mut conn = C::connect(url).await?;
            let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
            rows.iter()
                .map(|row| {
                    (0..row.len())
                        .map(|index| {
                            row.try_get::<Option<String>, _>(index).or_else(|_| {
                                row.try_get::<Option<i64>, _>(index)
                                    .map(|value| value.map(|v| v.to_string()))
                            })
                        })
                        .collect()
                })
                .collect()
        }
        match self.kind {
            DbKind::Sqlite => rows::<sqlx::SqliteConnection>(&self.url, sql).await,
            DbKind::Postgres => rows::<sqlx::PgConnection>(&self.url, sql).await,
        }
    }

    /// Like [`TestDb::try_query`], failing the test if the query fails.
    pub async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.try_query(sql).await.expect("query")
    }

    /// Runs a query and returns every column as text (NULL is empty).
    pub async fn query_strings(&self, sql: &str) -> Vec<Vec<String>> {
        self.query(sql)
            .await
            .into_iter()
            .map(|row| row.into_iter().map(Option::unwrap_or_default).collect())
            .collect()
    }

    /// Like [`TestDb::column`], for polling while the schema may not exist yet.
    pub async fn try_column(&self, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        Ok(self
            .try_query(sql)
            .await?
            .into_iter()
            .map(|row| row.into_iter().next().flatten().unwrap_or_default())
            .collect())
    }

    /// Runs a query and returns the first column of every row as text (NULL is empty).
    pub async fn column(&self, sql: &str) -> Vec<String> {
        self.try_column(sql).await.expect("query")
    }

    /// Runs a query returning one value, which must not be NULL.
    pub async fn scalar(&self, sql: &str) -> String {
        self.query(sql).await[0][0].clone().expect("not NULL")
    }

    /// Runs a `SELECT COUNT(*) ...`.
    pub async fn count(&self, sql: &str) -> i64 {
        self.query_strings(sql).await[0][0]
            .parse()
            .expect("a count")
    }

    /// The number in the first row, or -1 when there is none.
    pub async fn number(&self, sql: &str) -> i64 {
        first_number(&self.column(sql).await)
    }

    /// Like [`TestDb::number`], and -1 while the query cannot run yet.
    pub async fn poll_number(&self, sql: &str) -> i64 {
        self.try_column(sql)
            .await
            .map_or(-1, |values| first_number(&values))
    }

    /// The lower-case names of the tables (and, on PostgreSQL, sequences) in the database.
    pub async fn object_names(&self) -> Vec<String> {
        let sql = match self.kind {
            DbKind::Sqlite => {
                "SELECT lower(name) FROM sqlite_master WHERE type = 'table' ORDER BY 1"
            }
            DbKind::Postgres => {
                "SELECT c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S') ORDER BY 1"
            }
        };
        self.column(sql).await
    }
}

fn first_number(values: &[String]) -> i64 {
    values.first().and_then(|v| v.parse().ok()).unwrap_or(-1)
}

/// Declares `#[tokio::test]`s running each named `async fn(TestDb)` on a new SQLite file (in
/// `mod sqlite_backend`) and on a new PostgreSQL database (in `mod postgres_backend`). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestDb::postgres().await).await;
                }
            )*
        }
    };
}

/// Identifying string job parameters, in the given order.
pub fn string_parameters(pairs: &[(&str, &str)]) -> JobParameters {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), JobParameter::string(*value)))
        .collect()
}

/// Runs `job`, which has one step, on `repository` with the default launch settings; returns
/// the job's status and its step's execution.
///
/// # Panics
/// When the launch is refused or the job does not have exactly one step execution.
pub async fn launch_single_step(
    repository: &Arc<dyn JobRepository>,
    job: &Job,
    parameters: JobParameters,
    stop: StopSignal,
) -> (BatchStatus, StepExecution) {
    let execution = JobLauncher::new(repository.clone(), LaunchSettings::default())
        .run(job, parameters, stop)
        .await
        .expect("launch");
    let mut steps = repository
        .step_executions(execution.id)
        .await
        .expect("step executions");
    assert_eq!(steps.len(), 1, "one step execution");
    (execution.status, steps.remove(0))
}
