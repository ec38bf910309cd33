//! The jobs this program can run.

use batch_core::launch::JobRegistry;

/// The registry of the jobs built into csv2db.
pub fn registry() -> JobRegistry {
    JobRegistry::new()
}
