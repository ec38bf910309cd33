//! Progress of chunk steps: a bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use batch_core::step::StepExecution;
use batch_core::step::item::ChunkListener;
use indicatif::{ProgressBar, ProgressStyle};

/// How often progress is logged when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Reports rows written, rows per second and the share of the input read.
pub struct Progress {
    step: String,
    started: Instant,
    bar: Option<ProgressBar>,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// Progress of the step `step`: a bar when stderr is a terminal.
    pub fn new(step: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(step.to_string());
            bar
        });
        Progress {
            step: step.to_string(),
            started: Instant::now(),
            bar,
            last_log: Mutex::new(Instant::now()),
        }
    }

    fn rate(&self, rows: i64) -> f64 {
        rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }
}

impl ChunkListener for Progress {
    fn after_chunk(&self, step: &StepExecution, progress: Option<f64>) {
        let rows = step.counters.write;
        let rate = self.rate(rows);
        if let Some(bar) = &self.bar {
            bar.set_position((progress.unwrap_or(0.0) * 1000.0) as u64);
            bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
            return;
        }
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        if last.elapsed() >= LOG_INTERVAL {
            *last = Instant::now();
            let percent =
                progress.map_or_else(String::new, |p| format!(" ({:.1}% of the file)", p * 100.0));
            tracing::info!(
                "{}: {rows} rows written{percent}, {rate:.0} rows/s",
                self.step
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
