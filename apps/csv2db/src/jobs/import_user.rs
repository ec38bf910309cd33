//! `importUserJob`: the seed's job, in two steps.
//!
//! - **step1** (`generate-csv`) runs `csv2db generate-people --count N` as a container job, which
//!   appends N random people to the file at `jobFileLocation` (on the shared volume when it runs
//!   in a cluster) with a manifest;
//! - **step2** reads the file, upper-cases the names and writes them into `people`, in chunks
//!   committed together with the step's progress; the file is checked against its manifest
//!   alongside the first chunk, which commits only once the check has passed.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use batch_core::job::Job;
use batch_core::job::parameters::{JobParameters, ParameterValue};
use batch_core::step::item::{
    ChunkComponents, ChunkFactory, ChunkStep, ItemProcessor, ItemWriter, Precondition,
};
use batch_core::step::{BoxError, StepContext};
use batch_io::csv::{CsvItemReader, StringRecord};
use batch_io::postgres::{PgCopyWriter, PgInsertWriter};
use batch_io::rejects::RejectsFile;
use batch_io::sqlite::SqliteInsertWriter;
use batch_io::table::{TableRow, TableTarget};
use batch_kube::{ContainerJobSpec, ContainerJobStep, ContainerRunner};
use compact_str::CompactString;

use crate::config::KubernetesSettings;
use crate::people;
use crate::progress::Progress;

/// The job's name, as the seed launches it.
pub const NAME: &str = "importUserJob";
/// Rows per chunk unless `chunkSize` says otherwise (see BENCHMARKS.md).
const DEFAULT_CHUNK_SIZE: u64 = 50_000;
/// Rows step1 generates unless `count` says otherwise.
const DEFAULT_COUNT: u64 = 10;
/// The seed's shared claim.
const DEFAULT_CLAIM: &str = "spring-batch-claim";
/// Where the seed mounts it.
const DEFAULT_MOUNT_PATH: &str = "/test";
/// The longest name the seed's `people` columns (VARCHAR(20)) hold.
const MAX_NAME_CHARS: usize = 20;

/// The job definition; step1 runs through `runner`, with the image and volume of `settings`.
pub fn job(settings: &KubernetesSettings, runner: Arc<dyn ContainerRunner>) -> Job {
    Job::builder(NAME)
        .required_parameter("jobFileLocation")
        .optional_parameter("batchRun")
        .optional_parameter("count")
        .optional_parameter("chunkSize")
        .optional_parameter("skipLimit")
        .optional_parameter("writer")
        .step(ContainerJobStep::new(
            "step1",
            generate_spec(settings),
            runner,
        ))
        .step(ChunkStep::new("step2", PeopleImport))
        .build()
}

/// step1's container: the product's own generator, writing to `$FILENAME` on the shared claim
/// (the seed's `spring-batch-claim`, mounted at `/test`).
fn generate_spec(settings: &KubernetesSettings) -> ContainerJobSpec {
    let image = settings
        .image
        .clone()
        .unwrap_or_else(|| format!("csv2db:{}", env!("CARGO_PKG_VERSION")));
    let claim = settings.pvc_name.as_deref().unwrap_or(DEFAULT_CLAIM);
    let mount_path = settings.mount_path.as_deref().unwrap_or(DEFAULT_MOUNT_PATH);
    ContainerJobSpec::new("generate-csv", image)
        .command(["csv2db", "generate-people"])
        .arg("--count")
        .arg("$(COUNT)")
        .env_parameter("FILENAME", "jobFileLocation")
        .env_parameter_or("COUNT", "count", DEFAULT_COUNT.to_string())
        .volume(claim, mount_path)
}

/// A row of `people`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    first_name: CompactString,
    last_name: CompactString,
}

impl TableRow for Person {
    fn column_count(&self) -> usize {
        2
    }

    fn field(&self, index: usize) -> Option<&str> {
        match index {
            0 => Some(self.first_name.as_str()),
            1 => Some(self.last_name.as_str()),
            _ => None,
        }
    }
}

/// A name upper-cased as Java's `toUpperCase` does, in place when it is ASCII.
fn upper_case(mut name: CompactString) -> CompactString {
    if name.is_ascii() {
        name.make_ascii_uppercase();
        name
    } else {
        name.to_uppercase()
    }
}

/// The seed's `people` table (schema-all.sql), per database.
fn people_table() -> TableTarget {
    TableTarget {
        table: "people".into(),
        columns: vec!["first_name".into(), "last_name".into()],
        create_postgres: "CREATE TABLE IF NOT EXISTS people (person_id SERIAL PRIMARY KEY, \
                          first_name VARCHAR(20), last_name VARCHAR(20))"
            .into(),
        create_sqlite:
            "CREATE TABLE IF NOT EXISTS people (person_id INTEGER PRIMARY KEY AUTOINCREMENT, \
                        first_name VARCHAR(20), last_name VARCHAR(20))"
                .into(),
    }
}

/// The seed's PersonItemProcessor: upper-cases both names, refusing names `people` cannot hold.
struct UpperCaseNames;

impl ItemProcessor<Person, Person> for UpperCaseNames {
    fn process(&self, person: Person) -> Result<Option<Person>, String> {
        let upper = Person {
            first_name: upper_case(person.first_name),
            last_name: upper_case(person.last_name),
        };
        for (column, value) in [
            ("first_name", &upper.first_name),
            ("last_name", &upper.last_name),
        ] {
            // A name has at most as many characters as bytes.
            if value.len() <= MAX_NAME_CHARS {
                continue;
            }
            let chars = value.chars().count();
            if chars > MAX_NAME_CHARS {
                return Err(format!(
                    "{column} '{value}' has {chars} characters; people.{column} holds at most {MAX_NAME_CHARS}"
                ));
            }
        }
        Ok(Some(upper))
    }
}

/// Builds step2's reader, processor and writer from the job parameters.
struct PeopleImport;

#[async_trait]
impl ChunkFactory<Person, Person> for PeopleImport {
    async fn create(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<ChunkComponents<Person, Person>, BoxError> {
        let parameters = ctx.parameters();
        let file = PathBuf::from(
            parameters
                .get("jobFileLocation")
                .map(|p| p.value.to_stored_string())
                .ok_or("the parameter jobFileLocation is required")?,
        );
        let chunk_size = number(parameters, "chunkSize", DEFAULT_CHUNK_SIZE)?;
        let skip_limit = number(parameters, "skipLimit", 0)?;
        let manifest = people::read_manifest(&file)?;
        tracing::info!("importing {} rows from {}", manifest.rows, file.display());
        // The file is checked against its manifest while the first chunk is read and written
        // (hashing 10M rows takes 0.1 s); nothing commits before it passes.
        // Started here, not when first awaited; a step that ends early leaves it to finish.
        let checked = file.clone();
        let check = tokio::task::spawn_blocking(move || people::check(&checked, &manifest));
        let precondition: Precondition = Box::pin(async move {
            check.await??;
            Ok(())
        });

        let writer: Box<dyn ItemWriter<Person>> = match batch_repository::postgres_pool(
            ctx.repository(),
        ) {
            Some(pool) => match parameters.get_string("writer").unwrap_or("copy") {
                "copy" => Box::new(PgCopyWriter::new(pool, people_table())),
                "insert" => Box::new(PgInsertWriter::new(pool, people_table())),
                other => {
                    return Err(format!("parameter writer={other}: expected copy or insert").into());
                }
            },
            None => match batch_repository::sqlite_pool(ctx.repository()) {
                Some(pool) => Box::new(SqliteInsertWriter::new(pool, people_table())),
                None => {
                    return Err("importUserJob writes into the job repository's database, which must be PostgreSQL or SQLite".into());
                }
            },
        };
        let reader = CsvItemReader::new(file.clone(), |record: &StringRecord| {
            let field = |index: usize| CompactString::from(record.get(index).unwrap_or_default());
            Ok(Person {
                first_name: field(0),
                last_name: field(1),
            })
        })
        .fields(2)
        // Parse ahead while the database writes the current chunk.
        .buffer_items(usize::try_from(chunk_size)?);
        let mut rejects = None;
        if skip_limit > 0 {
            let mut file = RejectsFile::next_to(&file);
            file.open(&ctx.step_execution().context)?;
            rejects = Some(Box::new(file) as Box<dyn batch_core::step::item::RejectSink>);
        }
        Ok(ChunkComponents {
            reader: Box::new(reader),
            processor: Box::new(UpperCaseNames),
            writer,
            rejects,
            chunk_size: usize::try_from(chunk_size)?,
            skip_limit,
            listener: Some(Arc::new(Progress::new("step2"))),
            precondition: Some(precondition),
        })
    }
}

/// A numeric job parameter given as a Long or as a String of digits.
fn number(parameters: &JobParameters, name: &str, default: u64) -> Result<u64, BoxError> {
    match parameters.get(name).map(|p| &p.value) {
        None => Ok(default),
        Some(ParameterValue::Long(value)) if *value >= 0 => Ok(*value as u64),
        Some(ParameterValue::String(text)) => text.trim().parse().map_err(|_| {
            format!("parameter {name}={text} is not a non-negative whole number").into()
        }),
        Some(other) => {
            Err(format!("parameter {name}={other} is not a non-negative whole number").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(first: &str, last: &str) -> Person {
        Person {
            first_name: first.into(),
            last_name: last.into(),
        }
    }

    #[test]
    fn names_are_upper_cased() {
        let processed = UpperCaseNames
            .process(person("Stephanie", "straße"))
            .expect("valid");
        assert_eq!(processed, Some(person("STEPHANIE", "STRASSE")));
    }

    #[test]
    fn names_longer_than_the_column_are_refused() {
        let error = UpperCaseNames
            .process(person("Bill", &"x".repeat(21)))
            .expect_err("too long");
        assert!(
            error.contains("last_name")
                && error.contains("21 characters")
                && error.contains("at most 20"),
            "{error}"
        );
        assert!(
            UpperCaseNames
                .process(person("Bill", &"é".repeat(20)))
                .is_ok()
        );
    }

    #[test]
    fn numeric_parameters_accept_longs_and_digit_strings() {
        let parameters =
            JobParameters::parse_args(["chunkSize=500", "skipLimit=3,java.lang.Long", "count=x"])
                .expect("parse");
        assert_eq!(number(&parameters, "chunkSize", 1).expect("string"), 500);
        assert_eq!(number(&parameters, "skipLimit", 1).expect("long"), 3);
        assert_eq!(number(&parameters, "missing", 7).expect("default"), 7);
        assert!(number(&parameters, "count", 1).is_err());
    }
}
