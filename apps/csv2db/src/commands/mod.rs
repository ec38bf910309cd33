//! The commands: each module runs one family of them.

mod inspect;
pub mod kube;
mod launch;

use std::sync::Arc;

use anyhow::Context as _;
use batch_core::launch::{JobLauncher, JobOperator, JobRegistry, LaunchSettings};
use batch_repository::{ConnectOptions, Repository};

use crate::cli::{Cli, Command, GeneratePeopleArgs, KubeCommand, OutputFormat, StartArgs};
use crate::config::{Overrides, Settings};
use crate::jobs;

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let overrides = Overrides {
        config_file: cli.global.config.clone(),
        database_url: cli.global.database_url.clone(),
    };
    let output = cli.global.output;
    let session = || -> anyhow::Result<Session> {
        let settings = Settings::load(&overrides)?;
        Ok(Session {
            registry: Arc::new(jobs::registry(&settings.kubernetes)?),
            settings,
            output,
        })
    };
    match cli.command {
        Command::GeneratePeople(args) => generate_people(&args),
        Command::Start(args) => launch::start(&session()?, args).await,
        Command::Job(args) => {
            let args = StartArgs::from_external(&args)?;
            launch::start(&session()?, args).await
        }
        Command::Restart { id } => launch::restart(&session()?, id).await,
        Command::Stop { id } => launch::stop(&session()?, id).await,
        Command::Abandon { id } => launch::abandon(&session()?, id).await,
        Command::Jobs => inspect::jobs(&session()?).await,
        Command::Executions(args) => inspect::executions(&session()?, args).await,
        Command::Execution { id } => inspect::execution(&session()?, id).await,
        Command::Kube(KubeCommand::Launch(args)) => kube::launch(&session()?, args).await,
    }
}

/// `csv2db generate-people`: needs no configuration or database.
fn generate_people(args: &GeneratePeopleArgs) -> anyhow::Result<u8> {
    let manifest = crate::people::generate(&args.file, args.count)?;
    println!(
        "{}: {} rows, {} bytes, sha256 {}",
        args.file.display(),
        manifest.rows,
        manifest.bytes,
        manifest.sha256
    );
    Ok(crate::exit::OK)
}

/// What every command works with.
pub struct Session {
    settings: Settings,
    registry: Arc<JobRegistry>,
    output: OutputFormat,
}

impl Session {
    /// Connects to the configured metadata database.
    async fn connect(&self) -> anyhow::Result<Repository> {
        let database = &self.settings.database;
        let url = database.connection_url();
        if database.is_embedded_default() {
            tracing::debug!("using the embedded SQLite job repository {url}");
        }
        let version = self
            .settings
            .batch
            .spring_batch_version
            .to_string()
            .parse()
            .context("invalid spring_batch_version")?;
        let options = ConnectOptions {
            url,
            username: database.username.clone(),
            password: database
                .password
                .as_ref()
                .map(|secret| secret.expose().to_string()),
            version,
        };
        Ok(batch_repository::connect(&options).await?)
    }

    /// Crash-detection timing from the settings.
    fn launch_settings(&self) -> LaunchSettings {
        let batch = &self.settings.batch;
        let mut settings =
            LaunchSettings::with_lease(std::time::Duration::from_secs(batch.lease_seconds));
        if let Some(seconds) = batch.heartbeat_seconds {
            settings.heartbeat = std::time::Duration::from_secs(seconds);
        }
        settings
    }

    /// An operator over the built-in jobs and `repository`.
    fn operator(&self, repository: &Repository) -> JobOperator {
        let launcher = JobLauncher::new(repository.job_repository(), self.launch_settings());
        JobOperator::new(launcher, self.registry.clone())
    }
}
