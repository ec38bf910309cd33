//! The description of a container job, independent of where it runs, and its resolution against
//! a job execution's parameters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use batch_core::job::parameters::JobParameters;

/// When the kubelet pulls the image (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull only when the node does not have the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling: `Always`, `IfNotPresent` or `Never`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnvValue {
    /// A fixed value. As in Kubernetes, `$(NAME)` references to variables defined earlier in the
    /// list are expanded, and `$$` stands for a literal `$`.
    Literal(String),
    /// The value of the named job parameter at run time (its stored text form, e.g. `10` for a
    /// `java.lang.Long`). Resolution fails when the parameter is not set. Taken verbatim: `$(…)`
    /// in a parameter's value is not expanded.
    JobParameter(String),
    /// The value of the named job parameter, or `default` when it is not set.
    JobParameterOr {
        /// The job parameter's name.
        parameter: String,
        /// The value used when the job parameter is not set (taken verbatim).
        default: String,
    },
}

/// One environment variable of the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Where its value comes from.
    pub value: EnvValue,
}

/// A persistent volume claim mounted into the container (the seed mounts `spring-batch-claim` at
/// `/test`). The local runner ignores mounts: paths are used as they are on the machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolumeMount {
    /// The name of the PersistentVolumeClaim.
    pub claim_name: String,
    /// The absolute path it is mounted at in the container.
    pub mount_path: String,
}

/// CPU and memory quantities, in Kubernetes notation (`300m`, `512Mi`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceList {
    /// CPU, e.g. `300m` or `1`.
    pub cpu: Option<String>,
    /// Memory, e.g. `512Mi`.
    pub memory: Option<String>,
}

impl ResourceList {
    /// A list with neither CPU nor memory set.
    pub fn new() -> Self {
        Self::default()
    }

    /// This list with its CPU quantity set.
    pub fn cpu(mut self, quantity: impl Into<String>) -> Self {
        self.cpu = Some(quantity.into());
        self
    }

    /// This list with its memory quantity set.
    pub fn memory(mut self, quantity: impl Into<String>) -> Self {
        self.memory = Some(quantity.into());
        self
    }

    /// True when neither quantity is set.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }
}

/// The container's resource requests and limits. Unset quantities are left to the cluster's
/// defaults (LimitRange); the local runner does not enforce any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// What the scheduler reserves for the container.
    pub requests: ResourceList,
    /// What the container may use at most.
    pub limits: ResourceList,
}

/// The security context the container runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SecurityProfile {
    /// What OpenShift's `restricted-v2` SCC and the Kubernetes "restricted" Pod Security Standard
    /// admit: `runAsNonRoot: true`, `allowPrivilegeEscalation: false`, `capabilities.drop: [ALL]`
    /// and `seccompProfile.type: RuntimeDefault`. No `runAsUser` is set, so OpenShift can assign
    /// a user from the namespace's range; the image must therefore not require root.
    #[default]
    Restricted,
    /// No security context: whatever the cluster assigns. Only for images that cannot run
    /// restricted, in namespaces that allow it.
    ClusterDefault,
}

/// How a container job is started and what it is allowed, described once for every backend.
///
/// Built with [`ContainerJobSpec::new`] and its chainable setters; resolved against a job
/// execution's parameters with [`ContainerJobSpec::resolve`] just before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerJobSpec {
    /// The base name of the container job (e.g. `generate-csv`): a DNS-1123 label of at most
    /// [`MAX_NAME_CHARS`](Self::MAX_NAME_CHARS) characters. A Kubernetes backend derives the
    /// child Job's name from it.
    pub name: String,
    /// The container image. Not used by the local runner.
    pub image: String,
    /// The image pull policy; `None` leaves it to the cluster (`Always` for `:latest`, else
    /// `IfNotPresent`).
    pub pull_policy: Option<PullPolicy>,
    /// The entrypoint (Kubernetes `command`). Empty means the image's own entrypoint, which the
    /// local runner does not have: there the first element of `command` followed by `args` is
    /// the program.
    pub command: Vec<String>,
    /// The arguments (Kubernetes `args`).
    pub args: Vec<String>,
    /// The environment, in order.
    pub env: Vec<EnvVar>,
    /// Persistent volume claims to mount.
    pub volumes: Vec<VolumeMount>,
    /// CPU and memory requests and limits.
    pub resources: Resources,
    /// How many times a failed run is retried before the job counts as failed (Kubernetes
    /// `backoffLimit`); 0 by default, so a failure fails the step at once.
    pub backoff_limit: u32,
    /// The longest the whole container job may run, retries included
    /// (`activeDeadlineSeconds`); none by default.
    pub active_deadline: Option<Duration>,
    /// How long a finished child Job is kept before the cluster deletes it
    /// (`ttlSecondsAfterFinished`); none by default.
    pub ttl_after_finished: Option<Duration>,
    /// The service account the pod runs as; none uses the namespace's `default`.
    pub service_account: Option<String>,
    /// Labels added to the child Job and its pods.
    pub labels: BTreeMap<String, String>,
    /// How long a pod may take to start (scheduling, image pull) before the step fails; 5
    /// minutes by default. The local runner starts processes at once and ignores it.
    pub start_timeout: Duration,
    /// The security context; [`SecurityProfile::Restricted`] by default.
    pub security: SecurityProfile,
}

impl ContainerJobSpec {
    /// The longest [`name`](Self::name): a Kubernetes name is at most 63 characters, and a
    /// backend needs room to append the job instance and step to it.
    pub const MAX_NAME_CHARS: usize = 40;
    /// The default [`start_timeout`](Self::start_timeout).
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(5 * 60);

    /// A spec named `name` that runs `image` with its own entrypoint, no environment, no
    /// volumes, no retries, no deadline and the restricted security profile.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        ContainerJobSpec {
            name: name.into(),
            image: image.into(),
            pull_policy: None,
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            volumes: Vec::new(),
            resources: Resources::default(),
            backoff_limit: 0,
            active_deadline: None,
            ttl_after_finished: None,
            service_account: None,
            labels: BTreeMap::new(),
            start_timeout: Self::DEFAULT_START_TIMEOUT,
            security: SecurityProfile::Restricted,
        }
    }

    /// Sets the image pull policy.
    pub fn pull_policy(mut self, policy: PullPolicy) -> Self {
        self.pull_policy = Some(policy);
        self
    }

    /// Replaces the command (entrypoint).
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: EnvValue) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value,
        });
        self
    }

    /// Adds an environment variable with a fixed value (in which `$(NAME)` references to
    /// earlier variables are expanded).
    pub fn env_literal(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env(name, EnvValue::Literal(value.into()))
    }

    /// Adds an environment variable whose value is the job parameter `parameter`, which must be
    /// set (step1 sets `FILENAME` from `jobFileLocation`).
    pub fn env_parameter(self, name: impl Into<String>, parameter: impl Into<String>) -> Self {
        self.env(name, EnvValue::JobParameter(parameter.into()))
    }

    /// Adds an environment variable whose value is the job parameter `parameter`, or `default`
    /// when it is not set.
    pub fn env_parameter_or(
        self,
        name: impl Into<String>,
        parameter: impl Into<String>,
        default: impl Into<String>,
    ) -> Self {
        self.env(
            name,
            EnvValue::JobParameterOr {
                parameter: parameter.into(),
                default: default.into(),
            },
        )
    }

    /// Mounts the persistent volume claim `claim_name` at `mount_path`.
    pub fn volume(mut self, claim_name: impl Into<String>, mount_path: impl Into<String>) -> Self {
        self.volumes.push(VolumeMount {
            claim_name: claim_name.into(),
            mount_path: mount_path.into(),
        });
        self
    }

    /// Sets the resource requests.
    pub fn requests(mut self, requests: ResourceList) -> Self {
        self.resources.requests = requests;
        self
    }

    /// Sets the resource limits.
    pub fn limits(mut self, limits: ResourceList) -> Self {
        self.resources.limits = limits;
        self
    }

    /// Sets how many times a failed run is retried.
    pub fn backoff_limit(mut self, retries: u32) -> Self {
        self.backoff_limit = retries;
        self
    }

    /// Sets the longest the container job may run, retries included.
    pub fn active_deadline(mut self, deadline: Duration) -> Self {
        self.active_deadline = Some(deadline);
        self
    }

    /// Sets how long a finished child Job is kept.
    pub fn ttl_after_finished(mut self, ttl: Duration) -> Self {
        self.ttl_after_finished = Some(ttl);
        self
    }

    /// Sets the service account the pod runs as.
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Adds a label to the child Job and its pods.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets how long a pod may take to start.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets the security profile.
    pub fn security(mut self, profile: SecurityProfile) -> Self {
        self.security = profile;
        self
    }

    /// Resolves the spec for one run: checks it, takes the environment's job-parameter values
    /// from `params`, expands `$(NAME)` references in literal values, the command and the
    /// arguments as Kubernetes does (an undefined reference is left as it is, `$$` is a literal
    /// `$`), and keeps the last value of a variable defined twice.
    ///
    /// # Errors
    /// [`SpecError`] when a required job parameter is not set or the spec is malformed (bad
    /// name, empty image, bad variable name, relative mount path).
    pub fn resolve(&self, params: &JobParameters) -> Result<ResolvedSpec, SpecError> {
        self.validate()?;
        let mut env: Vec<(String, String)> = Vec::with_capacity(self.env.len());
        for var in &self.env {
            let value = match &var.value {
                EnvValue::Literal(text) => expand_references(text, |name| lookup(&env, name)),
                EnvValue::JobParameter(parameter) => params
                    .get(parameter)
                    .map(|p| p.value.to_stored_string())
                    .ok_or_else(|| SpecError::MissingParameter {
                        job: self.name.clone(),
                        variable: var.name.clone(),
                        parameter: parameter.clone(),
                    })?,
                EnvValue::JobParameterOr { parameter, default } => params
                    .get(parameter)
                    .map_or_else(|| default.clone(), |p| p.value.to_stored_string()),
            };
            match env.iter_mut().find(|(name, _)| *name == var.name) {
                Some(existing) => existing.1 = value,
                None => env.push((var.name.clone(), value)),
            }
        }
        let expand_all = |items: &[String]| -> Vec<String> {
            items
                .iter()
                .map(|item| expand_references(item, |name| lookup(&env, name)))
                .collect()
        };
        let command = expand_all(&self.command);
        let args = expand_all(&self.args);
        Ok(ResolvedSpec {
            name: self.name.clone(),
            image: self.image.clone(),
            pull_policy: self.pull_policy,
            command,
            args,
            env,
            volumes: self.volumes.clone(),
            resources: self.resources.clone(),
            backoff_limit: self.backoff_limit,
            active_deadline: self.active_deadline,
            ttl_after_finished: self.ttl_after_finished,
            service_account: self.service_account.clone(),
            labels: self.labels.clone(),
            start_timeout: self.start_timeout,
            security: self.security,
        })
    }

    fn validate(&self) -> Result<(), SpecError> {
        let invalid = |reason: String| SpecError::Invalid {
            job: self.name.clone(),
            reason,
        };
        if let Err(reason) = check_name(&self.name) {
            return Err(invalid(format!("invalid name {:?}: {reason}", self.name)));
        }
        if self.image.trim().is_empty() {
            return Err(invalid("the image is empty".into()));
        }
        for var in &self.env {
            if !is_env_name(&var.name) {
                return Err(invalid(format!(
                    "invalid environment variable name {:?} (expected letters, digits, '_', \
                     '-' or '.', not starting with a digit)",
                    var.name
                )));
            }
        }
        for volume in &self.volumes {
            if volume.claim_name.trim().is_empty() {
                return Err(invalid(format!(
                    "the volume mounted at {:?} names no claim",
                    volume.mount_path
                )));
            }
            if !volume.mount_path.starts_with('/') {
                return Err(invalid(format!(
                    "the mount path {:?} of claim {:?} is not absolute",
                    volume.mount_path, volume.claim_name
                )));
            }
        }
        Ok(())
    }
}

/// A [`ContainerJobSpec`] resolved for one run: every value is final.
///
/// The environment holds the values themselves, job parameters included, and `$(NAME)`
/// references in the command and arguments are already expanded. A backend that hands these
/// strings to Kubernetes must escape them with [`kubernetes_escape`] so that the kubelet's own
/// expansion leaves them unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSpec {
    /// The container job's base name.
    pub name: String,
    /// The container image.
    pub image: String,
    /// The image pull policy, if set.
    pub pull_policy: Option<PullPolicy>,
    /// The expanded command.
    pub command: Vec<String>,
    /// The expanded arguments.
    pub args: Vec<String>,
    /// The environment as `(name, value)` pairs, in order, each name once.
    pub env: Vec<(String, String)>,
    /// Persistent volume claims to mount.
    pub volumes: Vec<VolumeMount>,
    /// CPU and memory requests and limits.
    pub resources: Resources,
    /// Retries of a failed run.
    pub backoff_limit: u32,
    /// The longest the container job may run, retries included.
    pub active_deadline: Option<Duration>,
    /// How long a finished child Job is kept.
    pub ttl_after_finished: Option<Duration>,
    /// The service account the pod runs as.
    pub service_account: Option<String>,
    /// Labels for the child Job and its pods.
    pub labels: BTreeMap<String, String>,
    /// How long a pod may take to start.
    pub start_timeout: Duration,
    /// The security context.
    pub security: SecurityProfile,
}

impl ResolvedSpec {
    /// The value of the environment variable `name`, if defined.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        lookup(&self.env, name)
    }

    /// The command line as the local runner sees it: `command` followed by `args`.
    pub fn command_line(&self) -> impl Iterator<Item = &str> {
        self.command.iter().chain(&self.args).map(String::as_str)
    }
}

/// Why a spec cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// An environment variable takes its value from a job parameter that is not set.
    #[error(
        "container job {job}: environment variable {variable} takes its value from job \
         parameter '{parameter}', which is not set"
    )]
    MissingParameter {
        /// The container job's name.
        job: String,
        /// The environment variable.
        variable: String,
        /// The missing job parameter.
        parameter: String,
    },
    /// The spec is malformed.
    #[error("container job {job}: {reason}")]
    Invalid {
        /// The container job's name.
        job: String,
        /// What is wrong.
        reason: String,
    },
}

/// Expands `$(NAME)` references in `input` as Kubernetes expands them in a container's command,
/// arguments and environment: `$(NAME)` becomes `lookup(NAME)` when that is defined and stays as
/// it is otherwise, `$$` becomes `$`, and any other `$` (including an unclosed `$(`) is kept.
pub fn expand_references<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    cursor += 2;
                }
                b'(' => match input[cursor + 2..].find(')') {
                    Some(length) => {
                        let name = &input[cursor + 2..cursor + 2 + length];
                        match lookup(name) {
                            Some(value) => out.push_str(value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        cursor += length + 3;
                    }
                    None => {
                        out.push_str("$(");
                        cursor += 2;
                    }
                },
                _ => {
                    out.push('$');
                    cursor += 1;
                }
            }
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// `text` with every `$` doubled, so that Kubernetes' expansion of `$(NAME)` references turns it
/// back into `text` exactly. Backends apply it to every resolved value they send to a cluster.
pub fn kubernetes_escape(text: &str) -> String {
    text.replace('$', "$$")
}

fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Checks a DNS-1123 label of at most [`ContainerJobSpec::MAX_NAME_CHARS`] characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > ContainerJobSpec::MAX_NAME_CHARS {
        return Err(format!(
            "it is longer than {} characters",
            ContainerJobSpec::MAX_NAME_CHARS
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !name.chars().all(allowed) || name.starts_with('-') || name.ends_with('-') {
        return Err(
            "expected lower-case letters, digits and '-', starting and ending with a letter or \
             digit"
                .into(),
        );
    }
    Ok(())
}

/// Kubernetes' (pre-1.30) rule for environment variable names: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    match chars.next() {
        Some(first) if part(first) && !first.is_ascii_digit() => chars.all(part),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use batch_core::job::parameters::JobParameter;

    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = [("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")];
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(EMPTY)x", "x"),
            ("$()", "$()"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("echo $HOME $1", "echo $HOME $1"),
            ("trailing $", "trailing $"),
            ("$", "$"),
            ("$$", "$"),
            ("(VAR_A)", "(VAR_A)"),
            ("$(VAR_A)$(VAR_A", "A$(VAR_A"),
            ("é$(VAR_A)ü$ü", "éAü$ü"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(expand_references(input, env_of(&vars)), expected, "{input}");
        }
    }

    #[test]
    fn escaping_survives_expansion() {
        let vars = [("X", "expanded")];
        for text in ["$(X)", "a$$b", "$", "plain", "$(X", "$$(X)"] {
            let escaped = kubernetes_escape(text);
            assert_eq!(expand_references(&escaped, env_of(&vars)), text);
        }
    }

    fn seed_spec() -> ContainerJobSpec {
        ContainerJobSpec::new("generate-csv", "csv2db:latest")
            .command(["csv2db", "generate-people"])
            .args(["--count", "$(COUNT)", "--out", "$(FILENAME)"])
            .env_parameter("FILENAME", "jobFileLocation")
            .env_parameter_or("COUNT", "count", "10")
            .env_literal("COPY", "$(FILENAME).bak")
            .volume("spring-batch-claim", "/test")
    }

    #[test]
    fn resolves_parameters_and_expands() {
        let params = JobParameters::new()
            .with(
                "jobFileLocation",
                JobParameter::string("/test/my$(X)file.csv"),
            )
            .with("count", JobParameter::long(25));
        let resolved = seed_spec().resolve(&params).expect("resolves");
        assert_eq!(
            resolved.env,
            vec![
                ("FILENAME".to_string(), "/test/my$(X)file.csv".to_string()),
                ("COUNT".to_string(), "25".to_string()),
                ("COPY".to_string(), "/test/my$(X)file.csv.bak".to_string()),
            ]
        );
        assert_eq!(resolved.command, ["csv2db", "generate-people"]);
        assert_eq!(
            resolved.args,
            ["--count", "25", "--out", "/test/my$(X)file.csv"]
        );
        assert_eq!(resolved.env_value("COUNT"), Some("25"));
        assert_eq!(resolved.command_line().count(), 6);
        assert_eq!(resolved.security, SecurityProfile::Restricted);
        assert_eq!(resolved.backoff_limit, 0);
        assert_eq!(resolved.start_timeout, Duration::from_secs(300));

        let defaulted = seed_spec()
            .resolve(&JobParameters::new().with("jobFileLocation", JobParameter::string("f")))
            .expect("resolves");
        assert_eq!(defaulted.env_value("COUNT"), Some("10"));
    }

    #[test]
    fn later_definitions_win_and_see_earlier_ones() {
        let spec = ContainerJobSpec::new("x", "img")
            .env_literal("A", "1")
            .env_literal("B", "$(A)")
            .env_literal("A", "$(A)2")
            .arg("$(A)-$(B)");
        let resolved = spec.resolve(&JobParameters::new()).expect("resolves");
        assert_eq!(
            resolved.env,
            vec![
                ("A".to_string(), "12".to_string()),
                ("B".to_string(), "1".to_string())
            ]
        );
        assert_eq!(resolved.args, ["12-1"]);
    }

    #[test]
    fn missing_parameter_is_named() {
        let error = seed_spec().resolve(&JobParameters::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "container job generate-csv: environment variable FILENAME takes its value from job \
             parameter 'jobFileLocation', which is not set"
        );
    }

    #[test]
    fn malformed_specs_are_refused() {
        let params = JobParameters::new();
        let message = |spec: ContainerJobSpec| spec.resolve(&params).unwrap_err().to_string();
        assert!(message(ContainerJobSpec::new("Generate_CSV", "i")).contains("invalid name"));
        assert!(message(ContainerJobSpec::new("", "i")).contains("it is empty"));
        assert!(message(ContainerJobSpec::new("-a", "i")).contains("invalid name"));
        assert!(message(ContainerJobSpec::new("a".repeat(41), "i")).contains("longer than 40"));
        assert!(message(ContainerJobSpec::new("a", " ")).contains("image is empty"));
        assert!(
            message(ContainerJobSpec::new("a", "i").env_literal("1X", "v"))
                .contains("invalid environment variable name \"1X\"")
        );
        assert!(
            message(ContainerJobSpec::new("a", "i").env_literal("A=B", "v"))
                .contains("invalid environment variable name")
        );
        assert!(
            message(ContainerJobSpec::new("a", "i").volume("claim", "test"))
                .contains("is not absolute")
        );
        assert!(message(ContainerJobSpec::new("a", "i").volume("", "/test")).contains("no claim"));
        assert!(
            ContainerJobSpec::new("a-1", "i")
                .env_literal("my.var-1", "v")
                .env_literal("_X", "v")
                .resolve(&params)
                .is_ok()
        );
    }

    #[test]
    fn builder_sets_every_field() {
        let spec = ContainerJobSpec::new("job", "img")
            .pull_policy(PullPolicy::Always)
            .requests(ResourceList::new().cpu("300m").memory("512Mi"))
            .limits(ResourceList::new().memory("1Gi"))
            .backoff_limit(2)
            .active_deadline(Duration::from_secs(60))
            .ttl_after_finished(Duration::from_secs(3600))
            .service_account("csv2db")
            .label("app", "csv2db")
            .start_timeout(Duration::from_secs(30))
            .security(SecurityProfile::ClusterDefault);
        assert_eq!(spec.pull_policy.map(PullPolicy::as_str), Some("Always"));
        assert_eq!(spec.resources.requests.cpu.as_deref(), Some("300m"));
        assert!(spec.resources.limits.cpu.is_none());
        assert!(!spec.resources.limits.is_empty());
        assert_eq!(spec.backoff_limit, 2);
        assert_eq!(spec.active_deadline, Some(Duration::from_secs(60)));
        assert_eq!(spec.ttl_after_finished, Some(Duration::from_secs(3600)));
        assert_eq!(spec.service_account.as_deref(), Some("csv2db"));
        assert_eq!(spec.labels.get("app").map(String::as_str), Some("csv2db"));
        assert_eq!(spec.start_timeout, Duration::from_secs(30));
        assert_eq!(spec.security, SecurityProfile::ClusterDefault);
        let resolved = spec.resolve(&JobParameters::new()).expect("resolves");
        assert_eq!(resolved.labels, spec.labels);
        assert_eq!(resolved.resources, spec.resources);
    }
}
