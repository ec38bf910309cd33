//! `jobs`, `executions` and `execution`: reading the metadata.

use std::collections::BTreeMap;

use batch_core::error::RepositoryError;
use batch_core::repository::ExecutionFilter;
use serde_json::json;

use super::Session;
use crate::cli::{ExecutionsArgs, OutputFormat};
use crate::exit;
use crate::output::{self, duration, parameters_inline, table, time};

/// Lists the jobs this program defines and those the repository has run.
pub async fn jobs(session: &Session) -> anyhow::Result<u8> {
    let repository = session.connect().await?.job_repository();
    let mut rows: BTreeMap<String, Option<batch_core::repository::JobSummary>> = session
        .registry
        .names()
        .into_iter()
        .map(|name| (name, None))
        .collect();
    for summary in repository.job_summaries().await? {
        rows.insert(summary.job_name.clone(), Some(summary));
    }
    match session.output {
        OutputFormat::Json => output::print_json(&json!(rows
            .iter()
            .map(|(name, summary)| json!({
                "job_name": name,
                "defined": session.registry.get(name).is_ok(),
                "instance_count": summary.as_ref().map_or(0, |s| s.instance_count),
                "execution_count": summary.as_ref().map_or(0, |s| s.execution_count),
                "last_execution_id": summary.as_ref().and_then(|s| s.last_execution.as_ref()).map(|l| l.0),
                "last_status": summary.as_ref().and_then(|s| s.last_execution.as_ref()).map(|l| l.1.as_str()),
            }))
            .collect::<Vec<_>>()))?,
        OutputFormat::Table => {
            let mut listing = table(&["JOB", "INSTANCES", "EXECUTIONS", "LAST EXECUTION", "LAST STATUS", "LAST START"]);
            for (name, summary) in &rows {
                let last = summary.as_ref().and_then(|s| s.last_execution.as_ref());
                listing.add_row(vec![
                    name.clone(),
                    summary.as_ref().map_or(0, |s| s.instance_count).to_string(),
                    summary.as_ref().map_or(0, |s| s.execution_count).to_string(),
                    last.map_or_else(String::new, |l| l.0.to_string()),
                    last.map_or_else(String::new, |l| l.1.to_string()),
                    last.map_or_else(String::new, |l| time(l.2)),
                ]);
            }
            println!("{listing}");
        }
    }
    Ok(exit::OK)
}

/// Lists job executions, newest first.
pub async fn executions(session: &Session, args: ExecutionsArgs) -> anyhow::Result<u8> {
    let repository = session.connect().await?.job_repository();
    let filter = ExecutionFilter {
        job_name: args.job,
        status: args.status,
        limit: Some(args.limit),
    };
    let executions = repository.find_job_executions(&filter).await?;
    match session.output {
        OutputFormat::Json => output::print_json(&json!(
            executions
                .iter()
                .map(|e| output::execution_json(e, None))
                .collect::<Vec<_>>()
        ))?,
        OutputFormat::Table => {
            let mut listing = table(&[
                "ID",
                "JOB",
                "INSTANCE",
                "STATUS",
                "EXIT CODE",
                "START",
                "DURATION",
                "PARAMETERS",
            ]);
            for execution in &executions {
                listing.add_row(vec![
                    execution.id.to_string(),
                    execution.job_name().to_string(),
                    execution.instance.id.to_string(),
                    execution.status.to_string(),
                    execution.exit_status.code.clone(),
                    time(execution.start_time),
                    duration(execution.start_time, execution.end_time),
                    parameters_inline(execution),
                ]);
            }
            println!("{listing}");
        }
    }
    Ok(exit::OK)
}

/// Shows one execution with its parameters, steps, counters and exit messages.
pub async fn execution(session: &Session, id: i64) -> anyhow::Result<u8> {
    let repository = session.connect().await?.job_repository();
    let execution = repository
        .job_execution(id)
        .await?
        .ok_or(RepositoryError::NoSuchExecution(id))?;
    let steps = repository.step_executions(id).await?;
    if session.output == OutputFormat::Json {
        output::print_json(&output::execution_json(&execution, Some(&steps)))?;
        return Ok(exit::OK);
    }
    println!(
        "Job execution {} of {} (instance {}, key {})",
        execution.id,
        execution.job_name(),
        execution.instance.id,
        execution.instance.job_key
    );
    println!(
        "  status:       {} (exit code {})",
        execution.status, execution.exit_status.code
    );
    println!("  created:      {}", time(Some(execution.create_time)));
    println!("  started:      {}", time(execution.start_time));
    println!("  ended:        {}", time(execution.end_time));
    println!("  last updated: {}", time(execution.last_updated));
    let mut parameters = table(&["PARAMETER", "TYPE", "VALUE", "IDENTIFYING"]);
    for (name, parameter) in execution.parameters.iter() {
        parameters.add_row(vec![
            name.to_string(),
            parameter.value.java_type().to_string(),
            parameter.value.to_stored_string(),
            if parameter.identifying { "Y" } else { "N" }.to_string(),
        ]);
    }
    println!("\n{parameters}");
    let mut step_table = table(&[
        "STEP",
        "ID",
        "STATUS",
        "EXIT CODE",
        "READ",
        "WRITE",
        "FILTER",
        "COMMIT",
        "ROLLBACK",
        "SKIP R/P/W",
        "START",
        "DURATION",
    ]);
    for step in &steps {
        let c = &step.counters;
        step_table.add_row(vec![
            step.step_name.clone(),
            step.id.to_string(),
            step.status.to_string(),
            step.exit_status.code.clone(),
            c.read.to_string(),
            c.write.to_string(),
            c.filter.to_string(),
            c.commit.to_string(),
            c.rollback.to_string(),
            format!("{}/{}/{}", c.read_skip, c.process_skip, c.write_skip),
            time(step.start_time),
            duration(step.start_time, step.end_time),
        ]);
    }
    println!("\n{step_table}");
    for step in steps
        .iter()
        .filter(|s| !s.exit_status.description.is_empty())
    {
        println!(
            "\nExit message of step {} ({}):\n{}",
            step.step_name, step.id, step.exit_status.description
        );
    }
    if !execution.exit_status.description.is_empty() {
        println!(
            "\nExit message of the job:\n{}",
            execution.exit_status.description
        );
    }
    Ok(exit::OK)
}
