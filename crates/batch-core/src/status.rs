//! [`BatchStatus`] and [`ExitStatus`], with Spring Batch's ordering and combination rules.

use std::fmt;
use std::str::FromStr;

/// The status of a job or step execution, in Spring Batch's ordinal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BatchStatus {
    /// Finished successfully.
    Completed,
    /// Created, not yet running.
    Starting,
    /// Running.
    Started,
    /// A stop was requested; the execution ends at its next boundary.
    Stopping,
    /// Stopped on request; can be restarted.
    Stopped,
    /// Failed; can be restarted.
    Failed,
    /// Given up by an operator; cannot be restarted.
    Abandoned,
    /// State unknown after a metadata failure; blocks restarts.
    Unknown,
}

impl BatchStatus {
    /// Every status, in ordinal order.
    pub const ALL: [BatchStatus; 8] = [
        BatchStatus::Completed,
        BatchStatus::Starting,
        BatchStatus::Started,
        BatchStatus::Stopping,
        BatchStatus::Stopped,
        BatchStatus::Failed,
        BatchStatus::Abandoned,
        BatchStatus::Unknown,
    ];

    /// The name stored in the STATUS columns.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Completed => "COMPLETED",
            BatchStatus::Starting => "STARTING",
            BatchStatus::Started => "STARTED",
            BatchStatus::Stopping => "STOPPING",
            BatchStatus::Stopped => "STOPPED",
            BatchStatus::Failed => "FAILED",
            BatchStatus::Abandoned => "ABANDONED",
            BatchStatus::Unknown => "UNKNOWN",
        }
    }

    /// STARTING, STARTED or STOPPING.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            BatchStatus::Starting | BatchStatus::Started | BatchStatus::Stopping
        )
    }

    /// FAILED or anything above it.
    pub fn is_unsuccessful(self) -> bool {
        self >= BatchStatus::Failed
    }

    /// Spring Batch's `upgradeTo`: the status that results from combining `self` with `other`.
    pub fn upgrade_to(self, other: BatchStatus) -> BatchStatus {
        if self > BatchStatus::Started || other > BatchStatus::Started {
            self.max(other)
        } else if self == BatchStatus::Completed || other == BatchStatus::Completed {
            BatchStatus::Completed
        } else {
            self.max(other)
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of Spring Batch's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown batch status '{0}' (expected one of COMPLETED, STARTING, STARTED, STOPPING, STOPPED, FAILED, ABANDONED, UNKNOWN)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for BatchStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BatchStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// The exit code and description of an execution (EXIT_CODE and EXIT_MESSAGE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// Short code: UNKNOWN, EXECUTING, COMPLETED, NOOP, FAILED, STOPPED or a custom one.
    pub code: String,
    /// Free text, for failures the error and its causes.
    pub description: String,
}

impl ExitStatus {
    /// The longest EXIT_MESSAGE Spring Batch's schema holds.
    pub const MAX_DESCRIPTION_CHARS: usize = 2500;

    /// An exit status with the given code and no description.
    pub fn new(code: impl Into<String>) -> Self {
        ExitStatus {
            code: code.into(),
            description: String::new(),
        }
    }

    /// State unknown (the code of a new job execution).
    pub fn unknown() -> Self {
        Self::new("UNKNOWN")
    }
    /// Running (the code of a new step execution).
    pub fn executing() -> Self {
        Self::new("EXECUTING")
    }
    /// Finished successfully.
    pub fn completed() -> Self {
        Self::new("COMPLETED")
    }
    /// Nothing to do.
    pub fn noop() -> Self {
        Self::new("NOOP")
    }
    /// Failed.
    pub fn failed() -> Self {
        Self::new("FAILED")
    }
    /// Stopped on request.
    pub fn stopped() -> Self {
        Self::new("STOPPED")
    }

    /// This status with `description` added, as Spring Batch's `addExitDescription`.
    pub fn with_description(mut self, description: impl AsRef<str>) -> Self {
        let description = description.as_ref();
        if !description.is_empty() && self.description != description {
            if self.description.is_empty() {
                self.description = description.to_string();
            } else {
                self.description = format!("{}; {}", self.description, description);
            }
        }
        self
    }

    /// A FAILED status whose description is `error` and the chain of its causes.
    pub fn failed_with(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::failed().with_description(describe_error(error))
    }

    /// Spring Batch's `and`: keeps the more severe code and joins the descriptions.
    pub fn and(self, other: ExitStatus) -> ExitStatus {
        let code = if self.compare_severity(&other) == std::cmp::Ordering::Less {
            other.code.clone()
        } else {
            self.code.clone()
        };
        let joined = ExitStatus {
            code,
            description: self.description,
        };
        joined.with_description(other.description)
    }

    fn severity(&self) -> u8 {
        const RANKED: [&str; 6] = [
            "EXECUTING",
            "COMPLETED",
            "NOOP",
            "STOPPED",
            "FAILED",
            "UNKNOWN",
        ];
        RANKED
            .iter()
            .position(|prefix| self.code.starts_with(prefix))
            .map_or(7, |index| index as u8 + 1)
    }

    fn compare_severity(&self, other: &ExitStatus) -> std::cmp::Ordering {
        self.severity()
            .cmp(&other.severity())
            .then_with(|| self.code.cmp(&other.code))
    }

    /// The description cut to what the EXIT_MESSAGE column holds.
    pub fn truncated_description(&self) -> String {
        truncate_chars(&self.description, Self::MAX_DESCRIPTION_CHARS)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.description.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.description)
        }
    }
}

/// The error's message followed by each cause on its own `Caused by:` line.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.ends_with(&line) {
            text.push_str("\nCaused by: ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// `text` cut to at most `max` characters.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in BatchStatus::ALL {
            assert_eq!(status.as_str().parse::<BatchStatus>(), Ok(status));
        }
        assert!("RUNNING".parse::<BatchStatus>().is_err());
    }

    #[test]
    fn upgrade_follows_spring_batch() {
        use BatchStatus::*;
        assert_eq!(Started.upgrade_to(Completed), Completed);
        assert_eq!(Completed.upgrade_to(Started), Completed);
        assert_eq!(Starting.upgrade_to(Started), Started);
        assert_eq!(Completed.upgrade_to(Failed), Failed);
        assert_eq!(Stopping.upgrade_to(Completed), Stopping);
        assert_eq!(Failed.upgrade_to(Stopped), Failed);
    }

    #[test]
    fn and_keeps_the_more_severe_code_and_joins_descriptions() {
        let joined = ExitStatus::completed()
            .with_description("a")
            .and(ExitStatus::failed().with_description("b"));
        assert_eq!(joined.code, "FAILED");
        assert_eq!(joined.description, "a; b");
        let custom = ExitStatus::failed().and(ExitStatus::new("CUSTOM"));
        assert_eq!(custom.code, "CUSTOM");
        let same = ExitStatus::failed()
            .with_description("x")
            .and(ExitStatus::completed().with_description("x"));
        assert_eq!(same.code, "FAILED");
        assert_eq!(same.description, "x");
    }

    #[test]
    fn descriptions_are_cut_by_characters() {
        let status = ExitStatus::failed().with_description("é".repeat(3000));
        assert_eq!(status.truncated_description().chars().count(), 2500);
    }

    #[test]
    fn describe_error_lists_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(describe_error(&error), "outer\nCaused by: inner");
    }
}
