//! The PostgreSQL backend.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Connection, Row as _, TypeInfo, ValueRef};

use crate::sql::{Arg, Backend, Row, Tx, Value, impl_sqlx_tx, retry_connect};

/// A PostgreSQL metadata database.
pub(crate) struct Postgres {
    pool: PgPool,
}

impl Postgres {
    /// Connects a small pool, first proving the server reachable with one connection, retried
    /// for up to 10 s while the server refuses connections or is starting up, so that the error
    /// reported is the server's own ("connection refused", "password authentication failed").
    pub(crate) async fn connect(options: PgConnectOptions) -> Result<Self, sqlx::Error> {
        retry_connect(Duration::from_secs(10), is_transient, || async {
            PgConnection::connect_with(&options).await?.close().await
        })
        .await?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // A broken connection fails its statement and the step, which a restart resumes;
            // pinging before every transaction would cost a round trip per chunk.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Postgres { pool })
    }

    /// The connection pool.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Backend for Postgres {
    const LOCK_ROWS: &'static str = " FOR UPDATE";

    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        Ok(Box::new(PgTx(self.pool.begin().await?)))
    }

    async fn begin_read(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        self.begin().await
    }

    /// A chunk commits without waiting for its WAL to reach disk (`synchronous_commit = off`
    /// for this transaction only). The chunk's rows and the step's progress stay atomic, and
    /// PostgreSQL replays WAL in order, so a server crash can only lose the newest chunks
    /// together with their progress, which a restart then redoes. The step's and the job's
    /// final updates commit synchronously, which makes every chunk before them durable before
    /// COMPLETED is recorded.
    async fn begin_chunk(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        Ok(Box::new(PgTx(
            self.pool
                .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                .await?,
        )))
    }
}

/// Connection failures worth retrying: the network, or a server still starting up.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(database) => database.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// A PostgreSQL transaction.
pub(crate) struct PgTx(sqlx::Transaction<'static, sqlx::Postgres>);

fn bind<'q>(
    mut query: Query<'q, sqlx::Postgres, PgArguments>,
    args: Vec<Arg>,
) -> Query<'q, sqlx::Postgres, PgArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::Time(value) => query.bind(value),
        };
    }
    query
}

fn decode(row: &PgRow) -> Result<Row, sqlx::Error> {
    let mut values = Vec::with_capacity(row.columns().len());
    for column in row.columns() {
        let index = column.ordinal();
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            values.push(Value::Null);
            continue;
        }
        let type_name = raw.type_info().name().to_string();
        let value = match type_name.as_str() {
            "INT8" => Value::Int(row.try_get::<i64, _>(index)?),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(index)?)),
            "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(index)?)),
            "FLOAT8" => Value::Real(row.try_get::<f64, _>(index)?),
            "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(index)?)),
            "TIMESTAMP" => Value::Time(row.try_get::<chrono::NaiveDateTime, _>(index)?),
            "TIMESTAMPTZ" => Value::Time(
                row.try_get::<chrono::DateTime<chrono::Utc>, _>(index)?
                    .with_timezone(&chrono::Local)
                    .naive_local(),
            ),
            _ => Value::Text(row.try_get::<String, _>(index)?),
        };
        values.push(value);
    }
    Ok(Row(values))
}

impl_sqlx_tx!(
    PgTx,
    async fn next_id(&mut self, sequence: &str) -> Result<i64, sqlx::Error> {
        let sql = format!("SELECT nextval('{sequence}')");
        sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(&mut *self.0)
            .await
    }
);
