//! The local backend: a container job run as a child process of the launcher.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::runner::{ContainerOutcome, ContainerRunner, RunContext, RunnerError};
use crate::spec::ResolvedSpec;

/// How long output is still read after the process exited by itself, for lines still in the
/// pipe, before processes it left behind holding its output open are killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long output is still read after the process group was killed.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(500);

/// Runs container jobs as local processes: the embedded default outside a cluster.
///
/// The program is the first element of the spec's command followed by its arguments (or of its
/// arguments when the command is empty), started with the launcher's environment plus exactly
/// the spec's; a program named `csv2db` runs the current executable, so that the product's own
/// subcommands work without being on `PATH`. The image, volumes, resources, security profile,
/// service account, labels, TTL and start timeout only matter to a cluster and are ignored.
///
/// Standard output and error are captured through one pipe, merged in the order they were
/// written: every line is logged at info level prefixed with the step name, and the last lines
/// are kept for the outcome. The process runs in its own process group; when the active
/// deadline passes or a stop is requested, the whole group is killed and the process awaited.
/// `backoff_limit` failed runs are retried, after [`retry_delay`](Self::retry_delay) each, all
/// within the one active deadline.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    self_program: String,
    self_executable: Option<PathBuf>,
    tail_lines: usize,
    retry_delay: Duration,
}

impl Default for LocalRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalRunner {
    /// How many lines of output an outcome keeps by default.
    pub const DEFAULT_TAIL_LINES: usize = 50;
    /// The longest line kept, in bytes; the rest of a longer line is dropped.
    pub const MAX_LINE_BYTES: usize = 4096;
    /// The program name that runs the current executable.
    pub const SELF_PROGRAM: &'static str = "csv2db";

    /// A runner keeping the last 50 lines, retrying after 1 s, and running the current
    /// executable for `csv2db`.
    pub fn new() -> Self {
        LocalRunner {
            self_program: Self::SELF_PROGRAM.to_owned(),
            self_executable: None,
            tail_lines: Self::DEFAULT_TAIL_LINES,
            retry_delay: Duration::from_secs(1),
        }
    }

    /// Runs `path` instead of the current executable for commands whose program is `csv2db`.
    pub fn self_executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.self_executable = Some(path.into());
        self
    }

    /// Keeps the last `lines` lines of output instead of 50.
    pub fn tail_lines(mut self, lines: usize) -> Self {
        self.tail_lines = lines;
        self
    }

    /// Waits `delay` before retrying a failed run (when the spec's `backoff_limit` allows one).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    fn executable(&self, program: &str) -> Result<OsString, RunnerError> {
        if program != self.self_program {
            return Ok(program.into());
        }
        match &self.self_executable {
            Some(path) => Ok(path.clone().into_os_string()),
            None => std::env::current_exe()
                .map(PathBuf::into_os_string)
                .map_err(|source| RunnerError::CurrentExe {
                    program: program.to_owned(),
                    source,
                }),
        }
    }

    /// Runs the process once, until it exits, the deadline passes or a stop is requested.
    async fn attempt(
        &self,
        spec: &ResolvedSpec,
        run: &RunContext<'_>,
        invocation: &Invocation<'_>,
        deadline: Option<Instant>,
    ) -> Result<(Ending, Vec<String>), RunnerError> {
        let output_error = |source| RunnerError::Output {
            job: spec.name.clone(),
            source,
        };
        let (pipe_reader, pipe_writer) = std::io::pipe().map_err(output_error)?;
        let stderr_writer = pipe_writer.try_clone().map_err(output_error)?;
        let mut command = Command::new(&invocation.executable);
        command
            .args(&invocation.args)
            .envs(spec.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(pipe_writer)
            .stderr(stderr_writer)
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let spawned = command.spawn();
        // The command holds the pipe's write ends: drop them, or the output never ends.
        drop(command);
        let mut child = spawned.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                RunnerError::ProgramNotFound {
                    program: invocation.program.to_owned(),
                }
            } else {
                RunnerError::Spawn {
                    program: invocation.program.to_owned(),
                    source,
                }
            }
        })?;
        let pid = child.id();
        tracing::debug!(job = %spec.name, step = run.step_name, pid, "process started");

        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(self.tail_lines)));
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let reader = LogReader {
            tail: tail.clone(),
            keep: self.tail_lines,
            step: run.step_name.to_owned(),
        };
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", spec.name))
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || reader.read(pipe_reader));
                let _ = done_tx.send(());
            });
        if let Err(source) = thread {
            kill_and_reap(&mut child, pid).await;
            return Err(output_error(source));
        }

        let ending = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => Ending::Exited(status),
                Err(source) => {
                    kill_and_reap(&mut child, pid).await;
                    return Err(RunnerError::Wait { job: spec.name.clone(), source });
                }
            },
            () = run.stop.requested() => Ending::Stopped,
            () = sleep_until(deadline) => Ending::DeadlineExceeded,
        };
        let killed = !matches!(ending, Ending::Exited(_));
        if killed {
            tracing::info!(
                job = %spec.name,
                step = run.step_name,
                "killing the process group of container job {} ({})",
                spec.name,
                if matches!(ending, Ending::Stopped) { "stop requested" } else { "deadline exceeded" },
            );
            kill_and_reap(&mut child, pid).await;
        }
        let mut done_rx = done_rx;
        let grace = if killed {
            DRAIN_AFTER_KILL
        } else {
            DRAIN_AFTER_EXIT
        };
        if tokio::time::timeout(grace, &mut done_rx).await.is_err() {
            // Processes it started still hold the output open: end them, as the end of a
            // container's main process ends everything in the container.
            tracing::info!(
                job = %spec.name,
                step = run.step_name,
                "processes left behind by container job {} still hold its output open; killing them",
                spec.name
            );
            kill_process_group(pid).await;
            if tokio::time::timeout(DRAIN_AFTER_KILL, done_rx)
                .await
                .is_err()
            {
                tracing::warn!(
                    job = %spec.name,
                    "the output of container job {} is still open; no longer reading it",
                    spec.name
                );
            }
        }
        let lines = tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        Ok((ending, lines))
    }
}

#[async_trait]
impl ContainerRunner for LocalRunner {
    async fn run(
        &self,
        spec: &ResolvedSpec,
        run: &RunContext<'_>,
    ) -> Result<ContainerOutcome, RunnerError> {
        let mut line = spec.command_line();
        let Some(program) = line.next() else {
            return Err(RunnerError::NoCommand {
                job: spec.name.clone(),
                backend: "local",
            });
        };
        let invocation = Invocation {
            program,
            executable: self.executable(program)?,
            args: line.collect(),
        };
        tracing::info!(
            job = %spec.name,
            step = run.step_name,
            "running container job {} as a local process: {}",
            spec.name,
            spec.command_line().collect::<Vec<_>>().join(" "),
        );
        if !spec.volumes.is_empty() {
            tracing::debug!(
                job = %spec.name,
                "volume mounts are not used locally; paths are the machine's own"
            );
        }
        let deadline = spec.active_deadline.map(|limit| Instant::now() + limit);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (ending, tail) = self.attempt(spec, run, &invocation, deadline).await?;
            let outcome = ending.outcome(spec, tail);
            let last = attempts > spec.backoff_limit;
            if outcome.succeeded || !matches!(ending, Ending::Exited(_)) || last {
                return Ok(with_attempts(outcome, attempts));
            }
            tracing::warn!(
                job = %spec.name,
                step = run.step_name,
                "container job {} failed ({}); retrying (attempt {} of {})",
                spec.name,
                outcome.reason,
                attempts + 1,
                spec.backoff_limit + 1,
            );
            tokio::select! {
                () = tokio::time::sleep(self.retry_delay) => {}
                () = run.stop.requested() => {
                    return Ok(with_attempts(ContainerOutcome::stopped(outcome.log_tail), attempts));
                }
                () = sleep_until(deadline) => {
                    let ended = Ending::DeadlineExceeded.outcome(spec, outcome.log_tail);
                    return Ok(with_attempts(ended, attempts));
                }
            }
        }
    }
}

/// The program to start and its arguments.
struct Invocation<'a> {
    /// The program as the spec names it.
    program: &'a str,
    /// What is actually started.
    executable: OsString,
    args: Vec<&'a str>,
}

/// How one run of the process ended.
enum Ending {
    Exited(std::process::ExitStatus),
    Stopped,
    DeadlineExceeded,
}

impl Ending {
    fn outcome(&self, spec: &ResolvedSpec, tail: Vec<String>) -> ContainerOutcome {
        match self {
            Ending::Exited(status) if status.success() => ContainerOutcome::success(tail),
            Ending::Exited(status) => match status.code() {
                Some(code) => {
                    ContainerOutcome::failure(Some(code), format!("exit code {code}"), tail)
                }
                None => ContainerOutcome::failure(None, describe_signal(status), tail),
            },
            Ending::Stopped => ContainerOutcome::stopped(tail),
            Ending::DeadlineExceeded => {
                let limit = spec.active_deadline.unwrap_or_default();
                ContainerOutcome::failure(
                    None,
                    format!(
                        "DeadlineExceeded: ran longer than {}",
                        format_duration(limit)
                    ),
                    tail,
                )
            }
        }
    }
}

fn with_attempts(mut outcome: ContainerOutcome, attempts: u32) -> ContainerOutcome {
    if attempts > 1 && !outcome.succeeded {
        outcome.reason = format!("{} (after {attempts} attempts)", outcome.reason);
    }
    outcome
}

#[cfg(unix)]
fn describe_signal(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => status.to_string(),
    }
}

#[cfg(not(unix))]
fn describe_signal(status: &std::process::ExitStatus) -> String {
    status.to_string()
}

/// `3 s`, or `1500 ms` for a duration that is not whole seconds.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Kills the process's group, then the process itself, and awaits it so that no zombie is left.
async fn kill_and_reap(child: &mut Child, pid: Option<u32>) {
    // The group first, while the unreaped leader still holds its id.
    kill_process_group(pid).await;
    if let Err(error) = child.start_kill() {
        tracing::debug!(%error, "cannot kill the process (it has probably exited)");
    }
    if let Err(error) = child.wait().await {
        tracing::warn!(%error, "cannot await the killed process");
    }
}

/// Sends SIGKILL to the process group `pid` leads, with the `kill` utility (this workspace has
/// no unsafe code, and the standard library only kills single processes). Failing that, only the
/// leader is killed, by the caller.
#[cfg(unix)]
async fn kill_process_group(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let result = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::debug!(pid, %status, "kill of the process group failed"),
        Err(error) => tracing::debug!(pid, %error, "cannot run kill for the process group"),
    }
}

#[cfg(not(unix))]
async fn kill_process_group(_pid: Option<u32>) {}

/// Reads the merged output line by line on its own thread, logging each line and keeping the
/// last ones.
struct LogReader {
    tail: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
    step: String,
}

impl LogReader {
    fn read(&self, pipe: impl Read) {
        let result = for_each_line(BufReader::new(pipe), LocalRunner::MAX_LINE_BYTES, |line| {
            let line = String::from_utf8_lossy(line);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            tracing::info!(target: "csv2db::container", step = %self.step, "[{}] {}", self.step, line);
            if self.keep == 0 {
                return;
            }
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == self.keep {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        });
        if let Err(error) = result {
            tracing::warn!(step = %self.step, %error, "cannot read the container job's output");
        }
    }
}

/// Calls `on_line` with each line of `reader` (without its `\n`), cut to `max_bytes`; a last
/// line without `\n` counts too. Memory stays bounded however long the lines are.
fn for_each_line(
    mut reader: impl BufRead,
    max_bytes: usize,
    mut on_line: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut pending = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            if pending {
                on_line(&line);
            }
            return Ok(());
        }
        let newline = buffer.iter().position(|&b| b == b'\n');
        let chunk = &buffer[..newline.unwrap_or(buffer.len())];
        let room = max_bytes.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        pending = true;
        let used = newline.map_or(buffer.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            on_line(&line);
            line.clear();
            pending = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut seen = Vec::new();
        // A tiny buffer, so that lines span several reads.
        let reader = BufReader::with_capacity(3, input);
        for_each_line(reader, max, |line| {
            seen.push(String::from_utf8_lossy(line).into_owned());
        })
        .expect("reads");
        seen
    }

    #[test]
    fn splits_lines_and_bounds_them() {
        assert_eq!(lines(b"a\nbb\n\nccc", 100), ["a", "bb", "", "ccc"]);
        assert_eq!(lines(b"a\n", 100), ["a"]);
        assert!(lines(b"", 100).is_empty());
        assert_eq!(lines(b"abcdefgh\nxy\n", 4), ["abcd", "xy"]);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_secs(1)), "1 s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500 ms");
    }
}
