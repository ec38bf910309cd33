//! A writer into a SQLite table, inside the chunk's transaction of a SQLite job repository:
//! [`SqliteInsertWriter`] inserts each chunk with multi-row prepared `INSERT` statements.
//!
//! The rows commit with the step's progress, so the job repository must be the same SQLite
//! file as the target table; with any other repository `write` fails.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use batch_core::step::BoxError;
use batch_core::step::item::{ChunkTransaction, ItemWriter};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments as _, SqlitePool};

use crate::table::{TableRow, TableTarget, WriteError, cached_statement};

/// The most bound parameters one SQLite statement takes (`SQLITE_MAX_VARIABLE_NUMBER`).
const MAX_PARAMETERS: usize = 32766;

/// Rows per statement by default: the fastest of 64, 256, 512 and 1024 on 1,000,000
/// two-column rows in 10,000-item chunks (about 0.95, 1.4, 1.4 and 1.55 million rows/s; 4096
/// was no faster).
pub const DEFAULT_ROWS_PER_STATEMENT: usize = 1024;

/// Writes each chunk into a SQLite table with multi-row prepared statements
/// (`INSERT INTO t (c1, c2) VALUES (?, ?), (?, ?), …`), in the chunk's transaction.
pub struct SqliteInsertWriter<T> {
    pool: SqlitePool,
    target: TableTarget,
    rows_per_statement: usize,
    /// Inserts `rows_per_statement` rows, once the target is validated.
    full: Option<Arc<str>>,
    /// Inserts the rows left over, with how many rows it inserts.
    remainder: Option<(usize, Arc<str>)>,
    rows: PhantomData<fn(&T)>,
}

impl<T: TableRow> SqliteInsertWriter<T> {
    /// A writer into `target` whose table [`ItemWriter::open`] creates through `pool` (the job
    /// repository's pool), inserting [`DEFAULT_ROWS_PER_STATEMENT`] rows per statement.
    pub fn new(pool: SqlitePool, target: TableTarget) -> Self {
        SqliteInsertWriter {
            pool,
            target,
            rows_per_statement: DEFAULT_ROWS_PER_STATEMENT,
            full: None,
            remainder: None,
            rows: PhantomData,
        }
    }

    /// Inserts up to `rows` rows per statement (at least 1, and at most as many as fit in
    /// SQLite's 32766 parameters).
    pub fn with_rows_per_statement(mut self, rows: usize) -> Self {
        self.rows_per_statement = rows;
        self.full = None;
        self
    }

    /// The target table.
    pub fn target(&self) -> &TableTarget {
        &self.target
    }

    /// The statement inserting a full group of rows, built once the target is validated.
    fn full_statement(&mut self) -> Result<Arc<str>, WriteError> {
        let wanted = self.rows_per_statement;
        cached_statement(&mut self.full, &self.target, |target| {
            let rows = rows_per_statement(wanted, target.columns.len());
            insert_statement(target, rows).to_string()
        })
    }

    /// The statement inserting `rows` rows (fewer than a full group).
    fn remainder_statement(&mut self, rows: usize) -> Arc<str> {
        match &self.remainder {
            Some((cached, statement)) if *cached == rows => statement.clone(),
            _ => {
                let statement = insert_statement(&self.target, rows);
                self.remainder = Some((rows, statement.clone()));
                statement
            }
        }
    }
}

/// `requested` rows per statement, kept between 1 and what SQLite's parameter limit allows.
fn rows_per_statement(requested: usize, columns: usize) -> usize {
    let fit = (MAX_PARAMETERS / columns.max(1)).max(1);
    requested.clamp(1, fit)
}

/// `INSERT INTO t (c1, c2) VALUES (?, ?), …` for `rows` rows.
fn insert_statement(target: &TableTarget, rows: usize) -> Arc<str> {
    let columns = target.columns.len();
    let mut tuple = String::with_capacity(2 + 3 * columns);
    tuple.push('(');
    for index in 0..columns {
        if index > 0 {
            tuple.push(',');
        }
        tuple.push('?');
    }
    tuple.push(')');
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        target.table,
        target.column_list()
    );
    sql.reserve(rows * (tuple.len() + 1));
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push_str(&tuple);
    }
    sql.into()
}

#[async_trait]
impl<T: TableRow> ItemWriter<T> for SqliteInsertWriter<T> {
    /// Validates the target and runs its `create_sqlite` DDL, when not empty.
    async fn open(&mut self) -> Result<(), BoxError> {
        self.full_statement()?;
        let target = &self.target;
        if !target.create_sqlite.trim().is_empty() {
            sqlx::raw_sql(&target.create_sqlite)
                .execute(&self.pool)
                .await
                .map_err(|error| target.database_error("creating", error))?;
        }
        Ok(())
    }

    /// Builds the arguments of each statement while SQLite runs the previous one (sqlx runs
    /// SQLite on a worker thread), so that copying the fields overlaps the inserting.
    async fn write(
        &mut self,
        items: &[T],
        transaction: &mut dyn ChunkTransaction,
    ) -> Result<(), BoxError> {
        let full = self.full_statement()?;
        let per_statement = rows_per_statement(self.rows_per_statement, self.target.columns.len());
        let rest = items.len() % per_statement;
        let rest_statement = (rest > 0).then(|| self.remainder_statement(rest));
        let target = &self.target;
        let Some(connection) = transaction.connection().downcast_mut::<SqliteConnection>() else {
            return Err(WriteError::WrongRepository {
                expected: "SQLite",
                table: target.table.clone(),
            }
            .into());
        };
        let mut groups = items.chunks(per_statement);
        let mut next = groups
            .next()
            .map(|rows| arguments(rows, target))
            .transpose()?;
        let mut written = 0;
        while let Some((rows, arguments_now)) = next.take() {
            let statement = match &rest_statement {
                Some(statement) if rows < per_statement => statement,
                _ => &full,
            };
            let (done, following) = tokio::join!(
                insert(connection, statement, arguments_now, target),
                async {
                    groups
                        .next()
                        .map(|rows| arguments(rows, target))
                        .transpose()
                }
            );
            written += done?;
            next = following?;
        }
        if written != items.len() as u64 {
            return Err(WriteError::RowCount {
                table: target.table.clone(),
                expected: items.len(),
                written,
            }
            .into());
        }
        Ok(())
    }
}

/// The bound values of one statement: each row's fields in column order, owned so that sqlx
/// need not copy them again; with the number of rows.
fn arguments<T: TableRow>(
    rows: &[T],
    target: &TableTarget,
) -> Result<(usize, SqliteArguments<'static>), WriteError> {
    let columns = target.columns.len();
    let mut arguments = SqliteArguments::default();
    arguments.reserve(rows.len() * columns, 0);
    for row in rows {
        target.check_row(row)?;
        for index in 0..columns {
            arguments
                .add(row.field(index).map(str::to_owned))
                .map_err(|error| {
                    target.database_error("inserting into", sqlx::Error::Encode(error))
                })?;
        }
    }
    Ok((rows.len(), arguments))
}

/// Runs `statement`, which has one tuple of parameters per row, with `arguments`.
async fn insert(
    connection: &mut SqliteConnection,
    statement: &str,
    arguments: SqliteArguments<'static>,
    target: &TableTarget,
) -> Result<u64, WriteError> {
    let done = sqlx::query_with(statement, arguments)
        .execute(connection)
        .await
        .map_err(|error| target.database_error("inserting into", error))?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_tuple_per_row() {
        let target = TableTarget {
            table: "people".into(),
            columns: vec!["first_name".into(), "last_name".into()],
            create_postgres: String::new(),
            create_sqlite: String::new(),
        };
        assert_eq!(
            &*insert_statement(&target, 3),
            "INSERT INTO people (first_name, last_name) VALUES (?,?),(?,?),(?,?)"
        );
    }

    #[test]
    fn rows_per_statement_fit_the_parameter_limit() {
        assert_eq!(rows_per_statement(100_000, 100), 327);
        assert_eq!(rows_per_statement(512, 2), 512);
        assert_eq!(rows_per_statement(0, 2), 1);
        assert_eq!(rows_per_statement(10, 40_000), 1);
    }
}
