//! [`CsvItemReader`]: a streaming, restartable CSV item reader (Spring Batch's
//! `FlatFileItemReader`).
//!
//! A dedicated background thread (at a lower CPU priority, see
//! [`batch_core::thread::spawn_background`]) parses the file with the `csv` crate, maps each
//! record to an item and sends the items in batches over a bounded channel, so parsing overlaps
//! the writing of the previous chunk and memory stays independent of the file's size. The reader
//! saves the byte offset and line after the last item it returned in the step's execution
//! context; a restart seeks straight there instead of reading the file again from its start.

use std::fs::File;
use std::io::{self, Read as _, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use batch_core::context::ExecutionContext;
use batch_core::step::BoxError;
use batch_core::step::item::{BadItem, ItemReader, Read, ReadError};
use batch_core::thread::spawn_background;
use tokio::sync::mpsc;

use ::csv::ByteRecord;
pub use ::csv::StringRecord;

/// Items parsed ahead of [`ItemReader::read`] by default.
const DEFAULT_BUFFER_ITEMS: usize = 4 * 4096;
/// Batches the channel between the parser thread and the reader holds.
const CHANNEL_BATCHES: usize = 4;
/// Bytes the parser reads from the file at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The longest record accepted by default (an unbalanced quote would otherwise make the rest of
/// the file one record, held in memory).
const DEFAULT_MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;
/// The most bytes of an unbalanced-quote record kept for the rejects file.
const RAW_LIMIT: usize = 4096;

/// Maps one CSV record to an item, or returns why the record is bad.
type Mapper<T> = Arc<dyn Fn(&StringRecord) -> Result<T, String> + Send + Sync>;

/// Why the CSV reader could not open or read its input.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The input file cannot be opened.
    #[error("cannot open input file {}: {error}", .path.display())]
    Open {
        /// The input file.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// The input file has no records (it is 0 bytes long or holds only blank lines).
    #[error("input file {} is empty", .path.display())]
    Empty {
        /// The input file.
        path: PathBuf,
    },
    /// The input file is shorter than the position saved by a previous execution.
    #[error(
        "input file {} has {length} bytes, fewer than the saved position {offset}: it changed since the last run",
        .path.display()
    )]
    Shorter {
        /// The input file.
        path: PathBuf,
        /// Its length now.
        length: u64,
        /// The saved byte offset.
        offset: u64,
    },
    /// A saved position in the execution context is not a non-negative integer.
    #[error("invalid saved CSV position in the execution context: {key} = {value}")]
    BadPosition {
        /// The context key.
        key: String,
        /// The value found.
        value: String,
    },
    /// Reading the input file failed.
    #[error("cannot read input file {} after line {line}: {error}", .path.display())]
    Read {
        /// The input file.
        path: PathBuf,
        /// The line reached.
        line: u64,
        /// The operating system's error.
        error: io::Error,
    },
    /// A record is longer than the reader's limit, usually because a quote is not closed.
    #[error(
        "input file {}: the record starting on line {line} is longer than {limit} bytes{}",
        .path.display(),
        quote_hint(*.quote_line)
    )]
    RecordTooLong {
        /// The input file.
        path: PathBuf,
        /// The 1-based line where the record starts.
        line: u64,
        /// The limit in bytes.
        limit: u64,
        /// The line of a quote still open at the limit, if any.
        quote_line: Option<u64>,
    },
    /// [`ItemReader::read`] was called before [`ItemReader::open`].
    #[error("the CSV reader of {} was read before it was opened", .path.display())]
    NotOpen {
        /// The input file.
        path: PathBuf,
    },
    /// The parser thread ended without reporting the end of the input (its mapper panicked).
    #[error("the CSV parser thread of {} stopped unexpectedly", .path.display())]
    ParserStopped {
        /// The input file.
        path: PathBuf,
    },
    /// The parser thread could not be started.
    #[error("cannot start the CSV parser thread: {0}")]
    Spawn(io::Error),
}

fn quote_hint(quote_line: Option<u64>) -> String {
    match quote_line {
        Some(line) => format!(" (unbalanced quote starting on line {line}?)"),
        None => String::new(),
    }
}

/// Reads items from a CSV file, one record per item, restartably.
///
/// The options are set with builder methods before the step opens the reader:
///
/// ```no_run
/// use batch_io::csv::CsvItemReader;
///
/// let reader = CsvItemReader::new("people.csv", |record| {
///     let field = |i: usize| {
///         record
///             .get(i)
///             .map(str::to_owned)
///             .ok_or_else(|| format!("missing field {}", i + 1))
///     };
///     Ok((field(0)?, field(1)?))
/// })
/// .fields(2)
/// .name("people");
/// # let _: CsvItemReader<(String, String)> = reader;
/// ```
///
/// Records of the wrong field count, with invalid UTF-8 or that the mapper refuses are returned
/// as [`ReadError::Bad`] (read skips) with their line; reading goes on with the next record.
/// [`ItemReader::update`] saves `<name>.position.byte`, `<name>.position.line` and
/// `<name>.read.count` (records returned so far, bad ones included, as Spring Batch counts them).
pub struct CsvItemReader<T> {
    path: PathBuf,
    mapper: Mapper<T>,
    has_headers: bool,
    fields: Option<usize>,
    name: String,
    buffer_items: usize,
    delimiter: u8,
    quote: u8,
    max_record_bytes: u64,
    length: Option<u64>,
    position: Position,
    /// The bytes of the file the last record returned as an item spans.
    last_record: Option<Range<u64>>,
    running: Option<Running<T>>,
}

/// Where the reader stands: after the last record it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The byte offset after the record.
    byte: u64,
    /// The parser's line counter at that offset (1-based).
    line: u64,
    /// Records returned since the start of the file.
    count: u64,
}

/// The state of an opened reader.
struct Running<T> {
    receiver: mpsc::Receiver<Message<T>>,
    batch: std::vec::IntoIter<Entry<T>>,
    stop: Arc<AtomicBool>,
    finished: bool,
    failed: Option<String>,
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        // The receiver closes right after this, which also ends a blocked `blocking_send`.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the parser thread sends.
enum Message<T> {
    Batch(Vec<Entry<T>>),
    End { byte: u64, line: u64 },
    Fatal(CsvError),
}

/// One parsed record.
struct Entry<T> {
    outcome: Result<T, BadItem>,
    line: u64,
    /// Where the parser started on the record (blank lines before it included).
    start_byte: u64,
    end_byte: u64,
    end_line: u64,
}

impl<T: Send + 'static> CsvItemReader<T> {
    /// A reader of the CSV file at `path` that turns each record, once its fields are known to
    /// be valid UTF-8, into an item with `mapper` (which returns the reason as `Err` for a bad
    /// record).
    pub fn new<M>(path: impl Into<PathBuf>, mapper: M) -> Self
    where
        M: Fn(&StringRecord) -> Result<T, String> + Send + Sync + 'static,
    {
        CsvItemReader {
            path: path.into(),
            mapper: Arc::new(mapper),
            has_headers: false,
            fields: None,
            name: "csv".to_string(),
            buffer_items: DEFAULT_BUFFER_ITEMS,
            delimiter: b',',
            quote: b'"',
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            length: None,
            position: Position {
                byte: 0,
                line: 1,
                count: 0,
            },
            last_record: None,
            running: None,
        }
    }

    /// Whether the first line is a header to skip (default `false`).
    pub fn has_headers(mut self, has_headers: bool) -> Self {
        self.has_headers = has_headers;
        self
    }

    /// The number of fields every record must have; a record with another count is a bad item.
    pub fn fields(mut self, fields: usize) -> Self {
        self.fields = Some(fields);
        self
    }

    /// The prefix of the reader's execution context keys (default `csv`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// About how many items the parser thread may read ahead (default 16384).
    pub fn buffer_items(mut self, items: usize) -> Self {
        self.buffer_items = items;
        self
    }

    /// The field delimiter (default `,`).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// The quote character (default `"`).
    pub fn quote(mut self, quote: u8) -> Self {
        self.quote = quote;
        self
    }

    /// The longest record accepted, in bytes (default 64 MiB); a longer one fails the read,
    /// since it usually means a quote was never closed.
    pub fn max_record_bytes(mut self, bytes: u64) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// The input file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name)
    }

    fn open_error(&self, error: io::Error) -> CsvError {
        CsvError::Open {
            path: self.path.clone(),
            error,
        }
    }

    /// The position saved in `context`, and how many records to skip from the start when only a
    /// count was saved (as Spring Batch's readers do).
    fn saved_position(&self, context: &ExecutionContext) -> Result<(Position, u64), CsvError> {
        let get = |suffix: &str| -> Result<Option<u64>, CsvError> {
            let key = self.key(suffix);
            match context.get(&key) {
                None => Ok(None),
                Some(value) => context
                    .get_i64(&key)
                    .and_then(|number| u64::try_from(number).ok())
                    .map(Some)
                    .ok_or_else(|| CsvError::BadPosition {
                        key,
                        value: value.to_string(),
                    }),
            }
        };
        let count = get("read.count")?.unwrap_or(0);
        match get("position.byte")? {
            Some(byte) if byte > 0 => {
                let line_key = self.key("position.line");
                let line = get("position.line")?.filter(|line| *line > 0).ok_or(
                    CsvError::BadPosition {
                        key: line_key,
                        value: "(missing)".to_string(),
                    },
                )?;
                Ok((Position { byte, line, count }, 0))
            }
            _ => Ok((
                Position {
                    byte: 0,
                    line: 1,
                    count,
                },
                count,
            )),
        }
    }

    /// Returns a parsed record's item (or why it is bad), moving the position after it.
    fn returned(&mut self, entry: Entry<T>) -> Result<Option<Read<T>>, ReadError> {
        self.position = Position {
            byte: entry.end_byte,
            line: entry.end_line,
            count: self.position.count + 1,
        };
        match entry.outcome {
            Ok(item) => {
                self.last_record = Some(entry.start_byte..entry.end_byte);
                Ok(Some(Read {
                    item,
                    line: entry.line,
                }))
            }
            Err(bad) => Err(ReadError::Bad(bad)),
        }
    }

    /// Fails when the file has no byte other than line terminators.
    fn check_not_empty(&self, file: &mut File, length: u64) -> Result<(), CsvError> {
        let empty = || CsvError::Empty {
            path: self.path.clone(),
        };
        if length == 0 {
            return Err(empty());
        }
        let mut buffer = vec![0; READ_CHUNK];
        loop {
            let read = match file.read(&mut buffer) {
                Ok(0) => return Err(empty()),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.open_error(error)),
            };
            let data = buffer.get(..read).unwrap_or_default();
            if data.iter().any(|byte| *byte != b'\n' && *byte != b'\r') {
                break;
            }
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|error| self.open_error(error))?;
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static> ItemReader<T> for CsvItemReader<T> {
    async fn open(&mut self, context: &ExecutionContext) -> Result<(), BoxError> {
        self.running = None;
        let (start, skip) = self.saved_position(context)?;
        let mut file = File::open(&self.path).map_err(|error| self.open_error(error))?;
        let length = file
            .metadata()
            .map_err(|error| self.open_error(error))?
            .len();
        if start.byte == 0 {
            self.check_not_empty(&mut file, length)?;
        } else if start.byte > length {
            return Err(CsvError::Shorter {
                path: self.path.clone(),
                length,
                offset: start.byte,
            }
            .into());
        } else {
            file.seek(SeekFrom::Start(start.byte))
                .map_err(|error| self.open_error(error))?;
        }
        let tap = Tap {
            file,
            offset: start.byte,
            last: Vec::with_capacity(READ_CHUNK),
            last_start: start.byte,
            record_start: start.byte,
            max_record: self.max_record_bytes,
            too_long: false,
        };
        let reader = ::csv::ReaderBuilder::new()
            .has_headers(self.has_headers && start.byte == 0)
            .flexible(true)
            .delimiter(self.delimiter)
            .quote(self.quote)
            .buffer_capacity(READ_CHUNK)
            .from_reader(tap);
        let batch_size = self.buffer_items.div_ceil(CHANNEL_BATCHES).max(1);
        let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let parser = Parser {
            reader,
            mapper: Arc::clone(&self.mapper),
            sender,
            stop: Arc::clone(&stop),
            path: self.path.clone(),
            base_byte: start.byte,
            base_line: start.line,
            fields: self.fields,
            delimiter: self.delimiter,
            quote: self.quote,
            max_record: self.max_record_bytes,
            batch_size,
            skip,
        };
        spawn_background(thread_name(&self.name), move || parser.run()).map_err(CsvError::Spawn)?;
        tracing::debug!(
            path = %self.path.display(),
            byte = start.byte,
            line = start.line,
            skip,
            "opened CSV input"
        );
        self.length = Some(length);
        self.position = start;
        self.running = Some(Running {
            receiver,
            batch: Vec::new().into_iter(),
            stop,
            finished: false,
            failed: None,
        });
        Ok(())
    }

    async fn read(&mut self) -> Result<Option<Read<T>>, ReadError> {
        let Some(running) = self.running.as_mut() else {
            return Err(ReadError::Fatal(Box::new(CsvError::NotOpen {
                path: self.path.clone(),
            })));
        };
        loop {
            if let Some(entry) = running.batch.next() {
                return self.returned(entry);
            }
            if let Some(message) = &running.failed {
                return Err(ReadError::Fatal(message.clone().into()));
            }
            if running.finished {
                return Ok(None);
            }
            match running.receiver.recv().await {
                Some(Message::Batch(entries)) => running.batch = entries.into_iter(),
                Some(Message::End { byte, line }) => {
                    running.finished = true;
                    self.position.byte = byte;
                    self.position.line = line;
                }
                Some(Message::Fatal(error)) => {
                    running.failed = Some(error.to_string());
                    return Err(ReadError::Fatal(Box::new(error)));
                }
                None => {
                    let error = CsvError::ParserStopped {
                        path: self.path.clone(),
                    };
                    running.failed = Some(error.to_string());
                    return Err(ReadError::Fatal(Box::new(error)));
                }
            }
        }
    }

    fn read_ready(&mut self) -> Option<Result<Option<Read<T>>, ReadError>> {
        let entry = self.running.as_mut()?.batch.next()?;
        Some(self.returned(entry))
    }

    fn update(&self, context: &mut ExecutionContext) {
        context.put(self.key("position.byte"), self.position.byte);
        context.put(self.key("position.line"), self.position.line);
        context.put(self.key("read.count"), self.position.count);
    }

    /// Reads the record back from the file: rejected items are rare, so the reader keeps only
    /// where the last one lies.
    fn last_raw(&self) -> Option<String> {
        let span = self.last_record.clone()?;
        read_record(&self.path, span)
            .inspect_err(|error| {
                let path = self.path.display();
                tracing::debug!(%path, %error, "cannot read a rejected record back");
            })
            .ok()
    }

    fn progress(&self) -> Option<f64> {
        let length = self.length?;
        if length == 0 {
            return Some(1.0);
        }
        Some((self.position.byte as f64 / length as f64).min(1.0))
    }
}

/// The parser thread's name (Linux keeps 15 bytes of it).
fn thread_name(name: &str) -> String {
    let mut thread = String::from("csv-");
    for character in name.chars() {
        if thread.len() + character.len_utf8() > 15 {
            break;
        }
        thread.push(character);
    }
    thread
}

/// The file under the CSV parser: remembers the last chunk it read, so the parser can look at
/// the byte that ended a record, and refuses to feed a record longer than the limit.
struct Tap {
    file: File,
    /// The offset of the next byte to read.
    offset: u64,
    /// A copy of the last non-empty chunk read, starting at `last_start`.
    last: Vec<u8>,
    last_start: u64,
    /// Where the record being parsed starts.
    record_start: u64,
    max_record: u64,
    too_long: bool,
}

impl Tap {
    fn byte_at(&self, offset: u64) -> Option<u8> {
        let index = offset.checked_sub(self.last_start)?;
        self.last.get(usize::try_from(index).ok()?).copied()
    }
}

impl io::Read for Tap {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.offset.saturating_sub(self.record_start) > self.max_record {
            self.too_long = true;
            return Err(io::Error::other("record too long"));
        }
        let read = self.file.read(buffer)?;
        if let Some(data) = buffer.get(..read).filter(|data| !data.is_empty()) {
            self.last.clear();
            self.last.extend_from_slice(data);
            self.last_start = self.offset;
            self.offset += read as u64;
        }
        Ok(read)
    }
}

/// An absolute position in the file.
#[derive(Debug, Clone, Copy)]
struct At {
    byte: u64,
    line: u64,
}

/// Where a parsed record lies.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Where the parser started on it (before any blank lines preceding it).
    start: At,
    /// Just after it.
    end: At,
    /// Whether the last byte consumed was a `\n`.
    ends_with_newline: bool,
}

/// The parser thread's state.
struct Parser<T> {
    reader: ::csv::Reader<Tap>,
    mapper: Mapper<T>,
    sender: mpsc::Sender<Message<T>>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    /// The absolute position where this `csv::Reader` started.
    base_byte: u64,
    base_line: u64,
    fields: Option<usize>,
    delimiter: u8,
    quote: u8,
    max_record: u64,
    batch_size: usize,
    /// Records still to skip (a restart from a saved count only).
    skip: u64,
}

impl<T: Send + 'static> Parser<T> {
    fn absolute(&self, position: &::csv::Position) -> At {
        At {
            byte: self.base_byte + position.byte(),
            line: self.base_line + position.line().saturating_sub(1),
        }
    }

    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.batch_size);
        // The record before `next` is held back until the next read tells whether it is the
        // last one (only the last record can hold an unbalanced quote).
        let mut current = ByteRecord::new();
        let mut next = ByteRecord::new();
        let mut pending: Option<Span> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let before = self.absolute(self.reader.position());
            self.reader.get_mut().record_start = before.byte;
            match self.reader.read_byte_record(&mut next) {
                Ok(true) => {
                    let start = next
                        .position()
                        .map_or(before, |position| self.absolute(position));
                    let end = self.absolute(self.reader.position());
                    let last_byte = end
                        .byte
                        .checked_sub(1)
                        .and_then(|offset| self.reader.get_ref().byte_at(offset));
                    let span = Span {
                        start,
                        end,
                        ends_with_newline: last_byte == Some(b'\n'),
                    };
                    if let Some(previous) = pending.replace(span) {
                        let (entry, record) = self.entry(current, previous, false);
                        current = record;
                        if !self.push(&mut batch, entry) {
                            return;
                        }
                    }
                    std::mem::swap(&mut current, &mut next);
                }
                Ok(false) => {
                    if let Some(previous) = pending.take() {
                        let (entry, _) = self.entry(current, previous, true);
                        if !self.push(&mut batch, entry) {
                            return;
                        }
                    }
                    let end = self.absolute(self.reader.position());
                    if self.send_batch(&mut batch) {
                        let _ = self.sender.blocking_send(Message::End {
                            byte: end.byte,
                            line: end.line,
                        });
                    }
                    return;
                }
                Err(error) => {
                    if let Some(previous) = pending.take() {
                        let (entry, _) = self.entry(current, previous, false);
                        if !self.push(&mut batch, entry) {
                            return;
                        }
                    }
                    let error = self.read_error(error, before);
                    if self.send_batch(&mut batch) {
                        let _ = self.sender.blocking_send(Message::Fatal(error));
                    }
                    return;
                }
            }
        }
    }

    /// Adds `entry` to the batch, sending the batch when full; false when the reader is gone.
    fn push(&mut self, batch: &mut Vec<Entry<T>>, entry: Entry<T>) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return true;
        }
        batch.push(entry);
        batch.len() < self.batch_size || self.send_batch(batch)
    }

    /// Sends the batch if it holds anything; false when the reader is gone.
    fn send_batch(&self, batch: &mut Vec<Entry<T>>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let full = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
        self.sender.blocking_send(Message::Batch(full)).is_ok()
    }

    /// Checks and maps one record; hands the record back for reuse.
    fn entry(&mut self, record: ByteRecord, span: Span, last: bool) -> (Entry<T>, ByteRecord) {
        let open_quote = if last {
            self.scan(span.start, None).open_quote
        } else {
            None
        };
        let newlines = record
            .as_slice()
            .iter()
            .filter(|byte| **byte == b'\n')
            .count() as u64;
        // A '\n' that ended the record was counted by the parser but is not part of the record.
        let terminator = u64::from(span.ends_with_newline && open_quote.is_none());
        let line = span.end.line.saturating_sub(newlines + terminator).max(1);
        let bad = |reason: String| BadItem {
            line: Some(line),
            reason,
            raw: self.read_back(&span),
        };
        let (outcome, record) = if let Some(quote_line) = open_quote {
            let reason = format!("unbalanced quote starting on line {quote_line}");
            (Err(bad(reason)), record)
        } else if let Some(expected) = self.fields.filter(|fields| *fields != record.len()) {
            let reason = format!(
                "expected {expected} {}, found {}",
                plural(expected, "field"),
                record.len()
            );
            (Err(bad(reason)), record)
        } else {
            match StringRecord::from_byte_record(record) {
                Ok(fields) => {
                    let outcome = (self.mapper)(&fields).map_err(bad);
                    (outcome, fields.into_byte_record())
                }
                Err(error) => {
                    let reason =
                        format!("invalid UTF-8 in field {}", error.utf8_error().field() + 1);
                    (Err(bad(reason)), error.into_byte_record())
                }
            }
        };
        let entry = Entry {
            outcome,
            line,
            start_byte: span.start.byte,
            end_byte: span.end.byte,
            end_line: span.end.line,
        };
        (entry, record)
    }

    /// A bad record as the file holds it, for the rejects file (empty when it cannot be read
    /// back).
    fn read_back(&self, span: &Span) -> String {
        read_record(&self.path, span.start.byte..span.end.byte).unwrap_or_else(|error| {
            let path = self.path.display();
            tracing::debug!(%path, %error, "cannot read a bad record back");
            String::new()
        })
    }

    /// Re-reads the file from `start` (at most `limit` bytes) to find where the record starts
    /// and whether a quote is still open at the end.
    fn scan(&mut self, start: At, limit: Option<u64>) -> Scan {
        let mut scanner = QuoteScanner::new(self.delimiter, self.quote, start.line);
        let skip_bom = start.byte == self.base_byte;
        let file = &mut self.reader.get_mut().file;
        if file.seek(SeekFrom::Start(start.byte)).is_err() {
            return scanner.finish();
        }
        let mut buffer = vec![0; READ_CHUNK];
        let mut scanned = 0u64;
        let mut first = true;
        loop {
            let read = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut data = buffer.get(..read).unwrap_or_default();
            if first && skip_bom {
                data = data.strip_prefix(BOM).unwrap_or(data);
            }
            first = false;
            scanner.feed(data);
            scanned += read as u64;
            if limit.is_some_and(|limit| scanned >= limit) {
                break;
            }
        }
        scanner.finish()
    }

    /// The error to report for a failed read of the record starting at `before`.
    fn read_error(&mut self, error: ::csv::Error, before: At) -> CsvError {
        if self.reader.get_ref().too_long {
            let limit = self.max_record;
            let scan = self.scan(before, Some(limit.saturating_add(READ_CHUNK as u64)));
            return CsvError::RecordTooLong {
                path: self.path.clone(),
                line: scan.first_line.unwrap_or(before.line),
                limit,
                quote_line: scan.open_quote,
            };
        }
        let error = match error.into_kind() {
            ::csv::ErrorKind::Io(error) => error,
            other => io::Error::other(format!("{other:?}")),
        };
        CsvError::Read {
            path: self.path.clone(),
            line: before.line,
            error,
        }
    }
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// `text` cut to at most `limit` bytes at a character boundary, with an ellipsis when cut.
/// The UTF-8 byte order mark, which a file may start with.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// A record as the file at `path` holds it in the bytes `span`, for the rejects file: without
/// the byte order mark, blank lines and line end around it, lossily decoded and cut at
/// [`RAW_LIMIT`] bytes. Read back from the file only when a record is rejected, which is rare.
fn read_record(path: &Path, span: Range<u64>) -> io::Result<String> {
    let length = usize::try_from(span.end.saturating_sub(span.start))
        .unwrap_or(usize::MAX)
        .min(RAW_LIMIT + 64);
    let mut bytes = vec![0; length];
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(span.start))?;
    file.read_exact(&mut bytes)?;
    let bytes = match span.start {
        0 => bytes.strip_prefix(BOM).unwrap_or(&bytes),
        _ => &bytes,
    };
    let is_terminator = |byte: &u8| matches!(byte, b'\r' | b'\n');
    let start = bytes
        .iter()
        .position(|byte| !is_terminator(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_terminator(byte))
        .map_or(start, |index| index + 1);
    let record = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    Ok(truncate(record, RAW_LIMIT))
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// What [`QuoteScanner`] found.
struct Scan {
    /// The line of the first byte of the first record.
    first_line: Option<u64>,
    /// The line of the quote still open at the end, if any.
    open_quote: Option<u64>,
}

/// Where [`QuoteScanner`] is in a record (csv-core's states, for its default dialect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    StartRecord,
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

/// Follows quoting the way the `csv` crate parses it, to tell whether the input ended inside a
/// quoted field (the `csv` crate then silently ends the field at the end of the file).
struct QuoteScanner {
    state: QuoteState,
    delimiter: u8,
    quote: u8,
    line: u64,
    quote_line: u64,
    first_line: Option<u64>,
}

impl QuoteScanner {
    fn new(delimiter: u8, quote: u8, line: u64) -> Self {
        QuoteScanner {
            state: QuoteState::StartRecord,
            delimiter,
            quote,
            line,
            quote_line: line,
            first_line: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let is_terminator = |byte: u8| byte == b'\n' || byte == b'\r';
        for &byte in data {
            self.state = match self.state {
                QuoteState::StartRecord if is_terminator(byte) => QuoteState::StartRecord,
                QuoteState::StartRecord | QuoteState::StartField => {
                    self.first_line.get_or_insert(self.line);
                    if byte == self.quote {
                        self.quote_line = self.line;
                        QuoteState::InQuoted
                    } else if byte == self.delimiter {
                        QuoteState::StartField
                    } else if is_terminator(byte) {
                        QuoteState::StartRecord
                    } else {
                        QuoteState::InField
                    }
                }
                QuoteState::InField | QuoteState::QuoteInQuoted
                    if byte == self.delimiter && byte != self.quote =>
                {
                    QuoteState::StartField
                }
                QuoteState::InField | QuoteState::QuoteInQuoted if is_terminator(byte) => {
                    QuoteState::StartRecord
                }
                QuoteState::InField => QuoteState::InField,
                QuoteState::InQuoted if byte == self.quote => QuoteState::QuoteInQuoted,
                QuoteState::InQuoted => QuoteState::InQuoted,
                QuoteState::QuoteInQuoted if byte == self.quote => QuoteState::InQuoted,
                QuoteState::QuoteInQuoted => QuoteState::InField,
            };
            if byte == b'\n' {
                self.line += 1;
            }
        }
    }

    fn finish(self) -> Scan {
        Scan {
            first_line: self.first_line,
            open_quote: (self.state == QuoteState::InQuoted).then_some(self.quote_line),
        }
    }
}
