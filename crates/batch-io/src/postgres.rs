//! Writers into a PostgreSQL table, inside the chunk's transaction of a PostgreSQL job
//! repository: [`PgCopyWriter`] streams each chunk with `COPY … FROM STDIN (FORMAT binary)`;
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

/// The PGCOPY binary signature, then 32-bit flags (0) and header-extension length (0).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The file trailer: a 16-bit tuple field count of -1.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// How many encoded bytes are collected before they are sent as one `CopyData` message: small
/// enough that the server starts on a chunk's first rows while the rest are being encoded,
/// large enough that a message costs little next to its rows (about 2,500 people).
const SEND_SIZE: usize = 64 << 10;

/// Writes each chunk into a PostgreSQL table with one binary `COPY FROM STDIN`, in the chunk's
/// transaction.
///
/// The written columns must accept text in binary form: `text`, `varchar(n)`, `char(n)` (or a
/// domain over them). Fields are sent as UTF-8; a value the column rejects (too long, a NUL
/// byte) fails the whole chunk.
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
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
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
    buffer.extend_from_slice(HEADER);
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
    buffer.extend_from_slice(&TRAILER);
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

/// Appends one tuple in PGCOPY binary format: the field count, then each field's length (-1
/// for NULL) and UTF-8 bytes.
fn encode_row<T: TableRow>(
    buffer: &mut Vec<u8>,
    row: &T,
    target: &TableTarget,
) -> Result<(), WriteError> {
    target.check_row(row)?;
    let columns = target.columns.len();
    let count = i16::try_from(columns).map_err(|_| WriteError::ColumnList {
        table: target.table.clone(),
        count: columns,
        max: i16::MAX as usize,
    })?;
    buffer.extend_from_slice(&count.to_be_bytes());
    for index in 0..columns {
        match row.field(index) {
            None => buffer.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(text) => {
                let len = i32::try_from(text.len()).map_err(|_| WriteError::FieldTooLong {
                    table: target.table.clone(),
                    column: target.columns[index].clone(),
                    len: text.len(),
                })?;
                buffer.extend_from_slice(&len.to_be_bytes());
                buffer.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok(())
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
    fn rows_are_encoded_in_pgcopy_binary_format() {
        let rows: Vec<Vec<Option<String>>> = vec![
            vec![Some("Jill".into()), Some("Doe".into())],
            vec![None, Some("é".into())],
            vec![Some(String::new()), None],
        ];
        let mut buffer = Vec::new();
        buffer.extend_from_slice(HEADER);
        for row in &rows {
            encode_row(&mut buffer, row, &people()).expect("encode");
        }
        buffer.extend_from_slice(&TRAILER);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            b'P', b'G', b'C', b'O', b'P', b'Y', b'\n', 0xff, b'\r', b'\n', 0, // signature
            0, 0, 0, 0, // flags
            0, 0, 0, 0, // header extension length
            0, 2, // row 1: 2 fields
            0, 0, 0, 4, b'J', b'i', b'l', b'l',
            0, 0, 0, 3, b'D', b'o', b'e',
            0, 2, // row 2
            0xff, 0xff, 0xff, 0xff, // NULL
            0, 0, 0, 2, 0xc3, 0xa9, // "é"
            0, 2, // row 3
            0, 0, 0, 0, // empty string, not NULL
            0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, // trailer
        ];
        assert_eq!(buffer, expected);
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
