//! Creating Spring Batch's schema when absent, and checking the release of an existing one.

use batch_core::error::RepositoryError;

use crate::SpringBatchVersion;
use crate::sql::{Backend, db};
use crate::store::SqlJobRepository;

/// Spring Batch 6's DDL for PostgreSQL.
const POSTGRESQL_DDL: &str = include_str!("../schema/postgresql.sql");
/// Spring Batch 6's DDL for SQLite.
const SQLITE_DDL: &str = include_str!("../schema/sqlite.sql");

/// What differs between the databases when creating and inspecting the schema.
pub(crate) trait SchemaDialect {
    /// Spring Batch 6's DDL.
    const DDL: &'static str;
    /// Counts tables or sequences named `$1` (lower case) in the current schema.
    const COUNT_OBJECTS: &'static str;
    /// Serializes concurrent schema creation, run first in the creating transaction.
    const CREATION_LOCK: Option<&'static str>;
}

impl SchemaDialect for crate::postgres::Postgres {
    const DDL: &'static str = POSTGRESQL_DDL;
    const COUNT_OBJECTS: &'static str = "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relname = $1";
    const CREATION_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7361626174636801)");
}

impl SchemaDialect for crate::sqlite::Sqlite {
    const DDL: &'static str = SQLITE_DDL;
    const COUNT_OBJECTS: &'static str =
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND lower(name) = $1";
    const CREATION_LOCK: Option<&'static str> = None;
}

/// Creates the schema for `version` if BATCH_JOB_INSTANCE is absent; otherwise checks that the
/// job-instance sequence is the one `version` uses.
pub(crate) async fn ensure<B: Backend + SchemaDialect>(
    repository: &SqlJobRepository<B>,
    version: SpringBatchVersion,
) -> Result<(), RepositoryError> {
    let mut tx = repository.backend().begin().await.map_err(db)?;
    if let Some(lock) = B::CREATION_LOCK {
        tx.execute(lock, vec![]).await.map_err(db)?;
    }
    let exists = |name: &str| name.to_ascii_lowercase();
    let count = |rows: Vec<crate::sql::Row>| -> Result<i64, RepositoryError> {
        rows.first().map_or(Ok(0), |row| row.i64(0))
    };
    let tables = count(
        tx.query(B::COUNT_OBJECTS, vec![exists("BATCH_JOB_INSTANCE").into()])
            .await
            .map_err(db)?,
    )?;
    if tables == 0 {
        let ddl = B::DDL.replace(
            SpringBatchVersion::V6.job_instance_sequence(),
            version.job_instance_sequence(),
        );
        for statement in ddl.split(';').map(strip_comments).filter(|s| !s.is_empty()) {
            tx.execute(&statement, vec![]).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        tracing::info!(%version, "created the Spring Batch metadata schema");
        return Ok(());
    }
    let sequence = count(
        tx.query(
            B::COUNT_OBJECTS,
            vec![exists(version.job_instance_sequence()).into()],
        )
        .await
        .map_err(db)?,
    )?;
    tx.commit().await.map_err(db)?;
    if sequence == 0 {
        let other = match version {
            SpringBatchVersion::V5 => SpringBatchVersion::V6,
            SpringBatchVersion::V6 => SpringBatchVersion::V5,
        };
        return Err(RepositoryError::Schema(format!(
            "the database holds Spring Batch metadata without the sequence {} that Spring Batch {version} uses \
             (a Spring Batch {other} schema has {}); set spring_batch_version = {other} \
             (CSV2DB_SPRING_BATCH_VERSION={other}), or migrate the schema as Spring Batch's migration scripts do",
            version.job_instance_sequence(),
            other.job_instance_sequence(),
        )));
    }
    Ok(())
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}
