//! Command-line syntax.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, documented in `--help` and README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  the job completed (or the command succeeded)
  1  the job failed, or an error occurred (database unreachable, ...)
  2  invalid usage, parameters or configuration; unknown job or execution
  3  the job instance is already complete (use new identifying parameters or --next)
  4  the job instance is already running
  5  the job stopped (csv2db stop, SIGTERM or Ctrl-C); restart it with `csv2db restart ID`";

/// Run Spring Batch-style jobs, with their metadata in Spring Batch's own tables.
#[derive(Debug, Parser)]
#[command(
    name = "csv2db",
    version,
    after_help = EXIT_CODES,
    subcommand_value_name = "JOB|COMMAND",
    subcommand_help_heading = "Commands (or a job name: csv2db importUserJob key=value ...)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options valid with every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (default: $CSV2DB_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Metadata database URL: postgres://…, sqlite://FILE or jdbc:… (default: $DATABASE_URL, then
    /// the configuration, then sqlite://csv2db.db).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Output format of listings.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How listings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a job: csv2db start importUserJob jobFileLocation=/test/myfile2.csv batchRun=2
    Start(StartArgs),
    /// List the jobs known to the repository and to this program.
    Jobs,
    /// List job executions, newest first.
    Executions(ExecutionsArgs),
    /// Show one job execution: parameters, steps, counters and exit messages.
    Execution {
        /// The job execution id.
        id: i64,
    },
    /// Restart a FAILED or STOPPED execution's instance with the same parameters.
    Restart {
        /// The job execution id.
        id: i64,
    },
    /// Ask a running execution to stop at its next step or chunk boundary.
    Stop {
        /// The job execution id.
        id: i64,
    },
    /// Mark a stopped or failed execution ABANDONED so its instance is never restarted.
    Abandon {
        /// The job execution id.
        id: i64,
    },
    /// Append random "First,Last" rows to a CSV file, atomically, with a manifest (step1 of
    /// importUserJob runs this).
    GeneratePeople(GeneratePeopleArgs),
    /// Kubernetes and OpenShift: launch a job in a cluster (see deploy/).
    #[command(subcommand)]
    Kube(KubeCommand),
    /// `csv2db <JOB> [key=value ...]`: the same as `csv2db start <JOB> ...`.
    #[command(external_subcommand)]
    Job(Vec<String>),
}

/// Arguments of `start` (and of the `csv2db <JOB> ...` shorthand).
#[derive(Debug, Args)]
#[command(after_help = "\
Parameters are key=value (an identifying String), or in Spring Batch's notation
key=value,type[,identifying], e.g. count=10,java.lang.Long or run.date=2024-01-15,java.time.LocalDate,false.
Types: java.lang.String, java.lang.Long, java.lang.Double, java.util.Date, java.time.LocalDate,
java.time.LocalDateTime (or string, long, double, date, localdate, localdatetime).")]
pub struct StartArgs {
    /// The job's name.
    pub job: String,
    /// Job parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,
    /// Start a new instance: the last run's parameters, overridden by those given, with run.id + 1.
    #[arg(long)]
    pub next: bool,
}

impl StartArgs {
    /// Parses the `csv2db <JOB> [args ...]` shorthand with the same rules as `start`.
    pub fn from_external(args: &[String]) -> Result<StartArgs, clap::Error> {
        #[derive(Parser)]
        #[command(name = "csv2db")]
        struct Shorthand {
            #[command(flatten)]
            start: StartArgs,
        }
        let argv = std::iter::once("csv2db".to_string()).chain(args.iter().cloned());
        Shorthand::try_parse_from(argv).map(|shorthand| shorthand.start)
    }
}

/// `csv2db kube ...`.
#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Create the batch/v1 Job that runs `csv2db <JOB> [KEY=VALUE ...]` in the cluster, under the
    /// service account, ConfigMap, Secret and claim of deploy/base.
    Launch(KubeLaunchArgs),
}

/// Arguments of `kube launch`.
#[derive(Debug, Args)]
#[command(after_help = "\
The Job is named after the job and a hash of its parameters, so the same launch twice is
refused: exit code 4 while it runs, 3 when it completed, 2 when it failed, which --replace
relaunches (it deletes the failed Job first: a restart).
It runs as service account csv2db-launcher, mounts the ConfigMap
batch-config at /config and the claim at /test, and reads the database password from the Secret
csv2db-db (key password). --dry-run prints it as YAML (-o json: JSON) for kubectl or oc:
  csv2db kube launch importUserJob jobFileLocation=/test/myfile1.csv batchRun=1 --dry-run \\
    | kubectl create -f -        # or: oc create -f -")]
pub struct KubeLaunchArgs {
    /// The job's name.
    pub job: String,
    /// Job parameters, as for `csv2db start`.
    #[arg(value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,
    /// Print the Job as YAML (with -o json: JSON) instead of creating it; contacts no cluster.
    #[arg(long)]
    pub dry_run: bool,
    /// Stream the launcher's log until the Job finishes, then exit with its exit code.
    #[arg(long, conflicts_with = "dry_run")]
    pub follow: bool,
    /// Delete a failed launcher Job of the same job and parameters (an earlier launch) and its
    /// pod first, so that the FAILED run is launched again (a restart).
    #[arg(long, conflicts_with = "dry_run")]
    pub replace: bool,
    /// With --follow: how long the launcher pod may take to start (pull, schedule, mount).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub start_timeout: u64,
    /// The csv2db image (default: kubernetes.image / $CSV2DB_IMAGE, then csv2db:<version>).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
}

/// Arguments of `generate-people`.
#[derive(Debug, Args)]
pub struct GeneratePeopleArgs {
    /// How many rows to append.
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// The CSV file to append to.
    #[arg(long, env = "FILENAME", value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// Arguments of `executions`.
#[derive(Debug, Args)]
pub struct ExecutionsArgs {
    /// Only this job's executions.
    #[arg(long)]
    pub job: Option<String>,
    /// Only executions with this status (COMPLETED, FAILED, STARTED, ...).
    #[arg(long)]
    pub status: Option<batch_core::BatchStatus>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_job_name_is_a_launch() {
        let cli = Cli::try_parse_from([
            "csv2db",
            "importUserJob",
            "jobFileLocation=/test/myfile2.csv",
            "batchRun=2",
        ])
        .expect("parses");
        let Command::Job(args) = cli.command else {
            panic!("not a job launch")
        };
        let start = StartArgs::from_external(&args).expect("start args");
        assert_eq!(start.job, "importUserJob");
        assert_eq!(
            start.parameters,
            ["jobFileLocation=/test/myfile2.csv", "batchRun=2"]
        );
        assert!(!start.next);
    }

    #[test]
    fn kube_launch_parses() {
        let cli = Cli::try_parse_from([
            "csv2db",
            "kube",
            "launch",
            "importUserJob",
            "batchRun=1",
            "--dry-run",
        ])
        .expect("parses");
        let Command::Kube(KubeCommand::Launch(args)) = cli.command else {
            panic!("not kube launch")
        };
        assert_eq!(args.job, "importUserJob");
        assert_eq!(args.parameters, ["batchRun=1"]);
        assert!(args.dry_run && !args.follow);
        assert!(
            Cli::try_parse_from(["csv2db", "kube", "launch", "j", "--dry-run", "--follow"])
                .is_err()
        );
    }
}
