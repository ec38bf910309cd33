//! Writers into a PostgreSQL table, inside the chunk's transaction of a PostgreSQL job
//! repository: [`PgCopyWriter`] streams each chunk with `COPY … FROM STDIN` in text format;
//! [`PgInsertWriter`] inserts row by row as Spring's `JdbcBatchItemWriter` does (the benchmark's
//! baseline).
//!
//! The rows commit with the step's progress, so the job repository must live in the same
//! PostgreSQL database as the target table; with any other repository `write` fails.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use batch_core::step::BoxError;
use batch_core::step::item::{ChunkTransaction, ItemWriter};
use sqlx::PgPool;
use sqlx::postgres::{PgConnection, PgCopyIn};

use crate::table::{TableRow, TableTarget, WriteError, cached_statement};

/// How many encoded bytes are collected before they are sent as one `CopyData` message: small
/// enough that the server starts on a chunk's first rows while the rest are being encoded,
/// large enough that a message costs little next to its rows (about 2,500 people).
const SEND_SIZE: usize = 64 << 10;

/// Writes each chunk into a PostgreSQL table with one `COPY FROM STDIN` in text format, in the
/// chunk's transaction.
///
/// Text format costs the server less than binary format does for short text columns (about 3 %
/// of a `people` import: binary fields are copied once more, and each goes through its own
/// receive-function call), and any column type accepts it. Fields are sent as UTF-8; a value
/// the column rejects (too long, a NUL byte, not a number for a numeric column) fails the whole
/// chunk.
pub struct PgCopyWriter<T> {
    pool: PgPool,
    target: TableTarget,
    statement: Option<Arc<str>>,
    buffer: Vec<u8>,
    rows: PhantomData<fn(&T)>,
}

impl<T: TableRow> PgCopyWriter<T> {
    /// A writer into `target` whose table [`ItemWriter::open`] creates through `pool` (the job
    /// repository's pool).
    pub fn new(pool: PgPool, target: TableTarget) -> Self {
        PgCopyWriter {
            pool,
            target,
            statement: None,
            buffer: Vec::new(),
            rows: PhantomData,
        }
    }

    /// The target table.
    pub fn target(&self) -> &TableTarget {
        &self.target
    }

    /// The `COPY` statement, built once the target is validated.
    fn statement(&mut self) -> Result<Arc<str>, WriteError> {
        cached_statement(&mut self.statement, &self.target, |target| {
            format!(
                "COPY {} ({}) FROM STDIN",
                target.table,
                target.column_list()
            )
        })
    }
}

#[async_trait]
impl<T: TableRow> ItemWriter<T> for PgCopyWriter<T> {
    /// Validates the target and runs its `create_postgres` DDL, when not empty.
    async fn open(&mut self) -> Result<(), BoxError> {
        self.statement()?;
        create_table(&self.pool, &self.target).await?;
        Ok(())
    }

    async fn write(
        &mut self,
        items: &[T],
        transaction: &mut dyn ChunkTransaction,
    ) -> Result<(), BoxError> {
        let statement = self.statement()?;
        let connection = pg_connection(transaction, &self.target)?;
        if items.is_empty() {
            return Ok(());
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let result = copy_chunk(connection, &statement, items, &self.target, &mut buffer).await;
        buffer.clear();
        self.buffer = buffer;
        Ok(result?)
    }
}

/// Runs the target's PostgreSQL DDL, when there is one.
async fn create_table(pool: &PgPool, target: &TableTarget) -> Result<(), WriteError> {
    if target.create_postgres.trim().is_empty() {
        return Ok(());
    }
    sqlx::raw_sql(&target.create_postgres)
        .execute(pool)
        .await
        .map_err(|error| target.database_error("creating", error))?;
    Ok(())
}

/// The PostgreSQL connection of the chunk's transaction.
fn pg_connection<'t>(
    transaction: &'t mut dyn ChunkTransaction,
    target: &TableTarget,
) -> Result<&'t mut PgConnection, WriteError> {
    match transaction.connection().downcast_mut::<PgConnection>() {
        Some(connection) => Ok(connection),
        None => Err(WriteError::WrongRepository {
            expected: "PostgreSQL",
            table: target.table.clone(),
        }),
    }
}

/// Streams `items` through one `COPY`, aborting it on a local error.
async fn copy_chunk<T: TableRow>(
    connection: &mut PgConnection,
    statement: &str,
    items: &[T],
    target: &TableTarget,
    buffer: &mut Vec<u8>,
) -> Result<(), WriteError> {
    let copy_error = |error| target.database_error("COPY into", error);
    let mut copy = connection
        .copy_in_raw(statement)
        .await
        .map_err(copy_error)?;
    for item in items {
        if let Err(error) = encode_row(buffer, item, target) {
            abort(copy, &error).await;
            return Err(error);
        }
        if buffer.len() >= SEND_SIZE {
            if let Err(error) = send(&mut copy, buffer).await {
                let error = copy_error(error);
                abort(copy, &error).await;
                return Err(error);
            }
            buffer.clear();
        }
    }
    if let Err(error) = send(&mut copy, buffer).await {
        let error = copy_error(error);
        abort(copy, &error).await;
        return Err(error);
    }
    let written = copy.finish().await.map_err(copy_error)?;
    if written != items.len() as u64 {
        return Err(WriteError::RowCount {
            table: target.table.clone(),
            expected: items.len(),
            written,
        });
    }
    Ok(())
}

/// Sends the encoded bytes as `CopyData`.
async fn send(copy: &mut PgCopyIn<&mut PgConnection>, buffer: &[u8]) -> Result<(), sqlx::Error> {
    copy.send(buffer).await.map(|_| ())
}

/// Tells the server to discard the `COPY`; the transaction is then rolled back by its owner.
async fn abort(copy: PgCopyIn<&mut PgConnection>, error: &WriteError) {
    if let Err(abort_error) = copy.abort(error.to_string()).await {
        tracing::debug!(%abort_error, "aborting COPY failed");
    }
}

/// Appends one row in COPY's text format: fields separated by tabs, `\N` for NULL, a newline
/// at the end.
fn encode_row<T: TableRow>(
    buffer: &mut Vec<u8>,
    row: &T,
    target: &TableTarget,
) -> Result<(), WriteError> {
    target.check_row(row)?;
    for index in 0..target.columns.len() {
        if index > 0 {
            buffer.push(b'\t');
        }
        match row.field(index) {
            None => buffer.extend_from_slice(b"\\N"),
            Some(text) => escape_field(buffer, text.as_bytes()),
        }
    }
    buffer.push(b'\n');
    Ok(())
}

/// Appends a field with the bytes that text format gives a meaning escaped: backslash, tab,
/// newline and carriage return.
fn escape_field(buffer: &mut Vec<u8>, field: &[u8]) {
    let mut start = 0;
    for (index, &byte) in field.iter().enumerate() {
        let escape = match byte {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            _ => continue,
        };
        buffer.extend_from_slice(&field[start..index]);
        buffer.extend_from_slice(&[b'\\', escape]);
        start = index + 1;
    }
    buffer.extend_from_slice(&field[start..]);
}

/// Inserts each item with its own `INSERT INTO t (c1, c2) VALUES ($1, $2)` in the chunk's
/// transaction (prepared once per connection by sqlx's statement cache), as Spring's
/// `JdbcBatchItemWriter` does: the baseline [`PgCopyWriter`] is measured against.
pub struct PgInsertWriter<T> {
    pool: PgPool,
    target: TableTarget,
    statement: Option<Arc<str>>,
    rows: PhantomData<fn(&T)>,
}

impl<T: TableRow> PgInsertWriter<T> {
    /// A writer into `target` whose table [`ItemWriter::open`] creates through `pool`.
    pub fn new(pool: PgPool, target: TableTarget) -> Self {
        PgInsertWriter {
            pool,
            target,
            statement: None,
            rows: PhantomData,
        }
    }

    /// The `INSERT` statement, built once the target is validated.
    fn statement(&mut self) -> Result<Arc<str>, WriteError> {
        cached_statement(&mut self.statement, &self.target, |target| {
            let placeholders: Vec<String> = (1..=target.columns.len())
                .map(|n| format!("${n}"))
                .collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({})",
                target.table,
                target.column_list(),
                placeholders.join(", ")
            )
        })
    }
}

#[async_trait]
impl<T: TableRow> ItemWriter<T> for PgInsertWriter<T> {
    /// Validates the target and runs its `create_postgres` DDL, when not empty.
    async fn open(&mut self) -> Result<(), BoxError> {
        self.statement()?;
        create_table(&self.pool, &self.target).await?;
        Ok(())
    }

    async fn write(
        &mut self,
        items: &[T],
        transaction: &mut dyn ChunkTransaction,
    ) -> Result<(), BoxError> {
        let statement = self.statement()?;
        let target = &self.target;
        let connection = pg_connection(transaction, target)?;
        for item in items {
            target.check_row(item)?;
            let mut query = sqlx::query(&statement[..]);
            for index in 0..target.columns.len() {
                query = query.bind(item.field(index));
            }
            query
                .execute(&mut *connection)
                .await
                .map_err(|error| target.database_error("inserting into", error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> TableTarget {
        TableTarget {
            table: "people".into(),
            columns: vec!["first_name".into(), "last_name".into()],
            create_postgres: String::new(),
            create_sqlite: String::new(),
        }
    }

    #[test]
    fn rows_are_encoded_in_copy_text_format() {
        let rows: Vec<Vec<Option<String>>> = vec![
            vec![Some("Jill".into()), Some("Doe".into())],
            vec![None, Some("é".into())],
            vec![Some(String::new()), None],
            vec![Some("a\\b\tc".into()), Some("d\ne\rf\\N".into())],
        ];
        let mut buffer = Vec::new();
        for row in &rows {
            encode_row(&mut buffer, row, &people()).expect("encode");
        }
        let expected = "Jill\tDoe\n\\N\té\n\t\\N\na\\\\b\\tc\td\\ne\\rf\\\\N\n";
        assert_eq!(String::from_utf8(buffer).expect("UTF-8"), expected);
    }

    #[test]
    fn a_row_with_the_wrong_field_count_is_an_error() {
        let row: Vec<Option<String>> = vec![Some("only one".into())];
        let error = encode_row(&mut Vec::new(), &row, &people()).expect_err("1 of 2 fields");
        assert!(matches!(
            error,
            WriteError::ColumnCount {
                expected: 2,
                found: 1,
                ..
            }
        ));
    }
}
