//! Test databases: a fresh SQLite file, or a fresh database on the PostgreSQL server that
//! `DATABASE_URL` names (`./scripts/test` starts a throwaway one).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use batch_repository::{ConnectOptions, Repository, SpringBatchVersion, connect};
use sqlx::{Connection, Executor, Row};

/// A database that lives as long as the test.
pub struct TestDb {
    /// The URL to connect to it.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
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

    /// Runs a query directly and returns every column as text.
    pub async fn query_strings(&self, sql: &str) -> Vec<Vec<String>> {
        fn text<R: Row>(row: &R, index: usize) -> String
        where
            usize: sqlx::ColumnIndex<R>,
            String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            row.try_get::<Option<String>, _>(index)
                .map(Option::unwrap_or_default)
                .or_else(|_| row.try_get::<i64, _>(index).map(|v| v.to_string()))
                .expect("a text or integer column")
        }
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("open sqlite");
            let rows = sqlx::query(AsRef::<str>::as_ref(&sql))
                .fetch_all(&mut conn)
                .await
                .expect("query");
            rows.iter()
                .map(|r| (0..r.len()).map(|i| text(r, i)).collect())
                .collect()
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("open pg");
            let rows = sqlx::query(AsRef::<str>::as_ref(&sql))
                .fetch_all(&mut conn)
                .await
                .expect("query");
            rows.iter()
                .map(|r| (0..r.len()).map(|i| text(r, i)).collect())
                .collect()
        }
    }

    /// Runs a `SELECT COUNT(*) ...` directly.
    pub async fn count(&self, sql: &str) -> i64 {
        self.query_strings(sql).await[0][0]
            .parse()
            .expect("a count")
    }

    /// The lower-case names of the tables and sequences in the database.
    pub async fn object_names(&self) -> Vec<String> {
        let sql = if self.url.starts_with("sqlite:") {
            "SELECT lower(name) FROM sqlite_master WHERE type = 'table' ORDER BY 1"
        } else {
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S') ORDER BY 1"
        };
        self.query_strings(sql)
            .await
            .into_iter()
            .map(|mut row| row.remove(0))
            .collect()
    }

    /// Runs `sql` directly, bypassing the repository.
    pub async fn execute(&self, sql: &str) {
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("open sqlite");
            conn.execute(AsRef::<str>::as_ref(&sql)).await.expect("sql");
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("open pg");
            conn.execute(AsRef::<str>::as_ref(&sql)).await.expect("sql");
        }
    }
}

/// A new, empty SQLite file.
pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("csv2db.db").display());
    TestDb {
        url,
        _dir: Some(dir),
    }
}

/// A new, empty database of the same kind as `db`.
pub async fn renew(db: &TestDb) -> TestDb {
    if db.url.starts_with("sqlite:") {
        sqlite()
    } else {
        postgres().await
    }
}

fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("PostgreSQL tests need DATABASE_URL; run ./scripts/test, which starts a throwaway server")
    })
}

/// A new, empty database on the test PostgreSQL server.
pub async fn postgres() -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = server_url();
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
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base.to_string(), format!("?{query}")),
        None => (server.clone(), String::new()),
    };
    let base = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(prefix, _)| prefix)
        .to_string();
    TestDb {
        url: format!("{base}/{name}{query}"),
        _dir: None,
    }
}

/// Declares `#[tokio::test]`s running `$body(TestDb)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::sqlite()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::postgres().await).await;
                }
            )*
        }
    };
}
