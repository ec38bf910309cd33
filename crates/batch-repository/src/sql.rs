//! The small SQL surface the repository logic needs, implemented once per database.
//!
//! The metadata statements are the same text on PostgreSQL and SQLite (both accept `$1`
//! placeholders); only values, id generation, locking and the DDL differ. [`Tx`] hides those
//! differences so that [`crate::store`] holds the repository logic once.

use async_trait::async_trait;
use batch_core::error::RepositoryError;
use chrono::NaiveDateTime;

/// A bound statement argument; the `None`s are typed NULLs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// BIGINT / INTEGER.
    Int(Option<i64>),
    /// VARCHAR / TEXT / CHAR.
    Text(Option<String>),
    /// TIMESTAMP.
    Time(Option<NaiveDateTime>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}
impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(Some(value.to_string()))
    }
}
impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(Some(value))
    }
}
impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Arg::Text(value)
    }
}
impl From<NaiveDateTime> for Arg {
    fn from(value: NaiveDateTime) -> Self {
        Arg::Time(Some(value))
    }
}
impl From<Option<NaiveDateTime>> for Arg {
    fn from(value: Option<NaiveDateTime>) -> Self {
        Arg::Time(value)
    }
}

/// A value read from a result column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Time(NaiveDateTime),
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

fn corrupt(index: usize, expected: &str, found: &Value) -> RepositoryError {
    RepositoryError::Corrupt(format!(
        "column {index}: expected {expected}, found {found:?}"
    ))
}

impl Row {
    fn value(&self, index: usize) -> &Value {
        self.0.get(index).unwrap_or(&Value::Null)
    }

    /// An integer column that may be NULL.
    pub(crate) fn opt_i64(&self, index: usize) -> Result<Option<i64>, RepositoryError> {
        match self.value(index) {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(*value)),
            Value::Real(value) if value.fract() == 0.0 => Ok(Some(*value as i64)),
            Value::Text(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| corrupt(index, "an integer", self.value(index))),
            other => Err(corrupt(index, "an integer", other)),
        }
    }

    /// An integer column; NULL reads as 0, as JDBC's `getLong` does.
    pub(crate) fn i64(&self, index: usize) -> Result<i64, RepositoryError> {
        Ok(self.opt_i64(index)?.unwrap_or(0))
    }

    /// A text column that may be NULL.
    pub(crate) fn opt_string(&self, index: usize) -> Result<Option<String>, RepositoryError> {
        match self.value(index) {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            Value::Int(value) => Ok(Some(value.to_string())),
            other => Err(corrupt(index, "text", other)),
        }
    }

    /// A text column; NULL reads as the empty string.
    pub(crate) fn string(&self, index: usize) -> Result<String, RepositoryError> {
        Ok(self.opt_string(index)?.unwrap_or_default())
    }

    /// A timestamp column that may be NULL. SQLite stores timestamps as text
    /// (`yyyy-MM-dd HH:mm:ss.SSS`, as csv2db writes) or as epoch milliseconds (as the SQLite JDBC
    /// driver writes by default); both are read.
    pub(crate) fn opt_time(&self, index: usize) -> Result<Option<NaiveDateTime>, RepositoryError> {
        match self.value(index) {
            Value::Null => Ok(None),
            Value::Time(time) => Ok(Some(*time)),
            Value::Text(text) => parse_time(text)
                .map(Some)
                .ok_or_else(|| corrupt(index, "a timestamp", self.value(index))),
            Value::Int(millis) => chrono::DateTime::from_timestamp_millis(*millis)
                .map(|utc| Some(utc.with_timezone(&chrono::Local).naive_local()))
                .ok_or_else(|| corrupt(index, "a timestamp", self.value(index))),
            other => Err(corrupt(index, "a timestamp", other)),
        }
    }

    /// A timestamp column that must not be NULL.
    pub(crate) fn time(&self, index: usize) -> Result<NaiveDateTime, RepositoryError> {
        self.opt_time(index)?
            .ok_or_else(|| corrupt(index, "a timestamp", &Value::Null))
    }
}

/// The text form csv2db writes timestamps in on SQLite, which the SQLite JDBC driver parses.
pub(crate) const SQLITE_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

fn parse_time(text: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text.trim(), format).ok())
}

/// A transaction on the metadata database.
#[async_trait]
pub(crate) trait Tx: Send {
    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error>;
    /// Runs a query; returns its rows.
    async fn query(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, sqlx::Error>;
    /// The next value of a Spring Batch sequence (`BATCH_JOB_EXECUTION_SEQ`, ...).
    async fn next_id(&mut self, sequence: &str) -> Result<i64, sqlx::Error>;
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error>;
    /// Rolls back. Dropping the transaction rolls it back as well, later.
    async fn rollback(self: Box<Self>) -> Result<(), sqlx::Error>;
    /// The connection the transaction runs on (`sqlx::PgConnection` or
    /// `sqlx::SqliteConnection`), for item writers sharing the transaction.
    fn connection(&mut self) -> &mut (dyn std::any::Any + Send);
}

/// A metadata database: PostgreSQL or SQLite.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// The suffix that locks the rows a SELECT reads until the transaction ends (`FOR UPDATE`),
    /// or "" where the transaction already holds the database's write lock.
    const LOCK_ROWS: &'static str;
    /// A transaction that may write.
    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error>;
    /// A transaction that only reads.
    async fn begin_read(&self) -> Result<Box<dyn Tx>, sqlx::Error>;
    /// A transaction for one chunk of a chunk step.
    async fn begin_chunk(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        self.begin().await
    }
}

/// Implements [`Tx`] for a transaction type with a `conn(&mut self)` method that gives its
/// connection, given `bind`, `decode` and `next_id` functions in scope. For a newtype over a
/// `sqlx::Transaction`, `impl_sqlx_tx!(Type)`; otherwise `impl_sqlx_tx! { Type, commit and
/// rollback methods }` (in braces, which rustfmt leaves alone).
macro_rules! impl_sqlx_tx {
    ($tx:ty) => {
        impl_sqlx_tx! {
            $tx,
            async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
                self.0.commit().await
            }

            async fn rollback(self: Box<Self>) -> Result<(), sqlx::Error> {
                self.0.rollback().await
            }
        }
    };
    ($tx:ty, $($commit_and_rollback:tt)*) => {
        #[async_trait::async_trait]
        impl Tx for $tx {
            async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
                let query = bind(sqlx::query(sql), args);
                Ok(query.execute(self.conn()).await?.rows_affected())
            }

            async fn query(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, sqlx::Error> {
                let query = bind(sqlx::query(sql), args);
                query
                    .fetch_all(self.conn())
                    .await?
                    .iter()
                    .map(decode)
                    .collect()
            }

            async fn next_id(&mut self, sequence: &str) -> Result<i64, sqlx::Error> {
                next_id(self.conn(), sequence).await
            }

            fn connection(&mut self) -> &mut (dyn std::any::Any + Send) {
                self.conn()
            }

            $($commit_and_rollback)*
        }
    };
}
pub(crate) use impl_sqlx_tx;

/// Runs `attempt` until it succeeds, fails with an error `transient` does not accept, or
/// `patience` has passed; waits a little between attempts.
pub(crate) async fn retry_connect<T, F, Fut>(
    patience: std::time::Duration,
    transient: fn(&sqlx::Error) -> bool,
    mut attempt: F,
) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = std::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        match attempt().await {
            Err(error) if transient(&error) && std::time::Instant::now() < deadline => {
                tracing::debug!(%error, "database not ready yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Wraps a database error.
pub(crate) fn db(error: sqlx::Error) -> RepositoryError {
    RepositoryError::Database(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_timestamps_as_csv2db_and_the_sqlite_jdbc_driver_write_them() {
        let row = Row(vec![
            Value::Text("2026-01-02 03:04:05.678".into()),
            Value::Int(0),
            Value::Null,
        ]);
        assert_eq!(
            row.time(0)
                .expect("text")
                .format(SQLITE_TIME_FORMAT)
                .to_string(),
            "2026-01-02 03:04:05.678"
        );
        assert!(row.opt_time(1).expect("millis").is_some());
        assert_eq!(row.opt_time(2).expect("null"), None);
        assert!(Row(vec![Value::Text("soon".into())]).time(0).is_err());
    }
}
