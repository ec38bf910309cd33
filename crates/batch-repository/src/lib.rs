//! Spring Batch-compatible [`JobRepository`] for csv2db, on PostgreSQL and SQLite.
//!
//! The repository uses exactly Spring Batch's metadata schema for each database (the
//! `BATCH_*` tables and sequences), creating it when absent, so a Spring Batch 5 or 6 application
//! sharing the database reads what csv2db writes and the other way round. Pick the release with
//! [`SpringBatchVersion`]: it decides the job-instance sequence name and the JOB_KEY format.
//!
//! [`connect`] chooses the backend from the URL scheme: `postgres://` / `postgresql://` or
//! `sqlite:` (the embedded default, a file created on first use).

mod postgres;
mod schema;
mod sql;
mod sqlite;
mod store;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use batch_core::error::RepositoryError;
use batch_core::job::key::JobKeyFormat;
use batch_core::repository::JobRepository;
use sqlx::ConnectOptions as _;

use store::SqlJobRepository;

/// The Spring Batch release whose schema and job keys the repository follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpringBatchVersion {
    /// Spring Batch 5.x: sequence `BATCH_JOB_SEQ`, v5 job keys.
    V5,
    /// Spring Batch 6.x: sequence `BATCH_JOB_INSTANCE_SEQ`, v6 job keys.
    #[default]
    V6,
}

impl SpringBatchVersion {
    /// The job-key format of this release.
    pub fn job_key_format(self) -> JobKeyFormat {
        match self {
            SpringBatchVersion::V5 => JobKeyFormat::V5,
            SpringBatchVersion::V6 => JobKeyFormat::V6,
        }
    }

    /// The name of the job-instance sequence.
    pub fn job_instance_sequence(self) -> &'static str {
        match self {
            SpringBatchVersion::V5 => "BATCH_JOB_SEQ",
            SpringBatchVersion::V6 => "BATCH_JOB_INSTANCE_SEQ",
        }
    }

    /// The name of the job-execution sequence.
    pub fn job_execution_sequence(self) -> &'static str {
        "BATCH_JOB_EXECUTION_SEQ"
    }

    /// The name of the step-execution sequence.
    pub fn step_execution_sequence(self) -> &'static str {
        "BATCH_STEP_EXECUTION_SEQ"
    }
}

impl fmt::Display for SpringBatchVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpringBatchVersion::V5 => "5",
            SpringBatchVersion::V6 => "6",
        })
    }
}

impl FromStr for SpringBatchVersion {
    type Err = RepositoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().trim_start_matches(['v', 'V']) {
            "5" => Ok(SpringBatchVersion::V5),
            "6" => Ok(SpringBatchVersion::V6),
            other => Err(RepositoryError::Schema(format!(
                "unsupported Spring Batch version '{other}' (expected 5 or 6)"
            ))),
        }
    }
}

/// Where and how to connect. The password is kept apart from the URL and never displayed.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// `postgres://host:port/db`, `postgresql://…` or `sqlite://path`.
    pub url: String,
    /// User name, overriding the URL's.
    pub username: Option<String>,
    /// Password, overriding the URL's.
    pub password: Option<String>,
    /// The Spring Batch release to be compatible with.
    pub version: SpringBatchVersion,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("version", &self.version)
            .finish()
    }
}

/// `url` with the password of its `user:password@` part replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A connected repository, with the backend-specific access that item writers sharing its
/// transactions need.
pub struct Repository(Backends);

enum Backends {
    Postgres(Arc<SqlJobRepository<postgres::Postgres>>),
    Sqlite(Arc<SqlJobRepository<sqlite::Sqlite>>),
}

impl Repository {
    /// The repository as the engine uses it.
    pub fn job_repository(&self) -> Arc<dyn JobRepository> {
        match &self.0 {
            Backends::Postgres(repository) => repository.clone(),
            Backends::Sqlite(repository) => repository.clone(),
        }
    }

    /// The PostgreSQL pool, when the metadata lives in PostgreSQL.
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.0 {
            Backends::Postgres(repository) => Some(repository.backend().pool()),
            Backends::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, when the metadata lives in SQLite.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.0 {
            Backends::Sqlite(repository) => Some(repository.backend().pool()),
            Backends::Postgres(_) => None,
        }
    }
}

/// Connects to the database `options` names and creates Spring Batch's schema if it is absent.
///
/// # Errors
/// An unknown URL scheme, an unreachable database, or a schema of the other Spring Batch release
/// than configured. Messages never contain the password.
pub async fn connect(options: &ConnectOptions) -> Result<Repository, RepositoryError> {
    let url = options.url.trim();
    let unreachable = |error: sqlx::Error| {
        RepositoryError::Database(format!("cannot connect to {}: {error}", redact_url(url)).into())
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut connect = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|error| invalid_url(url, error))?
            .application_name("csv2db")
            .disable_statement_logging();
        if let Some(username) = &options.username {
            connect = connect.username(username);
        }
        if let Some(password) = &options.password {
            connect = connect.password(password);
        }
        let backend = postgres::Postgres::connect(connect)
            .await
            .map_err(unreachable)?;
        let repository = SqlJobRepository::new(backend, options.version);
        schema::ensure::<postgres::Postgres>(&repository, options.version).await?;
        Ok(Repository(Backends::Postgres(Arc::new(repository))))
    } else if url.starts_with("sqlite:") {
        let connect = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|error| invalid_url(url, error))?
            .disable_statement_logging();
        let backend = sqlite::Sqlite::connect(connect)
            .await
            .map_err(unreachable)?;
        let repository = SqlJobRepository::new(backend, options.version);
        schema::ensure::<sqlite::Sqlite>(&repository, options.version).await?;
        Ok(Repository(Backends::Sqlite(Arc::new(repository))))
    } else {
        Err(RepositoryError::Schema(format!(
            "unsupported database URL '{}': use postgres://, postgresql:// or sqlite:",
            redact_url(url)
        )))
    }
}

fn invalid_url(url: &str, error: sqlx::Error) -> RepositoryError {
    RepositoryError::Schema(format!(
        "invalid database URL '{}': {error}",
        redact_url(url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://batch:s3cret@db:5432/batch?sslmode=require"),
            "postgres://batch:***@db:5432/batch?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/batch"), "postgres://db/batch");
        assert_eq!(redact_url("sqlite://csv2db.db"), "sqlite://csv2db.db");
    }

    #[test]
    fn options_debug_hides_the_password() {
        let options = ConnectOptions {
            url: "postgres://u:pw1@h/d".into(),
            password: Some("pw2".into()),
            ..Default::default()
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
    }
}
