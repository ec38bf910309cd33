//! Chunk-oriented steps: read items, process them, write them a chunk at a time.
//!
//! Each chunk commits in ONE transaction of the job repository's database: the writer's rows,
//! the step's counters and the reader's position (saved in the step's execution context). A
//! restart after a failure or a crash therefore resumes after the last committed chunk, and
//! every input item is written exactly once, when the writer writes into that transaction
//! (see [`ChunkTransaction::connection`]).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{BoxError, Step, StepContext, StepCounters, StepError, StepExecution};
use crate::context::ExecutionContext;
use crate::error::RepositoryError;
use crate::status::ExitStatus;
use crate::thread::spawn_background;

/// An item that could not be read or processed, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadItem {
    /// The 1-based line of the input where the item starts, when known.
    pub line: Option<u64>,
    /// Why the item was rejected.
    pub reason: String,
    /// The item's raw input for the rejects file (lossily decoded), when the reader kept it.
    pub raw: String,
}

impl fmt::Display for BadItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for BadItem {}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// This item is bad; the following ones can still be read (a read skip).
    Bad(BadItem),
    /// Reading cannot go on (the file vanished, an I/O error).
    Fatal(BoxError),
}

/// An item with the input line it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Read<T> {
    /// The item.
    pub item: T,
    /// The 1-based line where it starts.
    pub line: u64,
}

/// Reads items one at a time from a restartable position.
#[async_trait]
pub trait ItemReader<T>: Send {
    /// Opens the source at the position a previous execution saved in `context` (or at the
    /// start when it holds none).
    async fn open(&mut self, context: &ExecutionContext) -> Result<(), BoxError>;

    /// The next item, `None` at the end of the input.
    async fn read(&mut self) -> Result<Option<Read<T>>, ReadError>;

    /// What [`ItemReader::read`] would return, when the reader holds it already and needs no
    /// waiting; `None` otherwise. The chunk loop takes items from here first, which spares it
    /// the boxed future of each `read`.
    fn read_ready(&mut self) -> Option<Result<Option<Read<T>>, ReadError>> {
        None
    }

    /// Saves the position after the last item returned by [`ItemReader::read`] into `context`.
    fn update(&self, context: &mut ExecutionContext);

    /// The input of the item last returned (for a file, the record as it stands there), for
    /// the rejects file when the processor rejects that item; `None` where the reader cannot
    /// tell.
    fn last_raw(&self) -> Option<String> {
        None
    }

    /// How far through the input the reader is, from 0 to 1, when known.
    fn progress(&self) -> Option<f64> {
        None
    }
}

/// Turns an item into the item to write, or filters it out with `Ok(None)`.
pub trait ItemProcessor<I, O>: Send + Sync {
    /// Processes one item; `Err` rejects it (a process skip), with the reason.
    fn process(&self, item: I) -> Result<Option<O>, String>;
}

/// Writes a chunk of items inside the chunk's transaction.
#[async_trait]
pub trait ItemWriter<O>: Send {
    /// Prepares the target (for example creates the table) before the first chunk.
    async fn open(&mut self) -> Result<(), BoxError>;

    /// Writes `items` in `transaction`, which commits with the step's counters and position.
    async fn write(
        &mut self,
        items: &[O],
        transaction: &mut dyn ChunkTransaction,
    ) -> Result<(), BoxError>;
}

/// A transaction of the job repository's database in which one chunk is written and committed.
#[async_trait]
pub trait ChunkTransaction: Send {
    /// The connection the transaction runs on, for writers that write into it: with the SQL
    /// repositories a `sqlx::PgConnection` or a `sqlx::SqliteConnection`.
    fn connection(&mut self) -> &mut (dyn Any + Send);

    /// Saves the step execution (counters, context; VERSION + 1) in this transaction, then
    /// commits everything.
    async fn commit(self: Box<Self>, step: &mut StepExecution) -> Result<(), RepositoryError>;

    /// Rolls everything back. Dropping the transaction rolls it back too, but may close its
    /// connection to do so.
    async fn rollback(self: Box<Self>) -> Result<(), RepositoryError>;
}

/// Where rejected items go.
pub trait RejectSink: Send {
    /// Records a rejected item.
    fn reject(&mut self, item: &BadItem) -> Result<(), BoxError>;
    /// Makes the rejects recorded so far durable and saves their extent in `context`, just
    /// before the chunk commits.
    fn flush(&mut self, context: &mut ExecutionContext) -> Result<(), BoxError>;
}

/// Reports progress after each committed chunk.
pub trait ChunkListener: Send + Sync {
    /// Called after a chunk committed, with the step's counters and the reader's progress.
    fn after_chunk(&self, step: &StepExecution, progress: Option<f64>);
}

/// The parts of a chunk step, built for each step execution from its job parameters.
pub struct ChunkComponents<I, O> {
    /// The item reader.
    pub reader: Box<dyn ItemReader<I>>,
    /// The item processor.
    pub processor: Box<dyn ItemProcessor<I, O>>,
    /// The item writer.
    pub writer: Box<dyn ItemWriter<O>>,
    /// Where rejected items are recorded, when skipping is allowed.
    pub rejects: Option<Box<dyn RejectSink>>,
    /// Items read per chunk (the commit interval).
    pub chunk_size: usize,
    /// How many bad items may be skipped before the step fails (0: the first one fails it).
    pub skip_limit: u64,
    /// Progress reporting.
    pub listener: Option<Arc<dyn ChunkListener>>,
    /// A check that must pass before anything commits, such as comparing the input with its
    /// checksum: the first commit awaits it. To run while the first chunk is read and written,
    /// the work must already be under way (a spawned task the future awaits), since a future
    /// does nothing until it is first awaited. When it fails, the step fails with its error,
    /// which also takes precedence over errors met meanwhile.
    pub precondition: Option<Precondition>,
}

/// See [`ChunkComponents::precondition`].
pub type Precondition = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Builds a chunk step's parts when the step runs.
#[async_trait]
pub trait ChunkFactory<I, O>: Send + Sync {
    /// The parts for this step execution.
    async fn create(&self, ctx: &StepContext<'_>) -> Result<ChunkComponents<I, O>, BoxError>;
}

/// A step that reads, processes and writes items in chunks, each committed atomically with the
/// step's progress.
pub struct ChunkStep<I, O> {
    name: String,
    factory: Arc<dyn ChunkFactory<I, O>>,
}

impl<I, O> ChunkStep<I, O> {
    /// A chunk step called `name` whose parts `factory` builds.
    pub fn new(name: impl Into<String>, factory: impl ChunkFactory<I, O> + 'static) -> Self {
        ChunkStep {
            name: name.into(),
            factory: Arc::new(factory),
        }
    }
}

/// The step failed because too many items were bad.
#[derive(Debug, thiserror::Error)]
#[error("{item} (skip limit {limit} exceeded)")]
pub struct SkipLimitExceeded {
    /// The item that went over the limit.
    pub item: BadItem,
    /// The limit.
    pub limit: u64,
}

/// One chunk's items and the counter changes it brings.
struct Chunk<O> {
    items: Vec<O>,
    counters: StepCounters,
    end_of_input: bool,
}

#[async_trait]
impl<I: Send + 'static, O: Send + Sync + 'static> Step for ChunkStep<I, O> {
    fn name(&self) -> &str {
        &self.name
    }

    fn step_type(&self) -> &str {
        "csv2db.ChunkStep"
    }

    /// Reads chunk k+1 on a background thread ([`crate::thread::spawn_background`]) while chunk
    /// k is written and committed, so parsing and processing run in parallel with the
    /// database's work without delaying the round trips of the chunk in flight. With each chunk
    /// the reading thread hands over the reader position (and rejects extent) after it, which
    /// the chunk's commit records, so each commit records exactly its own chunk. The thread
    /// ends at the end of the input, or at its next item once the step has stopped waiting;
    /// the step ends after it.
    async fn execute(&self, ctx: &mut StepContext<'_>) -> Result<ExitStatus, StepError> {
        let parts = self.factory.create(ctx).await?;
        let counters = ctx.step_execution().counters;
        let mut source = Source {
            reader: parts.reader,
            processor: parts.processor,
            rejects: parts.rejects,
            skip_limit: parts.skip_limit,
            skipped: (counters.read_skip + counters.process_skip).max(0) as u64,
            chunk_size: parts.chunk_size.max(1),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let mut writer = parts.writer;
        source.reader.open(&ctx.step_execution().context).await?;
        writer.open().await?;
        let stopped = Arc::clone(&source.stopped);
        let (chunks, next_chunk) = tokio::sync::mpsc::channel(1);
        let (ended, reading_ended) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Handle::current();
        spawn_background(format!("read-{}", self.name), move || {
            let _ended = ended;
            runtime.block_on(source.produce(chunks));
        })
        .map_err(|error| {
            StepError::Failed(format!("cannot start the chunk reading thread: {error}").into())
        })?;
        let mut precondition = parts.precondition;
        let outcome = write_chunks(
            ctx,
            writer.as_mut(),
            next_chunk,
            parts.listener,
            &mut precondition,
        )
        .await;
        // The reading thread stops at its next item without saving what it read; the step ends
        // only once the thread has, so that nothing reaches the rejects file after it.
        stopped.store(true, Ordering::Relaxed);
        let _ = reading_ended.await;
        // Not awaited when the step ended before its first commit.
        if let Some(check) = precondition {
            check.await.map_err(StepError::Failed)?;
        }
        outcome
    }
}

/// Writes and commits the chunks the reading thread hands over, until the end of the input.
async fn write_chunks<O: Send + Sync>(
    ctx: &mut StepContext<'_>,
    writer: &mut dyn ItemWriter<O>,
    mut next_chunk: tokio::sync::mpsc::Receiver<ReadAhead<O>>,
    listener: Option<Arc<dyn ChunkListener>>,
    precondition: &mut Option<Precondition>,
) -> Result<ExitStatus, StepError> {
    loop {
        let Some(read) = next_chunk.recv().await else {
            return Err(StepError::Failed(
                "the chunk reader stopped unexpectedly".into(),
            ));
        };
        let (chunk, position, progress) = read?;
        if ctx.is_stop_requested() {
            return Err(StepError::Interrupted);
        }
        if chunk.items.is_empty() && chunk.counters == StepCounters::default() {
            return Ok(ExitStatus::completed());
        }
        let mut context = ctx.step_execution().context.clone();
        context.merge(&position);
        let end_of_input = chunk.end_of_input;
        write_and_commit(ctx, writer, chunk, context, precondition).await?;
        if let Some(listener) = &listener {
            listener.after_chunk(ctx.step_execution(), progress);
        }
        if end_of_input {
            return Ok(ExitStatus::completed());
        }
    }
}

/// A chunk read ahead: its items, the reader position after it, and the reader's progress.
type ReadAhead<O> = Result<(Chunk<O>, ExecutionContext, Option<f64>), StepError>;

/// Writes one chunk in a chunk transaction and commits it with the step's progress: its
/// counters and `context`, which holds the reader's position after the chunk. The first commit
/// waits for the step's precondition. When the write or the commit fails, the step execution
/// keeps its last committed counters and context, so that the engine's final update cannot
/// record progress that was rolled back.
async fn write_and_commit<O: Send + Sync>(
    ctx: &mut StepContext<'_>,
    writer: &mut dyn ItemWriter<O>,
    chunk: Chunk<O>,
    context: ExecutionContext,
    precondition: &mut Option<Precondition>,
) -> Result<(), StepError> {
    let mut transaction = ctx.repository().begin_chunk().await?;
    let mut written = writer.write(&chunk.items, transaction.as_mut()).await;
    if written.is_ok()
        && let Some(check) = precondition.take()
    {
        written = check.await;
    }
    if let Err(error) = written {
        if let Err(rollback_error) = transaction.rollback().await {
            tracing::debug!(%rollback_error, "rolling back the failed chunk failed");
        }
        ctx.step_execution_mut().counters.rollback += 1;
        return Err(StepError::Failed(error));
    }
    let step = ctx.step_execution_mut();
    let committed_counters = step.counters;
    let committed_context = std::mem::replace(&mut step.context, context);
    add(&mut step.counters, &chunk.counters);
    step.counters.write += chunk.items.len() as i64;
    step.counters.commit += 1;
    step.last_updated = Some(crate::time::now());
    if let Err(error) = transaction.commit(step).await {
        step.counters = committed_counters;
        step.counters.rollback += 1;
        step.context = committed_context;
        return Err(error.into());
    }
    Ok(())
}

/// The reading half of a chunk step: reader, processor, rejects and the skip budget.
struct Source<I, O> {
    reader: Box<dyn ItemReader<I>>,
    processor: Box<dyn ItemProcessor<I, O>>,
    rejects: Option<Box<dyn RejectSink>>,
    skip_limit: u64,
    skipped: u64,
    chunk_size: usize,
    /// Set when the step stops waiting for chunks.
    stopped: Arc<AtomicBool>,
}

impl<I: Send + 'static, O: Send + 'static> Source<I, O> {
    /// Reads and processes up to `chunk_size` items.
    async fn read_chunk(&mut self) -> Result<Chunk<O>, StepError> {
        let mut chunk = Chunk {
            items: Vec::with_capacity(self.chunk_size),
            counters: StepCounters::default(),
            end_of_input: false,
        };
        for _ in 0..self.chunk_size {
            if self.stopped.load(Ordering::Relaxed) {
                break;
            }
            let read = match self.reader.read_ready() {
                Some(ready) => ready,
                None => self.reader.read().await,
            };
            let read = match read {
                Ok(Some(read)) => read,
                Ok(None) => {
                    chunk.end_of_input = true;
                    break;
                }
                Err(ReadError::Fatal(error)) => return Err(StepError::Failed(error)),
                Err(ReadError::Bad(item)) => {
                    self.skip(item)?;
                    chunk.counters.read_skip += 1;
                    continue;
                }
            };
            chunk.counters.read += 1;
            match self.processor.process(read.item) {
                Ok(Some(item)) => chunk.items.push(item),
                Ok(None) => chunk.counters.filter += 1,
                Err(reason) => {
                    self.skip(BadItem {
                        line: Some(read.line),
                        reason,
                        raw: self.reader.last_raw().unwrap_or_default(),
                    })?;
                    chunk.counters.process_skip += 1;
                }
            }
        }
        Ok(chunk)
    }

    /// Counts a bad item against the skip limit and records it, or fails the step.
    fn skip(&mut self, item: BadItem) -> Result<(), StepError> {
        if self.skipped >= self.skip_limit {
            return Err(StepError::Failed(Box::new(SkipLimitExceeded {
                item,
                limit: self.skip_limit,
            })));
        }
        self.skipped += 1;
        tracing::warn!(%item, "skipping a bad item");
        if let Some(rejects) = self.rejects.as_mut() {
            rejects.reject(&item)?;
        }
        Ok(())
    }

    /// Saves the position after the last chunk read, and makes its rejects durable.
    fn save_position(&mut self, context: &mut ExecutionContext) -> Result<(), StepError> {
        if let Some(rejects) = self.rejects.as_mut() {
            rejects.flush(context)?;
        }
        self.reader.update(context);
        Ok(())
    }

    /// Reads chunks until the end of the input or an error, handing each over with the
    /// position after it; stops when the receiving step goes away.
    async fn produce(mut self, chunks: tokio::sync::mpsc::Sender<ReadAhead<O>>) {
        loop {
            let read = self.read_chunk().await;
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            let read = read.and_then(|chunk| {
                let mut position = ExecutionContext::new();
                self.save_position(&mut position)?;
                Ok((chunk, position, self.reader.progress()))
            });
            let last = match &read {
                Ok((chunk, _, _)) => chunk.end_of_input,
                Err(_) => true,
            };
            if chunks.send(read).await.is_err() || last {
                return;
            }
        }
    }
}

fn add(total: &mut StepCounters, chunk: &StepCounters) {
    total.read += chunk.read;
    total.filter += chunk.filter;
    total.read_skip += chunk.read_skip;
    total.process_skip += chunk.process_skip;
    total.write_skip += chunk.write_skip;
}
