//! The jobs this program can run.

mod import_user;

use std::sync::Arc;

use batch_core::launch::JobRegistry;

use crate::config::KubernetesSettings;
use crate::runner::{Backend, ConfiguredRunner};

/// The registry of the jobs built into csv2db, their container steps placed as `settings` say.
///
/// # Errors
/// An invalid container-step backend setting.
pub fn registry(settings: &KubernetesSettings) -> anyhow::Result<JobRegistry> {
    let backend = Backend::from_settings(settings).map_err(anyhow::Error::msg)?;
    let runner = Arc::new(ConfiguredRunner::new(backend, settings));
    let mut registry = JobRegistry::new();
    registry.register(import_user::job(settings, runner));
    Ok(registry)
}
