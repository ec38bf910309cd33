//! `csv2db`: runs Spring Batch-style jobs from the command line, with their metadata in Spring
//! Batch's own tables on PostgreSQL or an embedded SQLite file.

mod cli;
mod commands;
mod config;
mod exit;
mod jobs;
mod output;
mod people;
mod progress;
mod runner;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(exit::usage_exit_code(&error));
        }
    };
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("csv2db: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILED);
        }
    };
    // The command runs as a task on the runtime's worker threads, not on this one: the worker
    // that receives the database's answer then goes on with the command itself, without waking
    // another thread for each round trip.
    let outcome = match runtime.block_on(runtime.spawn(commands::run(cli))) {
        Ok(outcome) => outcome,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => Err(error.into()),
        },
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            match error.downcast_ref::<clap::Error>() {
                Some(usage) => {
                    let _ = usage.print();
                }
                None => eprintln!("csv2db: {}", exit::one_line(&error)),
            }
            ExitCode::from(exit::error_exit_code(&error))
        }
    }
}

/// Logs go to stderr; `-v` raises the level, RUST_LOG overrides it.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info,sqlx=warn",
        1 => "debug,sqlx=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
