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

/// Replaces the password of a URL (user:password@host) with "***"; leaves other URLs as they are.
///
/// `password=` and `sslpassword=` query parameters are redacted as well.
/// Passwords must be percent-encoded in URLs (as sqlx requires); a raw `/`,
/// `?` or `#` in a password ends the authority and defeats the redaction.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_query(url);
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(tail));
    out
}

/// Redacts `*password=` parameters of the query string in `s`, if any.
fn redact_query(s: &str) -> String {
    let Some(query_start) = s.find('?').map(|i| i + 1) else {
        return s.to_owned();
    };
    let query_end = s[query_start..]
        .find('#')
        .map_or(s.len(), |i| query_start + i);
    let query = &s[query_start..query_end];
    let redacted: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                format!("{key}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!(
        "{}{}{}",
        &s[..query_start],
        redacted.join("&"),
        &s[query_end..]
    )
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
}

/// The PostgreSQL pool of a repository made by [`connect`], when its metadata lives in
/// PostgreSQL: item writers use it to share the database (and chunk transactions) with it.
pub fn postgres_pool(repository: &dyn JobRepository) -> Option<sqlx::PgPool> {
    repository
        .as_any()
        .downcast_ref::<SqlJobRepository<postgres::Postgres>>()
        .map(|repository| repository.backend().pool().clone())
}

/// The SQLite pool of a repository made by [`connect`], when its metadata lives in SQLite.
pub fn sqlite_pool(repository: &dyn JobRepository) -> Option<sqlx::SqlitePool> {
    repository
        .as_any()
        .downcast_ref::<SqlJobRepository<sqlite::Sqlite>>()
        .map(|repository| repository.backend().pool().clone())
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
    fn redact_url_cases() {
        let cases = [
            (
                "postgres://user:pass@host:5432/db",
                "postgres://user:***@host:5432/db",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://:pass@host/db", "postgres://:***@host/db"),
            (
                "postgres://u:p%40ss@host/db?x=1",
                "postgres://u:***@host/db?x=1",
            ),
            ("postgres://u:p@ss@host/db", "postgres://u:***@host/db"),
            (
                "postgres://host/db?user=u&password=p&sslmode=require",
                "postgres://host/db?user=u&password=***&sslmode=require",
            ),
            (
                "jdbc:postgresql://host/db?sslpassword=p#frag",
                "jdbc:postgresql://host/db?sslpassword=***#frag",
            ),
            ("postgres://host:5432/db", "postgres://host:5432/db"),
            ("sqlite://csv2db.db", "sqlite://csv2db.db"),
            ("sqlite:///tmp/a:b@c.db", "sqlite:///tmp/a:b@c.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("", ""),
            ("not a url", "not a url"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
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
