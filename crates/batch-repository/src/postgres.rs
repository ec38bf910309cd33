//! The PostgreSQL backend.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Connection, Row as _, TypeInfo, ValueRef};

use crate::sql::{Arg, Backend, Row, Tx, Value, impl_sqlx_tx, retry_connect};

/// A PostgreSQL metadata database.
pub(crate) struct Postgres {
    pool: PgPool,
    chunk_connection: Arc<ChunkConnection>,
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
        Ok(Postgres {
            pool,
            chunk_connection: Arc::default(),
        })
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
    ///
    /// Chunks run one after another on a connection kept outside the pool
    /// ([`ChunkConnection`]). When the kept connection no longer works (the server or a proxy
    /// closed it while idle), the chunk begins on a new one.
    async fn begin_chunk(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        const BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit = off";
        let home = Arc::clone(&self.chunk_connection);
        if let Some(mut connection) = self.chunk_connection.take() {
            match run(&mut connection, BEGIN).await {
                Ok(()) => return Ok(Box::new(PgChunkTx { connection, home })),
                Err(error) => tracing::debug!(%error, "the kept chunk connection failed"),
            }
        }
        let mut connection = self.pool.acquire().await?.detach();
        run(&mut connection, BEGIN).await?;
        Ok(Box::new(PgChunkTx { connection, home }))
    }
}

/// The connection chunk transactions run on, kept between chunks. A pooled connection costs a
/// round trip to the server each time it returns to the pool (sqlx pings it), which for a
/// chunk step is one more wait per chunk while the server has nothing to do.
#[derive(Default)]
struct ChunkConnection(Mutex<Option<PgConnection>>);

impl ChunkConnection {
    fn take(&self) -> Option<PgConnection> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Keeps `connection` for the next chunk; a second one (from chunks run concurrently) is
    /// dropped, which closes its socket.
    fn put(&self, connection: PgConnection) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            *kept = Some(connection);
        }
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

impl PgTx {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}

impl_sqlx_tx!(PgTx);

/// A chunk's transaction, on the [`ChunkConnection`], to which the connection returns when the
/// transaction commits. A rollback closes the connection instead: a failed chunk may have left
/// it mid-protocol (an aborted COPY), and the server rolls back what it had. Dropped, the
/// transaction drops its connection, with the same effect.
struct PgChunkTx {
    connection: PgConnection,
    home: Arc<ChunkConnection>,
}

impl PgChunkTx {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}

impl_sqlx_tx! {
    PgChunkTx,
    async fn commit(mut self: Box<Self>) -> Result<(), sqlx::Error> {
        run(&mut self.connection, "COMMIT").await?;
        self.home.put(self.connection);
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), sqlx::Error> {
        sqlx::Connection::close(self.connection).await
    }
}

/// Runs `statement`, one or more statements without parameters (sent with the simple query
/// protocol).
async fn run(connection: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(connection, statement).await?;
    Ok(())
}

async fn next_id(connection: &mut PgConnection, sequence: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(&format!("SELECT nextval('{sequence}')"))
        .fetch_one(connection)
        .await
}
