//! The jobs this program can run.

mod import_user;

use batch_core::launch::JobRegistry;

/// The registry of the jobs built into csv2db.
pub fn registry() -> JobRegistry {
    let mut registry = JobRegistry::new();
    registry.register(import_user::job());
    registry
}
