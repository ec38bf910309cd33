//! The SQLite backend: the embedded default.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Column, Row as _, TypeInfo, ValueRef};

use crate::sql::{Arg, Backend, Row, SQLITE_TIME_FORMAT, Tx, Value, impl_sqlx_tx, retry_connect};

/// A SQLite metadata database file.
pub(crate) struct Sqlite {
    pool: SqlitePool,
}

impl Sqlite {
    /// Opens (creating if needed) the database file, in WAL mode so readers do not wait for the
    /// writer, waiting up to 30 s for the write lock. Switching a new file to WAL needs an
    /// exclusive lock that SQLite does not wait for, so processes opening a new file together
    /// retry.
    pub(crate) async fn connect(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = retry_connect(Duration::from_secs(30), is_busy, || {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone())
        })
        .await?;
        Ok(Sqlite { pool })
    }

    /// The connection pool.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Backend for Sqlite {
    const LOCK_ROWS: &'static str = "";

    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        Ok(Box::new(SqliteTx(
            self.pool.begin_with("BEGIN IMMEDIATE").await?,
        )))
    }

    async fn begin_read(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        Ok(Box::new(SqliteTx(self.pool.begin().await?)))
    }
}

/// SQLITE_BUSY: another connection holds a lock.
fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("5"))
}

/// A SQLite transaction.
pub(crate) struct SqliteTx(sqlx::Transaction<'static, sqlx::Sqlite>);

fn bind<'q>(
    mut query: Query<'q, sqlx::Sqlite, SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, sqlx::Sqlite, SqliteArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::Time(value) => {
                query.bind(value.map(|time| time.format(SQLITE_TIME_FORMAT).to_string()))
            }
        };
    }
    query
}

fn decode(row: &SqliteRow) -> Result<Row, sqlx::Error> {
    let mut values = Vec::with_capacity(row.columns().len());
    for column in row.columns() {
        let index = column.ordinal();
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            values.push(Value::Null);
            continue;
        }
        let storage_class = raw.type_info().name().to_string();
        let value = match storage_class.as_str() {
            "INTEGER" => Value::Int(row.try_get_unchecked::<i64, _>(index)?),
            "REAL" => Value::Real(row.try_get_unchecked::<f64, _>(index)?),
            _ => Value::Text(row.try_get_unchecked::<String, _>(index)?),
        };
        values.push(value);
    }
    Ok(Row(values))
}

impl SqliteTx {
    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.0
    }
}

impl_sqlx_tx!(SqliteTx);

/// Spring Batch's `SqliteMaxValueIncrementer`: insert a row into the sequence table, take the
/// largest rowid, delete the rows below it.
async fn next_id(connection: &mut SqliteConnection, sequence: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(&format!("INSERT INTO {sequence} VALUES (NULL)"))
        .execute(&mut *connection)
        .await?;
    let id: i64 = sqlx::query_scalar(&format!("SELECT MAX(ROWID) FROM {sequence}"))
        .fetch_one(&mut *connection)
        .await?;
    sqlx::query(&format!("DELETE FROM {sequence} WHERE ID < $1"))
        .bind(id)
        .execute(&mut *connection)
        .await?;
    Ok(id)
}
