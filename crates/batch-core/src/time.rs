//! Timestamps as Spring Batch writes them: local wall-clock time without offset.

use chrono::{Local, NaiveDateTime, SubsecRound};

/// The current local time, at the millisecond precision Spring Batch's `Timestamp` columns keep.
pub fn now() -> NaiveDateTime {
    Local::now().naive_local().trunc_subsecs(3)
}
