//! Container-job steps for csv2db: a step whose work is a command run to completion elsewhere,
//! as the seed's `OpenshiftJobTasklet` ran step1 as an OpenShift Job.
//!
//! A [`ContainerJobSpec`](spec::ContainerJobSpec) describes the work once (image, command, job
//! parameter-driven environment, volumes, deadline, security), a
//! [`ContainerRunner`](runner::ContainerRunner) runs it, and a
//! [`ContainerJobStep`](step::ContainerJobStep) puts it into a job, recording the outcome and the
//! log tail in the step execution. [`LocalRunner`](local::LocalRunner) runs the command as a local
//! process (no image, no volumes, no isolation); [`KubeRunner`] runs it as a Kubernetes Job
//! (module [`kube`]). This crate does not launch jobs or store metadata: that is
//! `batch-core` and `batch-repository`.

pub mod kube;
pub mod local;
pub mod runner;
pub mod spec;
pub mod step;

pub use self::kube::{KubeError, KubeRunner, LauncherPod, in_cluster};
pub use local::LocalRunner;
pub use runner::{ContainerOutcome, ContainerRunner, RunContext, RunnerError};
pub use spec::{
    ContainerJobSpec, EnvValue, EnvVar, PullPolicy, ResolvedSpec, ResourceList, Resources,
    SecurityProfile, SpecError, VolumeMount,
};
pub use step::{ContainerJobError, ContainerJobStep};
