//! The target of the database writers: a table whose written columns all hold text.
//!
//! The table and column names go into SQL text (sqlx cannot bind identifiers), so they are
//! checked to be simple SQL identifiers before any statement is built from them.

/// A row of a target table whose columns are all text (the importUserJob's `people`).
pub trait TableRow: Send + Sync {
    /// Number of columns written (same for every row of a type).
    fn column_count(&self) -> usize;
    /// The text of column `index`, or None for SQL NULL.
    fn field(&self, index: usize) -> Option<&str>;
}

/// A row given as its fields, `None` for NULL.
impl TableRow for Vec<Option<String>> {
    fn column_count(&self) -> usize {
        self.len()
    }

    fn field(&self, index: usize) -> Option<&str> {
        self.get(index).and_then(Option::as_deref)
    }
}

/// A row given as its fields, none of them NULL.
impl TableRow for Vec<String> {
    fn column_count(&self) -> usize {
        self.len()
    }

    fn field(&self, index: usize) -> Option<&str> {
        self.get(index).map(String::as_str)
    }
}

/// Where rows go: table name, the columns written, and the DDL that creates the table when
/// absent, per database.
#[derive(Debug, Clone)]
pub struct TableTarget {
    /// The table's name, a simple SQL identifier (letters, digits, underscore).
    pub table: String,
    /// The columns written, in the order of [`TableRow::field`]; simple SQL identifiers.
    pub columns: Vec<String>,
    /// The DDL creating the table in PostgreSQL when absent (`CREATE TABLE IF NOT EXISTS …`).
    pub create_postgres: String,
    /// The DDL creating the table in SQLite when absent (`CREATE TABLE IF NOT EXISTS …`).
    pub create_sqlite: String,
}

/// Why a database writer could not write a chunk or prepare its table.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A table or column name that is not a simple SQL identifier.
    #[error(
        "invalid {what} name {name:?}: use letters, digits and underscores, not starting with a digit"
    )]
    InvalidIdentifier {
        /// `table` or `column`.
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// The target lists no columns, or more than a table can have.
    #[error("table {table} must be written with 1 to {max} columns, not {count}")]
    ColumnList {
        /// The table.
        table: String,
        /// The number of columns listed.
        count: usize,
        /// The largest number of columns accepted.
        max: usize,
    },
    /// A row has a different number of fields than the target's columns.
    #[error("a row for table {table} has {found} fields, but {expected} columns are written")]
    ColumnCount {
        /// The table.
        table: String,
        /// The number of columns written.
        expected: usize,
        /// The number of fields of the row.
        found: usize,
    },
    /// The chunk's transaction belongs to another kind of database than the writer's target.
    #[error(
        "the job repository is not {expected}, so rows written to the {expected} table {table} \
         cannot commit with the step's progress; keep the job repository in the same \
         {expected} database as the target table"
    )]
    WrongRepository {
        /// The database the writer writes to (`PostgreSQL` or `SQLite`).
        expected: &'static str,
        /// The table.
        table: String,
    },
    /// The database reported fewer or more rows written than items given.
    #[error("{written} rows were written into table {table}, but the chunk had {expected} items")]
    RowCount {
        /// The table.
        table: String,
        /// The chunk's item count.
        expected: usize,
        /// The rows the database reported.
        written: u64,
    },
    /// A statement failed.
    #[error("{action} table {table} failed: {source}")]
    Database {
        /// What was done (`creating`, `COPY into`, `inserting into`).
        action: &'static str,
        /// The table.
        table: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
}

impl TableTarget {
    /// Checks that the table and column names are simple SQL identifiers and that there is at
    /// least one column (at most 1600, PostgreSQL's limit).
    ///
    /// # Errors
    /// [`WriteError::InvalidIdentifier`] or [`WriteError::ColumnList`].
    pub fn validate(&self) -> Result<(), WriteError> {
        check_identifier("table", &self.table)?;
        if self.columns.is_empty() || self.columns.len() > MAX_COLUMNS {
            return Err(WriteError::ColumnList {
                table: self.table.clone(),
                count: self.columns.len(),
                max: MAX_COLUMNS,
            });
        }
        for column in &self.columns {
            check_identifier("column", column)?;
        }
        Ok(())
    }

    /// `c1, c2, …` after validation.
    pub(crate) fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    /// Fails unless `row` has one field per column.
    pub(crate) fn check_row<T: TableRow>(&self, row: &T) -> Result<(), WriteError> {
        let found = row.column_count();
        if found == self.columns.len() {
            Ok(())
        } else {
            Err(WriteError::ColumnCount {
                table: self.table.clone(),
                expected: self.columns.len(),
                found,
            })
        }
    }

    /// A [`WriteError::Database`] for this table.
    pub(crate) fn database_error(&self, action: &'static str, source: sqlx::Error) -> WriteError {
        WriteError::Database {
            action,
            table: self.table.clone(),
            source,
        }
    }
}

/// PostgreSQL's limit on the columns of a table (SQLite's default is 2000).
const MAX_COLUMNS: usize = 1600;

/// Accepts ASCII letters, digits and underscores, not starting with a digit.
fn check_identifier(what: &'static str, name: &str) -> Result<(), WriteError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(WriteError::InvalidIdentifier {
            what,
            name: name.to_string(),
        })
    }
}

/// The statement cached in `slot`, or, on first use, `build`'s statement for `target` once the
/// target is validated (its names go into the SQL text).
pub(crate) fn cached_statement(
    slot: &mut Option<std::sync::Arc<str>>,
    target: &TableTarget,
    build: impl FnOnce(&TableTarget) -> String,
) -> Result<std::sync::Arc<str>, WriteError> {
    if let Some(statement) = slot {
        return Ok(statement.clone());
    }
    target.validate()?;
    let statement: std::sync::Arc<str> = build(target).into();
    *slot = Some(statement.clone());
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(table: &str, columns: &[&str]) -> TableTarget {
        TableTarget {
            table: table.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            create_postgres: String::new(),
            create_sqlite: String::new(),
        }
    }

    #[test]
    fn simple_identifiers_are_accepted() {
        target("people", &["first_name", "last_name"])
            .validate()
            .expect("valid");
        target("_T2", &["c1", "_"]).validate().expect("valid");
    }

    #[test]
    fn other_names_are_rejected() {
        for (table, columns) in [
            ("", &["a"][..]),
            ("1people", &["a"]),
            ("people; DROP TABLE x", &["a"]),
            ("public.people", &["a"]),
            ("\"people\"", &["a"]),
            ("péople", &["a"]),
            ("people", &["first name"]),
            ("people", &["a", "b)--"]),
            ("people", &[]),
        ] {
            assert!(
                target(table, columns).validate().is_err(),
                "{table} {columns:?}"
            );
        }
    }
}
