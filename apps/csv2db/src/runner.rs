//! Where container steps run: a Kubernetes Job inside a cluster, a local process elsewhere.

use std::sync::Arc;

use async_trait::async_trait;
use batch_kube::{
    ContainerOutcome, ContainerRunner, KubeRunner, LocalRunner, ResolvedSpec, RunContext,
    RunnerError,
};
use tokio::sync::OnceCell;

use crate::config::KubernetesSettings;

/// The configured choice of backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Kubernetes when running inside a cluster, local processes elsewhere.
    Auto,
    /// Always a Kubernetes Job.
    Kubernetes,
    /// Always a local process.
    Local,
}

impl Backend {
    /// Reads `kubernetes.backend`.
    ///
    /// # Errors
    /// An unknown value.
    pub fn from_settings(settings: &KubernetesSettings) -> Result<Backend, String> {
        match settings.backend.as_deref().unwrap_or("auto") {
            "auto" => Ok(Backend::Auto),
            "kubernetes" => Ok(Backend::Kubernetes),
            "local" => Ok(Backend::Local),
            other => Err(format!(
                "kubernetes.backend (CSV2DB_STEP_BACKEND) is '{other}'; expected auto, kubernetes or local"
            )),
        }
    }

    fn uses_kubernetes(self) -> bool {
        match self {
            Backend::Auto => batch_kube::in_cluster(),
            Backend::Kubernetes => true,
            Backend::Local => false,
        }
    }
}

/// A runner that picks its backend when the first container step runs, so that commands which
/// run no container step never touch the cluster configuration.
pub struct ConfiguredRunner {
    backend: Backend,
    namespace: Option<String>,
    runner: OnceCell<Arc<dyn ContainerRunner>>,
}

impl ConfiguredRunner {
    /// A runner following `settings`.
    pub fn new(backend: Backend, settings: &KubernetesSettings) -> Self {
        ConfiguredRunner {
            backend,
            namespace: settings.namespace.clone(),
            runner: OnceCell::new(),
        }
    }

    async fn runner(&self) -> Result<&Arc<dyn ContainerRunner>, RunnerError> {
        self.runner
            .get_or_try_init(|| async {
                if self.backend.uses_kubernetes() {
                    let runner = KubeRunner::from_environment(self.namespace.clone()).await?;
                    tracing::info!(
                        namespace = runner.namespace(),
                        "container steps run as Kubernetes Jobs"
                    );
                    Ok(Arc::new(runner) as Arc<dyn ContainerRunner>)
                } else {
                    Ok(Arc::new(LocalRunner::new()) as Arc<dyn ContainerRunner>)
                }
            })
            .await
    }
}

#[async_trait]
impl ContainerRunner for ConfiguredRunner {
    async fn run(
        &self,
        spec: &ResolvedSpec,
        run: &RunContext<'_>,
    ) -> Result<ContainerOutcome, RunnerError> {
        self.runner().await?.run(spec, run).await
    }
}
