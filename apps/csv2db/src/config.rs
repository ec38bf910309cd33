//! Configuration of one csv2db invocation.
//!
//! Settings are layered; each source overrides the ones before it:
//!
//! 1. built-in defaults (embedded SQLite database `sqlite://csv2db.db`, a
//!    60 second lease, Spring Batch 6 schema);
//! 2. Java properties files named by `SPRING_CONFIG_LOCATION`, as the
//!    original Spring application read them;
//! 3. a TOML file, named on the command line
//!    ([`Overrides::config_file`]) or else by `CSV2DB_CONFIG`;
//! 4. environment variables;
//! 5. command-line options ([`Overrides`]).
//!
//! An empty value (an empty environment variable, `key=` in a properties file,
//! `key = ""` in TOML) counts as unset, so the layer below applies.
//!
//! # Properties files
//!
//! `SPRING_CONFIG_LOCATION` is a comma-separated list of locations, for example
//! `/config/batch.properties` mounted from a ConfigMap. Each entry may be
//! prefixed with `optional:` and/or `file:`. A directory entry stands for
//! `<dir>/application.properties`, read when present. A missing file that is
//! not marked `optional:` is an error. Later entries override earlier ones.
//! Files are decoded as ISO-8859-1 (Windows-1252) with `\uXXXX` escapes, like
//! `java.util.Properties`. The keys read are
//!
//! ```properties
//! spring.datasource.url=jdbc:postgresql://postgresql:5432/batch
//! spring.datasource.username=sqladmin
//! spring.datasource.password=sqladmin
//! openshift.project.name=batch
//! openshift.pvc.name=spring-batch-claim
//! csv2db.lease-seconds=60
//! csv2db.heartbeat-seconds=15
//! csv2db.spring-batch-version=6
//! ```
//!
//! Keys are matched loosely, like Spring's relaxed binding: case, `-` and `_`
//! are ignored (`csv2db.leaseSeconds` works). Other keys are ignored.
//!
//! # TOML file
//!
//! Every key is optional; unknown keys are an error (they are usually typos).
//!
//! ```toml
//! [database]
//! url = "postgres://db.example:5432/batch"   # also postgresql://, sqlite://, jdbc:postgresql://, jdbc:sqlite:
//! username = "batch"
//! password = "…"
//!
//! [batch]
//! lease_seconds = 60          # at least 1
//! spring_batch_version = 6    # 5 or 6
//! heartbeat_seconds = 15      # below lease_seconds; default lease_seconds / 4
//!
//! [kubernetes]
//! namespace = "batch"
//! pvc_name = "spring-batch-claim"
//! backend = "auto"            # auto, kubernetes or local: where container steps run
//! image = "csv2db:0.1.0"      # the image container steps running csv2db use
//! mount_path = "/test"        # where they mount the claim
//! ```
//!
//! # Environment variables
//!
//! | Variable | Setting |
//! |---|---|
//! | `DATABASE_URL`, else `SPRING_DATASOURCE_URL` | `database.url` |
//! | `CSV2DB_DATABASE_USERNAME`, else `SPRING_DATASOURCE_USERNAME` | `database.username` |
//! | `CSV2DB_DATABASE_PASSWORD`, else `SPRING_DATASOURCE_PASSWORD` | `database.password` |
//! | `CSV2DB_LEASE_SECONDS` | `batch.lease_seconds` |
//! | `CSV2DB_HEARTBEAT_SECONDS` | `batch.heartbeat_seconds` |
//! | `CSV2DB_SPRING_BATCH_VERSION` | `batch.spring_batch_version` |
//! | `CSV2DB_NAMESPACE` | `kubernetes.namespace` |
//! | `CSV2DB_PVC_NAME` | `kubernetes.pvc_name` |
//! | `CSV2DB_STEP_BACKEND` | `kubernetes.backend` |
//! | `CSV2DB_IMAGE` | `kubernetes.image` |
//! | `CSV2DB_MOUNT_PATH` | `kubernetes.mount_path` |
//!
//! Passwords never appear in `Debug` output or in [`ConfigError`] messages.

use batch_repository::redact_url;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind, OneOf};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::Deserialize;

/// The database used when none is configured: a SQLite file in the working directory.
const EMBEDDED_DATABASE_URL: &str = "sqlite://csv2db.db";
/// Default `batch.lease_seconds`.
const DEFAULT_LEASE_SECONDS: u64 = 60;
/// Default `batch.spring_batch_version`.
const DEFAULT_SPRING_BATCH_VERSION: u8 = 6;
/// Variable holding the Spring properties file locations.
const SPRING_CONFIG_LOCATION: &str = "SPRING_CONFIG_LOCATION";
/// Variable holding the TOML file path.
const CSV2DB_CONFIG: &str = "CSV2DB_CONFIG";

/// Fully resolved settings of one csv2db invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where the job repository and the job data live.
    pub database: DatabaseSettings,
    /// Job execution tuning.
    pub batch: BatchSettings,
    /// Kubernetes / OpenShift placement.
    pub kubernetes: KubernetesSettings,
}

/// Database connection settings.
#[derive(Clone, PartialEq, Default)]
pub struct DatabaseSettings {
    /// The URL as configured: `postgres://…`, `postgresql://…`, `sqlite://…`,
    /// `sqlite:…`, or the JDBC forms `jdbc:postgresql://…` / `jdbc:sqlite:…`
    /// (see [`DatabaseSettings::connection_url`]). `None` selects the embedded
    /// SQLite default.
    pub url: Option<String>,
    /// The user name, applied on top of the URL (the Spring
    /// `spring.datasource.username`).
    pub username: Option<String>,
    /// The password, applied on top of the URL (the Spring
    /// `spring.datasource.password`).
    pub password: Option<Secret>,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl DatabaseSettings {
    /// The URL to connect to, in sqlx form.
    ///
    /// * `jdbc:postgresql://h:p/db?x=y` → `postgres://h:p/db?x=y`
    ///   (`jdbc:postgresql:db` → `postgres://localhost/db`);
    /// * `jdbc:sqlite:path` → `sqlite://path`, so an absolute path gives
    ///   `sqlite:///tmp/x.db`; `jdbc:sqlite::memory:` → `sqlite::memory:`;
    /// * no URL → `sqlite://csv2db.db`, the embedded default, relative to the
    ///   working directory.
    ///
    /// Other URLs are returned unchanged (the caller reports unknown schemes).
    /// [`username`](Self::username) and [`password`](Self::password) are not
    /// embedded: apply them to the connect options (for PostgreSQL,
    /// `PgConnectOptions::username` / `password`), so the returned string is
    /// only as secret as the configured URL.
    pub fn connection_url(&self) -> String {
        match self.url.as_deref().filter(|url| !url.is_empty()) {
            None => EMBEDDED_DATABASE_URL.to_owned(),
            Some(url) => jdbc_to_sqlx(url),
        }
    }

    /// True when no database was configured and the embedded SQLite default applies.
    pub fn is_embedded_default(&self) -> bool {
        self.url.as_deref().is_none_or(str::is_empty)
    }
}

/// Converts a JDBC URL to the sqlx form; other URLs are returned unchanged.
fn jdbc_to_sqlx(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("jdbc:postgresql:") {
        if let Some(authority_and_path) = rest.strip_prefix("//") {
            format!("postgres://{authority_and_path}")
        } else if rest.starts_with('/') {
            format!("postgres://localhost{rest}")
        } else {
            format!("postgres://localhost/{rest}")
        }
    } else if let Some(rest) = url.strip_prefix("jdbc:sqlite:") {
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut converted = if path.is_empty() || path == ":memory:" {
            "sqlite::memory:".to_owned()
        } else {
            // sqlx percent-decodes the path; JDBC paths are literal.
            format!("sqlite://{}", path.replace('%', "%25"))
        };
        if let Some(query) = query {
            converted.push('?');
            converted.push_str(query);
        }
        converted
    } else {
        url.to_owned()
    }
}

/// A secret string whose Debug and Display print "***".
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Job execution tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// How long a job execution lease lasts without a heartbeat (default 60, at least 1).
    pub lease_seconds: u64,
    /// The Spring Batch schema generation to use: 5 or 6 (default 6).
    pub spring_batch_version: u8,
    /// Interval between lease heartbeats; `None` lets the engine derive
    /// `lease_seconds / 4`. When set, it is at least 1 and below `lease_seconds`.
    pub heartbeat_seconds: Option<u64>,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            lease_seconds: DEFAULT_LEASE_SECONDS,
            spring_batch_version: DEFAULT_SPRING_BATCH_VERSION,
            heartbeat_seconds: None,
        }
    }
}

/// Kubernetes / OpenShift placement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KubernetesSettings {
    /// The namespace (OpenShift project) jobs run in (`openshift.project.name`).
    pub namespace: Option<String>,
    /// The persistent volume claim holding the input files (`openshift.pvc.name`).
    pub pvc_name: Option<String>,
    /// Where container steps run: `auto` (Kubernetes inside a cluster, local processes
    /// elsewhere), `kubernetes` or `local`.
    pub backend: Option<String>,
    /// The image of container steps that run csv2db's own commands.
    pub image: Option<String>,
    /// Where container steps mount the claim.
    pub mount_path: Option<String>,
}

/// Values given on the command line; highest precedence.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The TOML configuration file; takes the place of `CSV2DB_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// The database URL; beats every other source.
    pub database_url: Option<String>,
}

/// Why the settings could not be loaded. Messages are one line, name the file,
/// key or variable at fault and never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file that must exist does not.
    #[error("configuration file {path} (named by {origin}) does not exist")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// What named the file: a variable or the command line.
        origin: String,
    },
    /// A configuration file exists but cannot be read.
    #[error("cannot read configuration file {path}: {error}")]
    Read {
        /// The unreadable file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// A properties file is malformed (for example a bad `\u` escape).
    #[error("malformed properties file {path}: {message}")]
    Properties {
        /// The malformed file.
        path: PathBuf,
        /// What is wrong, with the line number.
        message: String,
    },
    /// A property has a value of the wrong form.
    #[error("properties file {path}: key {key}: {message}")]
    PropertyValue {
        /// The file holding the property.
        path: PathBuf,
        /// The property key as written in the file.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("environment variable {variable}: {message}")]
    Environment {
        /// The variable at fault.
        variable: String,
        /// What is wrong.
        message: String,
    },
    /// The TOML file is malformed or a setting has the wrong type or an unknown key.
    #[error("{0}")]
    Extract(String),
    /// A setting is well-formed but out of range.
    #[error("invalid {key} (from {origin}): {message}")]
    Invalid {
        /// The setting, e.g. `batch.spring_batch_version`.
        key: String,
        /// The source that supplied the value: a file or a variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Loads settings from the process environment and files.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_with_env(overrides, &|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Same, with an explicit environment lookup (for tests).
    pub fn load_with_env(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let lookup = |name: &str| env(name).filter(|value| !value.is_empty());

        let mut defaults = Layer::new(Metadata::named("built-in defaults"));
        defaults.set("batch", "lease_seconds", DEFAULT_LEASE_SECONDS);
        defaults.set(
            "batch",
            "spring_batch_version",
            DEFAULT_SPRING_BATCH_VERSION,
        );
        let mut figment = Figment::from(defaults);

        if let Some(locations) = lookup(SPRING_CONFIG_LOCATION) {
            for path in spring_config_files(&locations)? {
                figment = figment.merge(properties_layer(&path)?);
            }
        }

        let toml_file = match overrides.config_file.as_ref() {
            Some(path) if !path.as_os_str().is_empty() => Some((path.clone(), "the command line")),
            _ => lookup(CSV2DB_CONFIG).map(|path| (PathBuf::from(path), CSV2DB_CONFIG)),
        };
        if let Some((path, origin)) = toml_file {
            require_file(&path, origin)?;
            figment = figment.merge(SkipEmpty(Toml::file_exact(&path)));
        }

        for var in ENV_VARS {
            if let Some(value) = lookup(var.name) {
                figment = figment.merge(env_layer(var, &value)?);
            }
        }

        if let Some(url) = overrides.database_url.as_deref().filter(|u| !u.is_empty()) {
            let mut layer = Layer::new(Metadata::named("the command-line database URL"));
            layer.set("database", "url", url);
            figment = figment.merge(layer);
        }

        let raw: RawSettings = figment.extract().map_err(extract_error)?;
        validate(&figment, &raw.batch)?;
        Ok(raw.into_settings())
    }
}

// ---------------------------------------------------------------------------
// Extraction target

/// The shape of the merged configuration; also the TOML file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    batch: RawBatch,
    #[serde(default)]
    kubernetes: RawKubernetes,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBatch {
    lease_seconds: u64,
    spring_batch_version: u8,
    heartbeat_seconds: Option<u64>,
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            lease_seconds: DEFAULT_LEASE_SECONDS,
            spring_batch_version: DEFAULT_SPRING_BATCH_VERSION,
            heartbeat_seconds: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    namespace: Option<String>,
    pvc_name: Option<String>,
    backend: Option<String>,
    image: Option<String>,
    mount_path: Option<String>,
}

impl RawSettings {
    fn into_settings(self) -> Settings {
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        Settings {
            database: DatabaseSettings {
                url: non_empty(self.database.url),
                username: non_empty(self.database.username),
                password: non_empty(self.database.password).map(Secret::new),
            },
            batch: BatchSettings {
                lease_seconds: self.batch.lease_seconds,
                spring_batch_version: self.batch.spring_batch_version,
                heartbeat_seconds: self.batch.heartbeat_seconds,
            },
            kubernetes: KubernetesSettings {
                namespace: non_empty(self.kubernetes.namespace),
                pvc_name: non_empty(self.kubernetes.pvc_name),
                backend: non_empty(self.kubernetes.backend),
                image: non_empty(self.kubernetes.image),
                mount_path: non_empty(self.kubernetes.mount_path),
            },
        }
    }
}

/// Range checks that serde cannot express; errors name the source of the value.
fn validate(figment: &Figment, batch: &RawBatch) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.to_owned(),
        origin: figment
            .find_metadata(key)
            .map_or_else(|| "built-in defaults".to_owned(), describe_metadata),
        message,
    };
    if !matches!(batch.spring_batch_version, 5 | 6) {
        return Err(invalid(
            "batch.spring_batch_version",
            format!("must be 5 or 6, got {}", batch.spring_batch_version),
        ));
    }
    if batch.lease_seconds == 0 {
        return Err(invalid(
            "batch.lease_seconds",
            "must be at least 1".to_owned(),
        ));
    }
    match batch.heartbeat_seconds {
        Some(0) => Err(invalid(
            "batch.heartbeat_seconds",
            "must be at least 1".to_owned(),
        )),
        Some(heartbeat) if heartbeat >= batch.lease_seconds => Err(invalid(
            "batch.heartbeat_seconds",
            format!(
                "must be less than batch.lease_seconds ({}), got {heartbeat}",
                batch.lease_seconds
            ),
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Providers

/// A figment provider holding a few settings from one named source.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Layer {
    fn new(metadata: Metadata) -> Self {
        Layer {
            metadata,
            dict: Dict::new(),
        }
    }

    /// Sets `section.key`; empty strings are left unset.
    fn set(&mut self, section: &str, key: &str, value: impl Into<Value>) {
        let value = value.into();
        if matches!(&value, Value::String(_, s) if s.is_empty()) {
            return;
        }
        let entry = self
            .dict
            .entry(section.to_owned())
            .or_insert_with(|| Value::from(Dict::new()));
        if let Value::Dict(_, section) = entry {
            section.insert(key.to_owned(), value);
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Wraps a provider, dropping its empty strings so that they count as unset.
struct SkipEmpty<P>(P);

impl<P: Provider> Provider for SkipEmpty<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        data.values_mut().for_each(drop_empty_strings);
        Ok(data)
    }
}

fn drop_empty_strings(dict: &mut Dict) {
    dict.retain(|_, value| !matches!(value, Value::String(_, s) if s.is_empty()));
    for value in dict.values_mut() {
        if let Value::Dict(_, nested) = value {
            drop_empty_strings(nested);
        }
    }
}

/// Fails unless `path` is an existing file.
fn require_file(path: &Path, origin: &str) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ConfigError::Read {
            path: path.to_owned(),
            error: io::Error::new(io::ErrorKind::InvalidInput, "is a directory"),
        }),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(ConfigError::MissingFile {
            path: path.to_owned(),
            origin: origin.to_owned(),
        }),
        Err(error) => Err(ConfigError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// The existing properties files named by a `SPRING_CONFIG_LOCATION` value, in order.
fn spring_config_files(locations: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for entry in locations
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let mut location = entry;
        let mut optional = false;
        loop {
            if let Some(rest) = location.strip_prefix("optional:") {
                optional = true;
                location = rest;
            } else if let Some(rest) = location.strip_prefix("file:") {
                // file:///config/x → /config/x
                location = rest.strip_prefix("//").unwrap_or(rest);
            } else {
                break;
            }
        }
        if location.is_empty() {
            continue;
        }
        let path = PathBuf::from(location);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let file = path.join("application.properties");
                if file.is_file() {
                    files.push(file);
                }
            }
            Ok(_) => files.push(path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !optional {
                    return Err(ConfigError::MissingFile {
                        path,
                        origin: SPRING_CONFIG_LOCATION.to_owned(),
                    });
                }
            }
            Err(error) => return Err(ConfigError::Read { path, error }),
        }
    }
    Ok(files)
}

/// Reads one Java properties file into a layer.
fn properties_layer(path: &Path) -> Result<Layer, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let properties =
        java_properties::read(bytes.as_slice()).map_err(|e| ConfigError::Properties {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let mut layer =
        Layer::new(Metadata::named("properties file").source(Source::File(path.to_owned())));
    // Sorted, so that of two keys that normalize alike the choice is deterministic.
    let mut properties: Vec<_> = properties.into_iter().collect();
    properties.sort();
    for (key, value) in properties {
        let Some(target) = PROPERTY_KEYS
            .iter()
            .find(|target| relaxed_key(&key) == relaxed_key(target.key))
        else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let parsed = target
            .kind
            .parse(&value)
            .map_err(|message| ConfigError::PropertyValue {
                path: path.to_owned(),
                key: key.clone(),
                message,
            })?;
        layer.set(target.section, target.field, parsed);
    }
    Ok(layer)
}

/// Spring-style relaxed key: lower case, without `-` and `_`.
fn relaxed_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Builds the layer of one environment variable.
fn env_layer(var: &EnvVar, value: &str) -> Result<Layer, ConfigError> {
    let parsed = var
        .kind
        .parse(value)
        .map_err(|message| ConfigError::Environment {
            variable: var.name.to_owned(),
            message,
        })?;
    let mut layer = Layer::new(Metadata::named(format!(
        "environment variable {}",
        var.name
    )));
    layer.set(var.section, var.field, parsed);
    Ok(layer)
}

/// How a textual value (property or variable) is turned into a setting.
#[derive(Clone, Copy)]
enum ValueKind {
    Text,
    Seconds,
    Version,
}

impl ValueKind {
    /// Parses `text`. Only the numeric kinds can fail, and their error quotes
    /// the text, which is never a secret; `Text` (used for passwords) never fails.
    fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            ValueKind::Text => Ok(Value::from(text)),
            ValueKind::Seconds => text
                .trim()
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("expected a whole number of seconds, got {text:?}")),
            ValueKind::Version => text
                .trim()
                .parse::<u8>()
                .map(Value::from)
                .map_err(|_| format!("expected a Spring Batch version (5 or 6), got {text:?}")),
        }
    }
}

/// A properties key and the setting it feeds.
struct PropertyKey {
    key: &'static str,
    section: &'static str,
    field: &'static str,
    kind: ValueKind,
}

const PROPERTY_KEYS: &[PropertyKey] = &[
    PropertyKey {
        key: "spring.datasource.url",
        section: "database",
        field: "url",
        kind: ValueKind::Text,
    },
    PropertyKey {
        key: "spring.datasource.username",
        section: "database",
        field: "username",
        kind: ValueKind::Text,
    },
    PropertyKey {
        key: "spring.datasource.password",
        section: "database",
        field: "password",
        kind: ValueKind::Text,
    },
    PropertyKey {
        key: "openshift.project.name",
        section: "kubernetes",
        field: "namespace",
        kind: ValueKind::Text,
    },
    PropertyKey {
        key: "openshift.pvc.name",
        section: "kubernetes",
        field: "pvc_name",
        kind: ValueKind::Text,
    },
    PropertyKey {
        key: "csv2db.lease-seconds",
        section: "batch",
        field: "lease_seconds",
        kind: ValueKind::Seconds,
    },
    PropertyKey {
        key: "csv2db.heartbeat-seconds",
        section: "batch",
        field: "heartbeat_seconds",
        kind: ValueKind::Seconds,
    },
    PropertyKey {
        key: "csv2db.spring-batch-version",
        section: "batch",
        field: "spring_batch_version",
        kind: ValueKind::Version,
    },
];

/// An environment variable and the setting it feeds.
struct EnvVar {
    name: &'static str,
    section: &'static str,
    field: &'static str,
    kind: ValueKind,
}

/// Environment variables, lowest precedence first: of two feeding the same
/// setting, the later one wins.
const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: "SPRING_DATASOURCE_URL",
        section: "database",
        field: "url",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "DATABASE_URL",
        section: "database",
        field: "url",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "SPRING_DATASOURCE_USERNAME",
        section: "database",
        field: "username",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_DATABASE_USERNAME",
        section: "database",
        field: "username",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "SPRING_DATASOURCE_PASSWORD",
        section: "database",
        field: "password",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_DATABASE_PASSWORD",
        section: "database",
        field: "password",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_LEASE_SECONDS",
        section: "batch",
        field: "lease_seconds",
        kind: ValueKind::Seconds,
    },
    EnvVar {
        name: "CSV2DB_HEARTBEAT_SECONDS",
        section: "batch",
        field: "heartbeat_seconds",
        kind: ValueKind::Seconds,
    },
    EnvVar {
        name: "CSV2DB_SPRING_BATCH_VERSION",
        section: "batch",
        field: "spring_batch_version",
        kind: ValueKind::Version,
    },
    EnvVar {
        name: "CSV2DB_NAMESPACE",
        section: "kubernetes",
        field: "namespace",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_PVC_NAME",
        section: "kubernetes",
        field: "pvc_name",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_STEP_BACKEND",
        section: "kubernetes",
        field: "backend",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_IMAGE",
        section: "kubernetes",
        field: "image",
        kind: ValueKind::Text,
    },
    EnvVar {
        name: "CSV2DB_MOUNT_PATH",
        section: "kubernetes",
        field: "mount_path",
        kind: ValueKind::Text,
    },
];

// ---------------------------------------------------------------------------
// Error messages

/// "TOML file /etc/csv2db.toml", "environment variable X", …
fn describe_metadata(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(Source::File(path)) => format!("{} {}", metadata.name, path.display()),
        Some(Source::Custom(custom)) => format!("{} {custom}", metadata.name),
        _ => metadata.name.to_string(),
    }
}

/// Turns figment's error (possibly several chained) into a one-line message
/// that names source and key but never echoes a database value.
fn extract_error(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error.into_iter().map(|e| describe_error(&e)).collect();
    ConfigError::Extract(messages.join("; "))
}

fn describe_error(error: &figment::Error) -> String {
    let origin = error
        .metadata
        .as_ref()
        .map_or_else(|| "configuration".to_owned(), describe_metadata);
    let mut path = error.path.clone();
    // Values under `database` (URL, user, password) are never echoed; neither
    // are values whose key is unknown.
    let sensitive = path.first().is_none_or(|section| section == "database");
    let detail = match &error.kind {
        Kind::Message(message) => sanitize_message(message),
        Kind::InvalidType(actual, expected) => format!(
            "invalid type: found {}, expected {expected}",
            describe_actual(actual, sensitive)
        ),
        Kind::InvalidValue(actual, expected) => format!(
            "invalid value: found {}, expected {expected}",
            describe_actual(actual, sensitive)
        ),
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key, expected {}", OneOf(expected))
        }
        Kind::MissingField(field) => {
            if path.last().map(String::as_str) != Some(field.as_ref()) {
                path.push(field.to_string());
            }
            "missing key".to_owned()
        }
        Kind::Unsupported(actual) | Kind::UnsupportedKey(actual, _) => {
            format!("unsupported {}", describe_actual(actual, sensitive))
        }
        other if sensitive => format!("invalid value ({})", kind_name(other)),
        other => other.to_string(),
    };
    if path.is_empty() {
        format!("{origin}: {detail}")
    } else {
        format!("{origin}: key {}: {detail}", path.join("."))
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::InvalidLength(..) => "wrong length",
        Kind::UnknownVariant(..) => "unknown variant",
        Kind::DuplicateField(..) => "duplicate key",
        Kind::ISizeOutOfRange(..) | Kind::USizeOutOfRange(..) => "out of range",
        _ => "invalid",
    }
}

/// The found value for insensitive keys; only its type for sensitive ones.
fn describe_actual(actual: &Actual, sensitive: bool) -> String {
    if !sensitive {
        return actual.to_string();
    }
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "a value",
    }
    .to_owned()
}

/// One line of a (TOML parser) message, without the quoted source lines,
/// which may hold a password: keeps "TOML parse error at line 3, column 12"
/// and the description, drops the `3 | password = "…` excerpt.
fn sanitize_message(message: &str) -> String {
    let is_excerpt = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_excerpt(line))
        .collect();
    if lines.is_empty() {
        "invalid configuration".to_owned()
    } else {
        lines.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    const SEED_PROPERTIES: &str = "\
spring.datasource.url=jdbc:postgresql://postgresql:5432/batch
spring.datasource.username=sqladmin
spring.datasource.password=sqladmin
openshift.project.name=batch
openshift.pvc.name=spring-batch-claim
";

    fn load(overrides: &Overrides, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_with_env(overrides, &|name| vars.get(name).cloned())
    }

    fn write(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
        let path = dir.path().join(name);
        fs::write(&path, contents).expect("write test file");
        path.to_str().expect("utf-8 temp path").to_owned()
    }

    fn no_overrides() -> Overrides {
        Overrides::default()
    }

    #[test]
    fn defaults() {
        let settings = load(&no_overrides(), &[]).unwrap();
        assert_eq!(
            settings,
            Settings {
                database: DatabaseSettings::default(),
                batch: BatchSettings::default(),
                kubernetes: KubernetesSettings::default(),
            }
        );
        assert!(settings.database.is_embedded_default());
        assert_eq!(settings.database.connection_url(), "sqlite://csv2db.db");
        assert_eq!(settings.batch.lease_seconds, 60);
        assert_eq!(settings.batch.spring_batch_version, 6);
        assert_eq!(settings.batch.heartbeat_seconds, None);
    }

    #[test]
    fn seed_properties_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "batch.properties", SEED_PROPERTIES);
        let settings = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &path)]).unwrap();
        let db = &settings.database;
        assert_eq!(db.connection_url(), "postgres://postgresql:5432/batch");
        assert!(!db.is_embedded_default());
        assert_eq!(db.username.as_deref(), Some("sqladmin"));
        assert_eq!(db.password.as_ref().map(Secret::expose), Some("sqladmin"));
        assert_eq!(settings.kubernetes.namespace.as_deref(), Some("batch"));
        assert_eq!(
            settings.kubernetes.pvc_name.as_deref(),
            Some("spring-batch-claim")
        );
        assert_eq!(settings.batch, BatchSettings::default());
    }

    #[test]
    fn spring_config_location_list_prefixes_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(&dir, "batch.properties", SEED_PROPERTIES);
        let second = write(
            &dir,
            "more.properties",
            "spring.datasource.username=other\nsome.unknown.key=x\ncsv2db.leaseSeconds=90\n",
        );
        let missing = dir.path().join("absent.properties");
        let locations = format!(
            "file:{first}, optional:file:{}, {second}",
            missing.display()
        );
        let settings = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &locations)]).unwrap();
        assert_eq!(settings.database.username.as_deref(), Some("other"));
        assert_eq!(
            settings.database.password.as_ref().map(Secret::expose),
            Some("sqladmin")
        );
        assert_eq!(settings.batch.lease_seconds, 90);
    }

    #[test]
    fn spring_config_location_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir, "application.properties", SEED_PROPERTIES);
        let location = format!("{}/", dir.path().display());
        let settings = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &location)]).unwrap();
        assert_eq!(settings.database.username.as_deref(), Some("sqladmin"));
    }

    #[test]
    fn missing_properties_file_is_an_error_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.properties");
        let location = missing.display().to_string();
        let err = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &location)]).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&location), "{message}");
        assert!(message.contains("SPRING_CONFIG_LOCATION"), "{message}");

        let optional = format!("optional:{location}");
        let settings = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &optional)]).unwrap();
        assert!(settings.database.is_embedded_default());
    }

    #[test]
    fn bad_property_value_names_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "batch.properties", "csv2db.lease-seconds=soon\n");
        let err = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &path)]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path), "{message}");
        assert!(message.contains("csv2db.lease-seconds"), "{message}");
    }

    #[test]
    fn toml_overrides_properties() {
        let dir = tempfile::tempdir().unwrap();
        let properties = write(&dir, "batch.properties", SEED_PROPERTIES);
        let toml = write(
            &dir,
            "csv2db.toml",
            r#"
[database]
url = "postgres://db.example:5432/batch"
username = "batch"
password = ""

[batch]
lease_seconds = 120
spring_batch_version = 5
heartbeat_seconds = 15

[kubernetes]
pvc_name = "other-claim"
"#,
        );
        let settings = load(
            &no_overrides(),
            &[
                ("SPRING_CONFIG_LOCATION", &properties),
                ("CSV2DB_CONFIG", &toml),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.database.connection_url(),
            "postgres://db.example:5432/batch"
        );
        assert_eq!(settings.database.username.as_deref(), Some("batch"));
        // An empty TOML value counts as unset: the properties password stays.
        assert_eq!(
            settings.database.password.as_ref().map(Secret::expose),
            Some("sqladmin")
        );
        assert_eq!(
            settings.batch,
            BatchSettings {
                lease_seconds: 120,
                spring_batch_version: 5,
                heartbeat_seconds: Some(15),
            }
        );
        assert_eq!(settings.kubernetes.namespace.as_deref(), Some("batch"));
        assert_eq!(settings.kubernetes.pvc_name.as_deref(), Some("other-claim"));
    }

    #[test]
    fn env_overrides_toml() {
        let dir = tempfile::tempdir().unwrap();
        let toml = write(
            &dir,
            "csv2db.toml",
            "[database]\nurl = \"postgres://toml/db\"\npassword = \"from-toml\"\n[batch]\nlease_seconds = 30\n[kubernetes]\nnamespace = \"toml\"\n",
        );
        let settings = load(
            &no_overrides(),
            &[
                ("CSV2DB_CONFIG", &toml),
                ("SPRING_DATASOURCE_URL", "postgres://env/db"),
                ("SPRING_DATASOURCE_PASSWORD", "from-secret"),
                ("CSV2DB_LEASE_SECONDS", "45"),
                ("CSV2DB_HEARTBEAT_SECONDS", "5"),
                ("CSV2DB_SPRING_BATCH_VERSION", "5"),
                ("CSV2DB_NAMESPACE", "env"),
                ("CSV2DB_PVC_NAME", "env-claim"),
                ("CSV2DB_DATABASE_USERNAME", "env-user"),
            ],
        )
        .unwrap();
        assert_eq!(settings.database.url.as_deref(), Some("postgres://env/db"));
        assert_eq!(settings.database.username.as_deref(), Some("env-user"));
        assert_eq!(
            settings.database.password.as_ref().map(Secret::expose),
            Some("from-secret")
        );
        assert_eq!(
            settings.batch,
            BatchSettings {
                lease_seconds: 45,
                spring_batch_version: 5,
                heartbeat_seconds: Some(5),
            }
        );
        assert_eq!(settings.kubernetes.namespace.as_deref(), Some("env"));
        assert_eq!(settings.kubernetes.pvc_name.as_deref(), Some("env-claim"));
    }

    #[test]
    fn csv2db_variables_beat_spring_variables() {
        let settings = load(
            &no_overrides(),
            &[
                ("CSV2DB_DATABASE_USERNAME", "mine"),
                ("SPRING_DATASOURCE_USERNAME", "spring"),
                ("CSV2DB_DATABASE_PASSWORD", "mine-pw"),
                ("SPRING_DATASOURCE_PASSWORD", "spring-pw"),
            ],
        )
        .unwrap();
        assert_eq!(settings.database.username.as_deref(), Some("mine"));
        assert_eq!(
            settings.database.password.as_ref().map(Secret::expose),
            Some("mine-pw")
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        let toml = write(
            &dir,
            "csv2db.toml",
            "[database]\nurl = \"postgres://toml/db\"\n",
        );
        let settings = load(
            &no_overrides(),
            &[
                ("CSV2DB_CONFIG", &toml),
                ("DATABASE_URL", ""),
                ("CSV2DB_LEASE_SECONDS", ""),
                ("SPRING_CONFIG_LOCATION", ""),
            ],
        )
        .unwrap();
        assert_eq!(settings.database.url.as_deref(), Some("postgres://toml/db"));
        assert_eq!(settings.batch.lease_seconds, 60);
    }

    #[test]
    fn overrides_beat_env() {
        let dir = tempfile::tempdir().unwrap();
        let from_env = write(&dir, "env.toml", "[batch]\nlease_seconds = 10\n");
        let from_cli = write(&dir, "cli.toml", "[batch]\nlease_seconds = 20\n");
        let overrides = Overrides {
            config_file: Some(PathBuf::from(&from_cli)),
            database_url: Some("sqlite://cli.db".to_owned()),
        };
        let settings = load(
            &overrides,
            &[
                ("CSV2DB_CONFIG", &from_env),
                ("DATABASE_URL", "postgres://env/db"),
            ],
        )
        .unwrap();
        assert_eq!(settings.database.connection_url(), "sqlite://cli.db");
        assert_eq!(settings.batch.lease_seconds, 20);
    }

    #[test]
    fn database_url_beats_spring_datasource_url() {
        let settings = load(
            &no_overrides(),
            &[
                ("DATABASE_URL", "postgres://database-url/db"),
                ("SPRING_DATASOURCE_URL", "jdbc:postgresql://spring/db"),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.database.url.as_deref(),
            Some("postgres://database-url/db")
        );
    }

    #[test]
    fn bad_lease_seconds_names_the_variable() {
        let err = load(&no_overrides(), &[("CSV2DB_LEASE_SECONDS", "a minute")]).unwrap_err();
        assert!(matches!(err, ConfigError::Environment { .. }), "{err:?}");
        assert!(err.to_string().contains("CSV2DB_LEASE_SECONDS"), "{err}");
        let err = load(&no_overrides(), &[("CSV2DB_HEARTBEAT_SECONDS", "-1")]).unwrap_err();
        assert!(
            err.to_string().contains("CSV2DB_HEARTBEAT_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn spring_batch_version_7_is_rejected() {
        let err = load(&no_overrides(), &[("CSV2DB_SPRING_BATCH_VERSION", "7")]).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        assert!(message.contains("batch.spring_batch_version"), "{message}");
        assert!(message.contains("CSV2DB_SPRING_BATCH_VERSION"), "{message}");

        let dir = tempfile::tempdir().unwrap();
        let toml = write(&dir, "csv2db.toml", "[batch]\nspring_batch_version = 7\n");
        let err = load(&no_overrides(), &[("CSV2DB_CONFIG", &toml)]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&toml), "{message}");
        assert!(message.contains("must be 5 or 6"), "{message}");

        let err = load(&no_overrides(), &[("CSV2DB_SPRING_BATCH_VERSION", "six")]).unwrap_err();
        assert!(
            err.to_string().contains("CSV2DB_SPRING_BATCH_VERSION"),
            "{err}"
        );
    }

    #[test]
    fn lease_and_heartbeat_ranges() {
        let err = load(&no_overrides(), &[("CSV2DB_LEASE_SECONDS", "0")]).unwrap_err();
        assert!(err.to_string().contains("batch.lease_seconds"), "{err}");
        let err = load(
            &no_overrides(),
            &[
                ("CSV2DB_LEASE_SECONDS", "30"),
                ("CSV2DB_HEARTBEAT_SECONDS", "30"),
            ],
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("batch.heartbeat_seconds"), "{message}");
        assert!(message.contains("CSV2DB_HEARTBEAT_SECONDS"), "{message}");
    }

    #[test]
    fn missing_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let overrides = Overrides {
            config_file: Some(missing.clone()),
            database_url: None,
        };
        let err = load(&overrides, &[]).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );

        let missing = missing.display().to_string();
        let err = load(&no_overrides(), &[("CSV2DB_CONFIG", &missing)]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&missing), "{message}");
        assert!(message.contains("CSV2DB_CONFIG"), "{message}");

        let dir_path = dir.path().display().to_string();
        let err = load(&no_overrides(), &[("CSV2DB_CONFIG", &dir_path)]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    }

    #[test]
    fn unknown_toml_key_names_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let toml = write(&dir, "csv2db.toml", "[batch]\nleas_seconds = 5\n");
        let err = load(&no_overrides(), &[("CSV2DB_CONFIG", &toml)]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&toml), "{message}");
        assert!(message.contains("key batch.leas_seconds: "), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn toml_type_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let toml = write(&dir, "csv2db.toml", "[batch]\nlease_seconds = \"soon\"\n");
        let err = load(&no_overrides(), &[("CSV2DB_CONFIG", &toml)]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&toml), "{message}");
        assert!(message.contains("batch.lease_seconds"), "{message}");
    }

    #[test]
    fn errors_never_echo_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            "[database]\npassword = 918273645\n",
            "[database]\npassword = [\"hunter2-secret\"]\n",
            "[database]\npassword = { value = \"hunter2-secret\" }\n",
            "[database]\npassword = \"hunter2-secret\n",
            "[database]\npassword = 'hunter2-secret' x\n",
            "[database]\nurl = 918273645\n",
            "database = \"postgres://u:hunter2-secret@h/db\"\n",
            "password = \"hunter2-secret\"\n",
        ];
        for (i, case) in cases.iter().enumerate() {
            let toml = write(&dir, &format!("case{i}.toml"), case);
            let err = load(&no_overrides(), &[("CSV2DB_CONFIG", &toml)]).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2"), "case {i}: {shown}");
            assert!(!shown.contains("918273645"), "case {i}: {shown}");
            assert!(shown.contains(&toml), "case {i}: {shown}");
            assert!(!err.to_string().contains('\n'), "case {i}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "batch.properties", SEED_PROPERTIES);
        let settings = load(
            &no_overrides(),
            &[
                ("SPRING_CONFIG_LOCATION", &path),
                ("SPRING_DATASOURCE_PASSWORD", "field-secret"),
            ],
        )
        .unwrap();
        let debug = format!("{settings:?} {settings:#?}");
        assert!(!debug.contains("field-secret"), "{debug}");
        assert!(debug.contains("***"), "{debug}");

        let settings = load(
            &no_overrides(),
            &[("DATABASE_URL", "postgres://admin:url-secret@db:5432/batch")],
        )
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("url-secret"), "{debug}");
        assert!(
            debug.contains("postgres://admin:***@db:5432/batch"),
            "{debug}"
        );

        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn connection_urls() {
        let url = |url: &str| DatabaseSettings {
            url: Some(url.to_owned()),
            ..DatabaseSettings::default()
        };
        let cases = [
            (
                "jdbc:postgresql://h:5432/db?sslmode=require",
                "postgres://h:5432/db?sslmode=require",
            ),
            ("jdbc:postgresql:batch", "postgres://localhost/batch"),
            ("jdbc:postgresql:/", "postgres://localhost/"),
            ("jdbc:sqlite:/tmp/x.db", "sqlite:///tmp/x.db"),
            ("jdbc:sqlite:data/x.db", "sqlite://data/x.db"),
            ("jdbc:sqlite:/tmp/100%.db", "sqlite:///tmp/100%25.db"),
            ("jdbc:sqlite::memory:", "sqlite::memory:"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgresql://h/db", "postgresql://h/db"),
            ("sqlite:x.db", "sqlite:x.db"),
            ("mysql://h/db", "mysql://h/db"),
        ];
        for (input, expected) in cases {
            let settings = url(input);
            assert_eq!(settings.connection_url(), expected, "{input}");
            assert!(!settings.is_embedded_default());
        }
        assert!(url("").is_embedded_default());
        assert_eq!(url("").connection_url(), "sqlite://csv2db.db");
    }

    #[test]
    fn properties_are_decoded_like_java() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.properties");
        // "p\u00e4ss" in ISO-8859-1, plus an escaped form and a continuation line.
        fs::write(
            &path,
            b"spring.datasource.password=p\xe4ss\nopenshift.project.name=b\\u00e4tch\nopenshift.pvc.name=a\\\n    b\n",
        )
        .unwrap();
        let location = path.display().to_string();
        let settings = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &location)]).unwrap();
        assert_eq!(
            settings.database.password.as_ref().map(Secret::expose),
            Some("p\u{e4}ss")
        );
        assert_eq!(settings.kubernetes.namespace.as_deref(), Some("b\u{e4}tch"));
        assert_eq!(settings.kubernetes.pvc_name.as_deref(), Some("ab"));
    }

    #[test]
    fn malformed_properties_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "bad.properties", "a=\\uZZZZ\n");
        let err = load(&no_overrides(), &[("SPRING_CONFIG_LOCATION", &path)]).unwrap_err();
        assert!(matches!(err, ConfigError::Properties { .. }), "{err:?}");
        assert!(err.to_string().contains(&path), "{err}");
    }
}
