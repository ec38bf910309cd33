//! [`RejectsFile`]: rejected items written exactly once to a CSV file next to the input.
//!
//! Rejects are buffered until the chunk commits: [`RejectSink::flush`] appends them, syncs the
//! file and records its length under [`REJECTS_BYTES_KEY`] in the step's execution context, which
//! commits with the chunk. A restart truncates the file back to that length, so the rejects of a
//! chunk that rolled back (or was lost in a crash) are not written twice.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use batch_core::context::ExecutionContext;
use batch_core::step::BoxError;
use batch_core::step::item::{BadItem, RejectSink};

/// The execution context key holding the committed length of the rejects file.
pub const REJECTS_BYTES_KEY: &str = "rejects.bytes";

/// The first line of every rejects file.
const HEADER: &[u8] = b"line,reason,record\n";

/// Why the rejects file could not be prepared or written.
#[derive(Debug, thiserror::Error)]
pub enum RejectsError {
    /// A file operation failed.
    #[error("cannot {action} rejects file {}: {error}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The rejects file.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// The saved length in the execution context is not a non-negative integer.
    #[error("invalid {REJECTS_BYTES_KEY} in the execution context: {0}")]
    BadLength(String),
    /// A reject could not be encoded as CSV.
    #[error("cannot encode a reject as CSV: {0}")]
    Encode(#[from] ::csv::Error),
}

/// Writes rejected items as CSV lines `line,reason,record` to a file.
///
/// The file is created, with a header line, only when there is something to reject.
#[derive(Debug)]
pub struct RejectsFile {
    path: PathBuf,
    /// Encoded rejects not yet flushed.
    pending: Vec<u8>,
    opened: bool,
    length: u64,
}

impl RejectsFile {
    /// Rejects of `input` go to `<input file name>.rejects` in the same directory.
    pub fn next_to(input: &Path) -> RejectsFile {
        let mut name = input
            .file_name()
            .map_or_else(|| OsString::from("input"), ToOwned::to_owned);
        name.push(".rejects");
        RejectsFile::at(input.with_file_name(name))
    }

    /// Rejects go to the file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> RejectsFile {
        RejectsFile {
            path: path.into(),
            pending: Vec::new(),
            opened: false,
            length: 0,
        }
    }

    /// The rejects file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the file back to the length committed in `context` (removing it when nothing was
    /// committed), so that a restart does not repeat the rejects of an uncommitted chunk.
    ///
    /// [`RejectSink::flush`] calls this itself the first time when it was not called before.
    ///
    /// # Errors
    /// When the file cannot be truncated or removed, or the saved length is invalid.
    pub fn open(&mut self, context: &ExecutionContext) -> Result<(), BoxError> {
        let keep = match context.get(REJECTS_BYTES_KEY) {
            None => 0,
            Some(value) => context
                .get_i64(REJECTS_BYTES_KEY)
                .and_then(|bytes| u64::try_from(bytes).ok())
                .ok_or_else(|| RejectsError::BadLength(value.to_string()))?,
        };
        self.length = match fs::metadata(&self.path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if keep > 0 {
                    tracing::warn!(
                        path = %self.path.display(),
                        bytes = keep,
                        "the rejects file of the previous run is missing; starting a new one"
                    );
                }
                0
            }
            Err(error) => return Err(self.error("inspect", error).into()),
            Ok(_) if keep == 0 => {
                fs::remove_file(&self.path).map_err(|error| self.error("remove", error))?;
                0
            }
            Ok(metadata) if metadata.len() > keep => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(|error| self.error("open", error))?;
                file.set_len(keep)
                    .and_then(|()| file.sync_data())
                    .map_err(|error| self.error("truncate", error))?;
                keep
            }
            Ok(metadata) => {
                if metadata.len() < keep {
                    tracing::warn!(
                        path = %self.path.display(),
                        expected = keep,
                        found = metadata.len(),
                        "the rejects file is shorter than committed; keeping it as it is"
                    );
                }
                metadata.len()
            }
        };
        self.opened = true;
        Ok(())
    }

    fn error(&self, action: &'static str, error: io::Error) -> RejectsError {
        RejectsError::Io {
            action,
            path: self.path.clone(),
            error,
        }
    }

    /// Appends `data` to the file (creating it with its header), syncs it, and returns its length.
    fn append(&self, data: &[u8]) -> Result<u64, RejectsError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|error| self.error("open", error))?;
        let created = file
            .metadata()
            .map_err(|error| self.error("inspect", error))?
            .len()
            == 0;
        let mut bytes = Vec::with_capacity(HEADER.len() + data.len());
        if created {
            bytes.extend_from_slice(HEADER);
        }
        bytes.extend_from_slice(data);
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|error| self.error("write", error))?;
        if created {
            sync_parent(&self.path).map_err(|error| self.error("sync the directory of", error))?;
        }
        Ok(file
            .metadata()
            .map_err(|error| self.error("inspect", error))?
            .len())
    }
}

/// Makes a newly created file's directory entry durable.
#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    Ok(())
}

impl RejectSink for RejectsFile {
    fn reject(&mut self, item: &BadItem) -> Result<(), BoxError> {
        let line = item.line.map(|line| line.to_string()).unwrap_or_default();
        let mut writer = ::csv::Writer::from_writer(&mut self.pending);
        writer
            .write_record([line.as_str(), item.reason.as_str(), item.raw.as_str()])
            .map_err(RejectsError::Encode)?;
        writer
            .flush()
            .map_err(|error| RejectsError::Encode(error.into()))?;
        Ok(())
    }

    fn flush(&mut self, context: &mut ExecutionContext) -> Result<(), BoxError> {
        if !self.opened {
            self.open(context)?;
        }
        let data = std::mem::take(&mut self.pending);
        if !data.is_empty() {
            self.length = self.append(&data)?;
        }
        context.put(REJECTS_BYTES_KEY, self.length);
        Ok(())
    }
}
