//! The launching batch/v1 Job of one run: the seed's hand-written launcher Job, built once. It
//! runs `csv2db <JOB> <KEY=VALUE ...>` in the csv2db image as the service account of
//! `deploy/base`, with the ConfigMap `batch-config` at `/config`, the shared claim at `/test`,
//! the database password from the Secret `csv2db-db`, and the pod's identity through the
//! downward API so that its child Jobs are owned by it.

use std::collections::BTreeMap;

use batch_kube::kube::{JOB_NAME_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, label_value};
use batch_kube::spec::kubernetes_escape;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest as _, Sha256};

/// The service account of `deploy/base/serviceaccount.yaml`.
pub const SERVICE_ACCOUNT: &str = "csv2db-launcher";
/// The ConfigMap of `deploy/base/kustomization.yaml`, mounted at [`CONFIG_DIR`].
pub const CONFIG_MAP: &str = "batch-config";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/config";
/// The Secret holding the database password (`deploy/base/secret.example.yaml`).
pub const SECRET: &str = "csv2db-db";
/// The Secret's key holding the password.
pub const SECRET_KEY: &str = "password";
/// The claim mounted when `openshift.pvc.name` is not set (`deploy/base/pvc.yaml`).
pub const DEFAULT_CLAIM: &str = "spring-batch-claim";
/// Where the claim is mounted when `kubernetes.mount_path` is not set: the seed's `/test`.
pub const DEFAULT_MOUNT_PATH: &str = "/test";
/// The launcher container's name.
pub const CONTAINER: &str = "csv2db";
/// The launcher's command, found on the image's PATH (deploy/Dockerfile puts it in
/// `/usr/local/bin`), as step1's child Jobs find it.
pub const COMMAND: &str = "csv2db";
/// The label on the launcher Job and its pod naming the job (as a label value).
pub const JOB_LABEL: &str = "csv2db.io/job";

const MAX_NAME: usize = 63;

/// Everything the launcher Job depends on.
#[derive(Debug, Clone)]
pub struct LaunchSpec<'a> {
    /// The job's name.
    pub job: &'a str,
    /// Its parameters, as given.
    pub parameters: &'a [String],
    /// The csv2db image.
    pub image: &'a str,
    /// The Job's namespace, when known.
    pub namespace: Option<&'a str>,
    /// The shared claim.
    pub claim: &'a str,
    /// Where the claim is mounted.
    pub mount_path: &'a str,
}

/// The launching Job's name: the job's name in kebab case, then 8 hex digits of a SHA-256 of
/// the job's name and its parameters (sorted, so that their order does not matter). A DNS
/// label of at most 63 characters.
pub fn launcher_job_name(job: &str, parameters: &[String]) -> String {
    let mut sorted: Vec<&str> = parameters.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(job.as_bytes());
    for parameter in sorted {
        hasher.update([0u8]);
        hasher.update(parameter.as_bytes());
    }
    let digest = hasher.finalize();
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();

    let mut prefix = String::new();
    let mut previous: Option<char> = None;
    for c in job.chars() {
        let mapped = if c.is_ascii_alphanumeric() { c } else { '-' };
        if mapped.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            prefix.push('-');
        }
        let lower = mapped.to_ascii_lowercase();
        if !(lower == '-' && prefix.ends_with('-')) {
            prefix.push(lower);
        }
        previous = Some(c);
    }
    let room = MAX_NAME - hash.len() - 1;
    let mut prefix: String = prefix.trim_start_matches('-').chars().take(room).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push_str("csv2db");
    }
    format!("{prefix}-{hash}")
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(kubernetes_escape(value)),
        value_from: None,
    }
}

/// The launching batch/v1 Job for one run.
pub fn launcher_job(spec: &LaunchSpec<'_>) -> Job {
    let name = launcher_job_name(spec.job, spec.parameters);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "csv2db".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "launcher".to_owned(),
        ),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (JOB_LABEL.to_owned(), label_value(spec.job)),
    ]);
    let annotations = BTreeMap::from([(JOB_NAME_ANNOTATION.to_owned(), spec.job.to_owned())]);

    let env = vec![
        value_env(
            "SPRING_CONFIG_LOCATION",
            &format!("{CONFIG_DIR}/batch.properties"),
        ),
        EnvVar {
            name: "SPRING_DATASOURCE_PASSWORD".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: SECRET.to_owned(),
                    key: SECRET_KEY.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        },
        // The step1 child Jobs that run csv2db's own commands use the launcher's image.
        value_env("CSV2DB_IMAGE", spec.image),
        // Child Jobs go to the launcher's own namespace, where its Role and its pod are.
        field_env("CSV2DB_NAMESPACE", "metadata.namespace"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_UID", "metadata.uid"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ];
    let quantities = || {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("300m".to_owned())),
            ("memory".to_owned(), Quantity("512Mi".to_owned())),
        ])
    };
    let args = std::iter::once(spec.job)
        .chain(spec.parameters.iter().map(String::as_str))
        .map(kubernetes_escape)
        .collect();
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.to_owned()),
        command: Some(vec![COMMAND.to_owned()]),
        args: Some(args),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(quantities()),
            limits: Some(quantities()),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: spec.mount_path.to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".to_owned(),
                mount_path: CONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        // csv2db writes only to the claim and the database; HOME (/tmp) is an emptyDir.
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..batch_kube::kube::restricted_security_context()
        }),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: spec.namespace.map(str::to_owned),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            parallelism: Some(1),
            completions: Some(1),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(SERVICE_ACCOUNT.to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    restart_policy: Some("Never".to_owned()),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "data".to_owned(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: spec.claim.to_owned(),
                                read_only: None,
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "config".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: CONFIG_MAP.to_owned(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "tmp".to_owned(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        let params = [
            "batchRun=1".to_owned(),
            "jobFileLocation=/test/a.csv".to_owned(),
        ];
        let name = launcher_job_name("importUserJob", &params);
        assert!(name.starts_with("import-user-job-"), "{name}");
        assert_eq!(name.len(), "import-user-job-".len() + 8);
        let reversed = [params[1].clone(), params[0].clone()];
        assert_eq!(name, launcher_job_name("importUserJob", &reversed));
        assert_ne!(name, launcher_job_name("importUserJob", &params[..1]));

        let long = launcher_job_name(&"X".repeat(100), &[]);
        assert!(long.len() <= 63, "{long}");
        let odd = launcher_job_name("--A__b..", &[]);
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{odd}"
        );
        assert!(!odd.starts_with('-'), "{odd}");
        assert!(launcher_job_name("", &[]).starts_with("csv2db-"));
    }
}
