//! The child Job: its deterministic name, its labels and its batch/v1 manifest.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::runner::RunContext;
use crate::spec::{ResolvedSpec, ResourceList, SecurityProfile, kubernetes_escape};

/// `app.kubernetes.io/managed-by`, set to [`MANAGED_BY`] on every child Job and its pods.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "csv2db";
/// The label holding the JOB_INSTANCE_ID the child Job runs for.
pub const JOB_INSTANCE_LABEL: &str = "csv2db.io/job-instance";
/// The label holding the JOB_EXECUTION_ID that created the child Job.
pub const JOB_EXECUTION_LABEL: &str = "csv2db.io/job-execution";
/// The label holding the STEP_EXECUTION_ID that created the child Job.
pub const STEP_EXECUTION_LABEL: &str = "csv2db.io/step-execution";
/// The label holding the step's name (made a valid label value).
pub const STEP_LABEL: &str = "csv2db.io/step";
/// The annotation holding the job's name (JOB_NAME) as it is.
pub const JOB_NAME_ANNOTATION: &str = "csv2db.io/job-name";
/// The annotation holding the step's name as it is.
pub const STEP_NAME_ANNOTATION: &str = "csv2db.io/step-name";
/// The annotation holding [`spec_hash`] of the spec the child Job was created from.
pub const SPEC_HASH_ANNOTATION: &str = "csv2db.io/spec-hash";

/// The longest Kubernetes name that is also a DNS label (and a label value).
const MAX_DNS_LABEL: usize = 63;

/// The launcher's own pod, which owns the child Jobs it creates so that deleting the launcher
/// deletes them too.
///
/// The launcher Job of `deploy/` passes its pod's identity through the downward API:
///
/// ```yaml
/// env:
///   - name: POD_NAME
///     valueFrom: { fieldRef: { fieldPath: metadata.name } }
///   - name: POD_UID
///     valueFrom: { fieldRef: { fieldPath: metadata.uid } }
///   - name: POD_NAMESPACE          # optional
///     valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
///   - name: POD_SERVICE_ACCOUNT    # optional, named in 403 messages
///     valueFrom: { fieldRef: { fieldPath: spec.serviceAccountName } }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherPod {
    /// The pod's name (`metadata.name`).
    pub name: String,
    /// The pod's UID (`metadata.uid`).
    pub uid: String,
    /// The pod's namespace, when known. An owner must be in the child's namespace: a child
    /// Job created in another namespace gets no owner reference.
    pub namespace: Option<String>,
}

impl LauncherPod {
    /// The environment variable holding the launcher pod's name.
    pub const NAME_VAR: &'static str = "POD_NAME";
    /// The environment variable holding the launcher pod's UID.
    pub const UID_VAR: &'static str = "POD_UID";
    /// The environment variable holding the launcher pod's namespace (optional).
    pub const NAMESPACE_VAR: &'static str = "POD_NAMESPACE";

    /// The launcher pod described by `POD_NAME`, `POD_UID` and (optionally) `POD_NAMESPACE`, or
    /// `None` when the first two are not both set (the launcher does not run in a pod, or its
    /// manifest does not pass them).
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Some(LauncherPod {
            name: var(Self::NAME_VAR)?,
            uid: var(Self::UID_VAR)?,
            namespace: var(Self::NAMESPACE_VAR),
        })
    }

    /// The owner reference to this pod: `apiVersion: v1, kind: Pod`, without
    /// `blockOwnerDeletion` (which OpenShift refuses to set without `update` on
    /// `pods/finalizers`) and without `controller`.
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            block_owner_deletion: None,
            controller: None,
        }
    }
}

/// The child Job's name for a step of a job instance: `<spec name>-<job instance id>-<hash>`,
/// where `<hash>` is 8 hex digits of a stable hash of the job instance id and the step name.
///
/// The same job instance and step always get the same name, so a restarted or replaced
/// launcher finds the child it (or its predecessor) created, and the API server refuses a
/// second one. The spec name is shortened when needed so that the whole is a DNS label of at
/// most 63 characters.
///
/// A standalone run (job instance id 0, outside any recorded execution) has nothing to be
/// idempotent with: its hash also covers the current time and process, so that each such run
/// gets a fresh child.
pub fn child_job_name(spec_name: &str, run: &RunContext<'_>) -> String {
    let mut key = format!("{}\u{0}{}", run.job_instance_id, run.step_name);
    if run.job_instance_id == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        key.push_str(&format!("\u{0}{nanos}\u{0}{}", std::process::id()));
    }
    let hash = fnv1a(key.as_bytes());
    let suffix = format!("-{}-{:08x}", run.job_instance_id, hash as u32);
    let room = MAX_DNS_LABEL.saturating_sub(suffix.len());
    let mut prefix: String = spec_name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .take(room)
        .collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push_str("job");
    }
    format!("{prefix}{suffix}")
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike the standard library's hasher.
/// A hash of what a child Job runs: image, command, arguments, environment and volumes, the
/// same for the same spec in every csv2db version. A child Job of the step's name whose hash
/// differs was created for another run (other parameters, or another metadata database whose
/// job instance has the same id), so it is not this run's.
pub fn spec_hash(spec: &ResolvedSpec) -> String {
    let mut text = String::new();
    let mut section = |values: &mut dyn Iterator<Item = &str>| {
        for value in values {
            text.push_str(value);
            text.push('\0');
        }
        text.push('\u{1}');
    };
    section(&mut std::iter::once(spec.image.as_str()));
    section(&mut spec.command.iter().map(String::as_str));
    section(&mut spec.args.iter().map(String::as_str));
    section(
        &mut spec
            .env
            .iter()
            .flat_map(|(name, value)| [name.as_str(), value.as_str()]),
    );
    section(
        &mut spec
            .volumes
            .iter()
            .flat_map(|volume| [volume.claim_name.as_str(), volume.mount_path.as_str()]),
    );
    format!("{:016x}", fnv1a(text.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `text` made a valid label value: characters other than letters, digits, `-`, `_` and `.`
/// become `-`, at most 63 characters, starting and ending with a letter or digit.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_DNS_LABEL)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The labels of the child Job and its pods: the spec's own, then the managed-by label and the
/// job instance, job execution, step execution and step of `run`.
pub fn child_labels(spec: &ResolvedSpec, run: &RunContext<'_>) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(JOB_INSTANCE_LABEL.into(), run.job_instance_id.to_string());
    labels.insert(JOB_EXECUTION_LABEL.into(), run.job_execution_id.to_string());
    labels.insert(
        STEP_EXECUTION_LABEL.into(),
        run.step_execution_id.to_string(),
    );
    labels.insert(STEP_LABEL.into(), label_value(run.step_name));
    labels
}

/// Whole seconds, rounded up, and at least `min`.
fn seconds(duration: Duration, min: i64) -> i64 {
    let whole = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    let rounded = if duration.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    rounded.max(min)
}

fn quantities(list: &ResourceList) -> Option<BTreeMap<String, Quantity>> {
    let mut map = BTreeMap::new();
    if let Some(cpu) = &list.cpu {
        map.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &list.memory {
        map.insert("memory".to_owned(), Quantity(memory.clone()));
    }
    (!map.is_empty()).then_some(map)
}

/// The restricted security context: what OpenShift's `restricted-v2` SCC and the "restricted"
/// Pod Security Standard admit, with no `runAsUser` so that OpenShift can pick one.
pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The batch/v1 Job that runs `spec` for `run`, named `name`, in `namespace`, owned by
/// `owner` when given.
///
/// One pod (`restartPolicy: Never`) whose container is named after the spec; retries are
/// `backoffLimit`, the deadline `activeDeadlineSeconds` (rounded up to whole seconds), the
/// clean-up `ttlSecondsAfterFinished`. A `podFailurePolicy` ignores pods that fail because of
/// a disruption (eviction, preemption, node drain: condition `DisruptionTarget`), so they count
/// against nothing. Every resolved value (command, arguments, environment) is escaped with
/// [`kubernetes_escape`] so that Kubernetes' `$(VAR)` expansion leaves it as it is.
pub fn job_manifest(
    spec: &ResolvedSpec,
    run: &RunContext<'_>,
    name: &str,
    namespace: &str,
    owner: Option<&LauncherPod>,
) -> Job {
    let labels = child_labels(spec, run);
    let escape_all = |items: &[String]| -> Option<Vec<String>> {
        (!items.is_empty()).then(|| items.iter().map(|s| kubernetes_escape(s)).collect())
    };
    let env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(kubernetes_escape(value)),
            value_from: None,
        })
        .collect();

    // One volume per distinct claim, mounted wherever the spec says.
    let mut volumes: Vec<Volume> = Vec::new();
    let mut mounts: Vec<VolumeMount> = Vec::new();
    for mount in &spec.volumes {
        let index = match volumes.iter().position(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == mount.claim_name)
        }) {
            Some(index) => index,
            None => {
                volumes.push(Volume {
                    name: volume_name(&mount.claim_name, volumes.len()),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: mount.claim_name.clone(),
                        read_only: None,
                    }),
                    ..Volume::default()
                });
                volumes.len() - 1
            }
        };
        mounts.push(VolumeMount {
            name: volumes[index].name.clone(),
            mount_path: mount.mount_path.clone(),
            ..VolumeMount::default()
        });
    }

    let requests = quantities(&spec.resources.requests);
    let limits = quantities(&spec.resources.limits);
    let resources = (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..ResourceRequirements::default()
    });

    let container = Container {
        name: spec.name.clone(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.pull_policy.map(|p| p.as_str().to_owned()),
        command: escape_all(&spec.command),
        args: escape_all(&spec.args),
        env: (!env.is_empty()).then_some(env),
        resources,
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        security_context: match spec.security {
            SecurityProfile::Restricted => Some(restricted_security_context()),
            SecurityProfile::ClusterDefault => None,
        },
        ..Container::default()
    };

    let mut annotations = BTreeMap::new();
    if !run.job_name.is_empty() {
        annotations.insert(JOB_NAME_ANNOTATION.to_owned(), run.job_name.to_owned());
    }
    annotations.insert(STEP_NAME_ANNOTATION.to_owned(), run.step_name.to_owned());
    annotations.insert(SPEC_HASH_ANNOTATION.to_owned(), spec_hash(spec));

    let owner_references = owner
        .filter(|pod| pod.namespace.as_deref().is_none_or(|ns| ns == namespace))
        .map(|pod| vec![pod.owner_reference()]);

    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            owner_references,
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(i32::try_from(spec.backoff_limit).unwrap_or(i32::MAX)),
            active_deadline_seconds: spec.active_deadline.map(|d| seconds(d, 1)),
            ttl_seconds_after_finished: spec
                .ttl_after_finished
                .map(|d| i32::try_from(seconds(d, 0)).unwrap_or(i32::MAX)),
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "Ignore".to_owned(),
                    on_exit_codes: None,
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".to_owned(),
                        status: Some("True".to_owned()),
                    }]),
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: spec.service_account.clone(),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The claim's name when it is a DNS label, else `pvc-<index>`.
fn volume_name(claim: &str, index: usize) -> String {
    let is_label = !claim.is_empty()
        && claim.len() <= MAX_DNS_LABEL
        && claim
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !claim.starts_with('-')
        && !claim.ends_with('-');
    if is_label {
        claim.to_owned()
    } else {
        format!("pvc-{index}")
    }
}

#[cfg(test)]
mod tests {
    use batch_core::step::StopSignal;

    use super::*;

    fn context<'a>(stop: &'a StopSignal, instance: i64, step: &'a str) -> RunContext<'a> {
        RunContext {
            job_name: "importUserJob",
            job_instance_id: instance,
            job_execution_id: 7,
            step_execution_id: 11,
            step_name: step,
            stop,
        }
    }

    #[test]
    fn the_spec_hash_is_stable_and_covers_what_runs() {
        let params = batch_core::job::parameters::JobParameters::new().with(
            "jobFileLocation",
            batch_core::job::parameters::JobParameter::string("/test/myfile1.csv"),
        );
        let spec = |image: &str| {
            crate::ContainerJobSpec::new("generate-csv", image)
                .command(["csv2db", "generate-people"])
                .env_parameter("FILENAME", "jobFileLocation")
                .volume("spring-batch-claim", "/test")
                .resolve(&params)
                .expect("resolves")
        };
        // The same in every csv2db version: a restarted launcher of a newer version must
        // recognise the child Job an older one created.
        assert_eq!(spec_hash(&spec("csv2db:0.1.0")), "2182b8958e98e91e");
        assert_ne!(
            spec_hash(&spec("csv2db:0.1.0")),
            spec_hash(&spec("csv2db:0.2.0"))
        );
        let mut other_file = spec("csv2db:0.1.0");
        other_file.env[0].1 = "/test/myfile2.csv".to_owned();
        assert_ne!(spec_hash(&other_file), spec_hash(&spec("csv2db:0.1.0")));
    }

    #[test]
    fn names_are_deterministic_and_dns_labels() {
        let stop = StopSignal::new();
        let a = child_job_name("generate-csv", &context(&stop, 42, "step1"));
        assert_eq!(
            a,
            child_job_name("generate-csv", &context(&stop, 42, "step1"))
        );
        assert!(a.starts_with("generate-csv-42-"), "{a}");
        assert_eq!(a.len(), "generate-csv-42-".len() + 8);
        assert_ne!(
            a,
            child_job_name("generate-csv", &context(&stop, 43, "step1"))
        );
        assert_ne!(
            a,
            child_job_name("generate-csv", &context(&stop, 42, "step2"))
        );

        let long = "a".repeat(40);
        let name = child_job_name(&long, &context(&stop, i64::MAX, "step1"));
        // The spec name is shortened; the instance id and the hash are kept whole.
        assert_eq!(name.len(), 63, "{name}");
        assert!(name.starts_with("aaaa"), "{name}");
        assert!(name.contains(&format!("a-{}-", i64::MAX)), "{name}");
        assert!(
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        );

        // Standalone runs get a fresh name each time.
        let first = child_job_name("x", &context(&stop, 0, "s"));
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(first, child_job_name("x", &context(&stop, 0, "s")));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("step1"), "step1");
        assert_eq!(label_value("Step 1: load!"), "Step-1--load");
        assert_eq!(label_value("__x__"), "x");
        assert_eq!(label_value(&"y".repeat(100)).len(), 63);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::from_millis(1500), 1), 2);
        assert_eq!(seconds(Duration::from_secs(0), 1), 1);
        assert_eq!(seconds(Duration::from_secs(0), 0), 0);
        assert_eq!(seconds(Duration::from_secs(60), 1), 60);
    }

    #[test]
    fn volume_names() {
        assert_eq!(volume_name("spring-batch-claim", 0), "spring-batch-claim");
        assert_eq!(volume_name("claim.with.dots", 1), "pvc-1");
    }
}
