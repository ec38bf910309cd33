//! Printing executions as aligned tables for people or as JSON for scripts.

use batch_core::job::JobExecution;
use batch_core::step::StepExecution;
use chrono::NaiveDateTime;
use comfy_table::{Table, presets};
use serde_json::{Value, json};

use crate::cli::OutputFormat;

/// A table with the given column headers and no borders, like psql's aligned output.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(headers.to_vec());
    table
}

/// A timestamp as shown in listings; empty when absent.
pub fn time(value: Option<NaiveDateTime>) -> String {
    value.map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The seconds between start and end, when both are known.
pub fn duration(start: Option<NaiveDateTime>, end: Option<NaiveDateTime>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => {
            let millis = end.signed_duration_since(start).num_milliseconds();
            format!("{:.1}s", millis as f64 / 1000.0)
        }
        _ => String::new(),
    }
}

/// Parameters as `name=value` pairs, non-identifying ones marked.
pub fn parameters_inline(execution: &JobExecution) -> String {
    execution
        .parameters
        .iter()
        .map(|(name, parameter)| {
            let marker = if parameter.identifying {
                ""
            } else {
                " (non-identifying)"
            };
            format!("{name}={}{marker}", parameter.value)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A job execution as JSON; with its steps when given.
pub fn execution_json(execution: &JobExecution, steps: Option<&[StepExecution]>) -> Value {
    let parameters: Vec<Value> = execution
        .parameters
        .iter()
        .map(|(name, parameter)| {
            json!({
                "name": name,
                "type": parameter.value.java_type(),
                "value": parameter.value.to_stored_string(),
                "identifying": parameter.identifying,
            })
        })
        .collect();
    let mut value = json!({
        "id": execution.id,
        "version": execution.version,
        "job_name": execution.job_name(),
        "job_instance_id": execution.instance.id,
        "job_key": execution.instance.job_key,
        "status": execution.status.as_str(),
        "exit_code": execution.exit_status.code,
        "exit_message": execution.exit_status.description,
        "create_time": iso(Some(execution.create_time)),
        "start_time": iso(execution.start_time),
        "end_time": iso(execution.end_time),
        "last_updated": iso(execution.last_updated),
        "parameters": parameters,
    });
    if let Some(steps) = steps {
        value["steps"] = steps.iter().map(step_json).collect();
    }
    value
}

fn step_json(step: &StepExecution) -> Value {
    let c = &step.counters;
    json!({
        "id": step.id,
        "version": step.version,
        "step_name": step.step_name,
        "status": step.status.as_str(),
        "exit_code": step.exit_status.code,
        "exit_message": step.exit_status.description,
        "read_count": c.read,
        "write_count": c.write,
        "filter_count": c.filter,
        "commit_count": c.commit,
        "rollback_count": c.rollback,
        "read_skip_count": c.read_skip,
        "process_skip_count": c.process_skip,
        "write_skip_count": c.write_skip,
        "create_time": iso(Some(step.create_time)),
        "start_time": iso(step.start_time),
        "end_time": iso(step.end_time),
        "last_updated": iso(step.last_updated),
    })
}

fn iso(time: Option<NaiveDateTime>) -> Value {
    time.map_or(Value::Null, |t| {
        Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
    })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Reports a finished job execution.
pub fn print_finished(format: OutputFormat, execution: &JobExecution) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => print_json(&execution_json(execution, None)),
        OutputFormat::Table => {
            println!(
                "{} execution {} (instance {}): {} in {}",
                execution.job_name(),
                execution.id,
                execution.instance.id,
                execution.status,
                duration(execution.start_time, execution.end_time)
            );
            if !execution.exit_status.description.is_empty()
                && execution.exit_status.code != "COMPLETED"
            {
                println!("exit message: {}", execution.exit_status.description);
            }
            Ok(())
        }
    }
}

/// Reports an operator's status change.
pub fn print_status_change(
    format: OutputFormat,
    execution: &JobExecution,
    note: &str,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => print_json(&execution_json(execution, None)),
        OutputFormat::Table => {
            println!(
                "{} execution {}: {}: {note}",
                execution.job_name(),
                execution.id,
                execution.status
            );
            Ok(())
        }
    }
}
