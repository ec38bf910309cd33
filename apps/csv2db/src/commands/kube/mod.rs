//! `kube launch`: the launching batch/v1 Job for one run ([`manifest`]), created through
//! kube-rs or printed, and followed ([`follow`]).

mod follow;
pub mod manifest;

use std::fmt;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, PostParams, Preconditions};
use anyhow::Context as _;
use batch_core::job::parameters::JobParameters;
use batch_kube::KubeRunner;
use batch_kube::kube::{JobState, job_state};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use self::manifest::{DEFAULT_CLAIM, DEFAULT_MOUNT_PATH, LaunchSpec, launcher_job};
use super::Session;
use crate::cli::{KubeLaunchArgs, OutputFormat};
use crate::exit;

/// `csv2db kube launch`.
pub async fn launch(session: &Session, args: KubeLaunchArgs) -> anyhow::Result<u8> {
    let parsed = JobParameters::parse_args(&args.parameters)?;
    session
        .registry
        .get(&args.job)?
        .validate(&parsed)
        .map_err(batch_core::launch::LaunchError::InvalidParameters)?;

    let kubernetes = &session.settings.kubernetes;
    let default_image = format!("csv2db:{}", env!("CARGO_PKG_VERSION"));
    let image = args
        .image
        .as_deref()
        .or(kubernetes.image.as_deref())
        .unwrap_or(&default_image);
    let claim = kubernetes.pvc_name.as_deref().unwrap_or(DEFAULT_CLAIM);
    let mount_path = kubernetes
        .mount_path
        .as_deref()
        .unwrap_or(DEFAULT_MOUNT_PATH);

    if args.dry_run {
        let job = launcher_job(&LaunchSpec {
            job: &args.job,
            parameters: &args.parameters,
            image,
            namespace: kubernetes.namespace.as_deref(),
            claim,
            mount_path,
        });
        match session.output {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&job)?),
            OutputFormat::Table => print!("{}", serde_saphyr::to_string(&job)?),
        }
        return Ok(exit::OK);
    }

    let runner = KubeRunner::from_environment(kubernetes.namespace.clone()).await?;
    let namespace = runner.namespace().to_owned();
    let job = launcher_job(&LaunchSpec {
        job: &args.job,
        parameters: &args.parameters,
        image,
        namespace: Some(&namespace),
        claim,
        mount_path,
    });
    let name = job.metadata.name.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(runner.client().clone(), &namespace);
    if args.replace {
        delete_failed(&jobs, &name, &namespace).await?;
    }
    let created = match jobs.create(&PostParams::default(), &job).await {
        Ok(created) => created,
        Err(::kube::Error::Api(status)) if status.code == 409 => {
            let existing = jobs
                .get_opt(&name)
                .await
                .with_context(|| format!("cannot read Job {name} in namespace {namespace}"))?;
            let Some(existing) = existing else {
                anyhow::bail!(
                    "Job {name} in namespace {namespace} existed when csv2db created it and was \
                     deleted since: launch again"
                );
            };
            return Err(LauncherJobExists {
                state: job_state(&existing),
                name,
                namespace,
            }
            .into());
        }
        Err(::kube::Error::Api(status)) if status.code == 403 => anyhow::bail!(
            "Kubernetes refused to create Job {name} in namespace {namespace} (403 Forbidden): \
             you need `create` on jobs.batch there. The API server said: {}",
            status.message
        ),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot create Job {name} in namespace {namespace}"));
        }
    };
    println!("job.batch/{name} created in namespace {namespace}");
    if !args.follow {
        return Ok(exit::OK);
    }
    let pods: Api<Pod> = Api::namespaced(runner.client().clone(), &namespace);
    let start_timeout = Duration::from_secs(args.start_timeout);
    follow::follow(&jobs, &pods, &created, start_timeout).await
}

/// Deletes the launcher Job `name` and its pod if it has failed, and waits until both are gone
/// (foreground deletion); refuses when it is active or complete. Does nothing when there is no
/// such Job.
async fn delete_failed(jobs: &Api<Job>, name: &str, namespace: &str) -> anyhow::Result<()> {
    const GONE_WITHIN: Duration = Duration::from_secs(60);
    let read = |error| anyhow::Error::new(error).context(format!("cannot read Job {name}"));
    let Some(existing) = jobs.get_opt(name).await.map_err(read)? else {
        return Ok(());
    };
    let state = job_state(&existing);
    if !matches!(state, JobState::Failed { .. }) {
        return Err(LauncherJobExists {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            state,
        }
        .into());
    }
    // Only this Job: not one that another launch created meanwhile under the same name.
    let uid = existing.metadata.uid.clone();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::foreground()
    };
    match jobs.delete(name, &params).await {
        Ok(_) => {}
        Err(::kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(error) => {
            return Err(error).with_context(|| {
                format!("cannot delete the failed Job {name} in namespace {namespace}")
            });
        }
    }
    let deadline = tokio::time::Instant::now() + GONE_WITHIN;
    while let Some(current) = jobs.get_opt(name).await.map_err(read)? {
        if current.metadata.uid != uid {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the failed Job {name} in namespace {namespace} is still there {} s after its \
                 deletion",
                GONE_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("job.batch/{name} deleted (it had failed)");
    Ok(())
}

/// A launcher Job of the same job and parameters is already there: the launch is refused.
#[derive(Debug)]
pub struct LauncherJobExists {
    /// The Job's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Where it is (from its conditions).
    pub state: JobState,
}

impl LauncherJobExists {
    /// The exit code of the refusal: 4 while it runs, 3 when it completed, 2 when it failed
    /// (relaunch it with --replace).
    pub fn exit_code(&self) -> u8 {
        match self.state {
            JobState::Running => exit::ALREADY_RUNNING,
            JobState::Complete => exit::ALREADY_COMPLETE,
            JobState::Failed { .. } => exit::USAGE,
        }
    }
}

impl fmt::Display for LauncherJobExists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LauncherJobExists {
            name, namespace, ..
        } = self;
        match &self.state {
            JobState::Running => write!(
                f,
                "Job {name} in namespace {namespace} is still running an earlier launch of these \
                 parameters: follow it with `kubectl logs -f job/{name} -n {namespace}`"
            ),
            JobState::Complete => write!(
                f,
                "Job {name} in namespace {namespace} already completed these parameters: the job \
                 instance is complete (its log: `kubectl logs job/{name} -n {namespace}`)"
            ),
            JobState::Failed { reason, message } => write!(
                f,
                "Job {name} in namespace {namespace} already ran these parameters and failed \
                 ({}): launch again with --replace to restart the job instance",
                failure(reason.as_deref(), message.as_deref())
            ),
        }
    }
}

impl std::error::Error for LauncherJobExists {}

/// A failed Job condition's reason and message, as one text.
fn failure(reason: Option<&str>, message: Option<&str>) -> String {
    format!(
        "{}: {}",
        reason.unwrap_or("Failed"),
        message.unwrap_or_default()
    )
}
