//! Test databases: a fresh SQLite file, or a fresh database on the PostgreSQL server that
//! `DATABASE_URL` names.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use batch_repository::{ConnectOptions, Repository, connect};
use sqlx::{Connection, Executor, Row};

/// A database that lives as long as the test.
pub struct TestDb {
    /// The URL to connect to it.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Whether this is a SQLite file.
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// Connects a repository (Spring Batch 6 schema).
    pub async fn connect(&self) -> Repository {
        connect(&ConnectOptions {
            url: self.url.clone(),
            ..Default::default()
        })
        .await
        .expect("connect to the test database")
    }

    /// Runs a query on a connection of its own; every column must be text (NULL is `None`).
    pub async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        fn text<R: Row>(row: &R) -> Vec<Option<String>>
        where
            usize: sqlx::ColumnIndex<R>,
            Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            (0..row.len())
                .map(|index| row.try_get(index).expect("a text column"))
                .collect()
        }
        if self.is_sqlite() {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("open sqlite");
            let rows = sqlx::query(AsRef::<str>::as_ref(&sql))
                .fetch_all(&mut conn)
                .await
                .expect("query");
            rows.iter().map(text).collect()
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("open pg");
            let rows = sqlx::query(AsRef::<str>::as_ref(&sql))
                .fetch_all(&mut conn)
                .await
                .expect("query");
            rows.iter().map(text).collect()
        }
    }

    /// Runs a query returning one text value.
    pub async fn scalar(&self, sql: &str) -> String {
        self.query(sql).await[0][0].clone().expect("not NULL")
    }

    /// Runs `sql` directly, bypassing the repository.
    pub async fn execute(&self, sql: &str) {
        if self.is_sqlite() {
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

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| panic!("PostgreSQL tests need DATABASE_URL (postgres://…)"))
}

/// A new, empty database on the test PostgreSQL server.
pub async fn postgres() -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = server_url();
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros());
    let name = format!(
        "csv2db_io_test_{}_{}_{micros}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
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
