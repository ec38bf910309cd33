//! Why the Kubernetes backend could not run a container job, and the 403 message.

use batch_core::step::BoxError;

use crate::runner::RunnerError;

/// Where the least-privilege Role for the launcher lives in the repository.
pub const ROLE_PATH: &str = "deploy/base/role.yaml";

/// Why the Kubernetes backend could not run (or keep following) a container job. It reaches
/// the step as [`RunnerError::Other`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// No usable cluster configuration (no kubeconfig, not in a cluster, bad credentials).
    #[error("cannot configure the Kubernetes client: {source}")]
    Config {
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The API server answered 403 Forbidden: the launcher's service account lacks a right the
    /// Role in [`ROLE_PATH`] grants.
    #[error(
        "Kubernetes refused to let {account} {verb} {resource} in namespace {namespace} \
         (403 Forbidden): grant it the Role in {ROLE_PATH} (kubectl apply -k deploy/base/). \
         The API server said: {message}"
    )]
    Forbidden {
        /// Who was refused: `service account NS:NAME`, `user NAME`, or `the launcher's
        /// service account` when the API server did not say.
        account: String,
        /// The refused verb: `create`, `get`, `list`, `watch` or `delete`.
        verb: &'static str,
        /// The refused resource: `jobs.batch`, `pods` or `pods/log`.
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// The API server's own message.
        message: String,
    },
    /// Any other failed API call.
    #[error("cannot {verb} {resource} {name} in namespace {namespace}: {source}")]
    Api {
        /// The verb.
        verb: &'static str,
        /// The resource.
        resource: &'static str,
        /// The object's name (or selector).
        name: String,
        /// The namespace.
        namespace: String,
        /// The client's error.
        #[source]
        source: Box<::kube::Error>,
    },
    /// The child Job kept being deleted and re-created by someone else while the runner tried
    /// to adopt or create it.
    #[error(
        "the child Job {name} in namespace {namespace} kept being deleted and re-created by \
         someone else"
    )]
    Unsettled {
        /// The child Job's name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// A child Job that had to be deleted before a new one could be created is still there.
    #[error(
        "the child Job {name} in namespace {namespace} was deleted but is still there after \
         {seconds} s"
    )]
    DeletionTimeout {
        /// The child Job's name.
        name: String,
        /// The namespace.
        namespace: String,
        /// How long it was waited for.
        seconds: u64,
    },
}

impl From<KubeError> for RunnerError {
    fn from(error: KubeError) -> Self {
        RunnerError::Other(Box::new(error))
    }
}

/// Who a 403 message says was refused: `service account NS:NAME` for
/// `User "system:serviceaccount:NS:NAME"`, `user NAME` for another user, or `None`.
pub fn refused_account(message: &str) -> Option<String> {
    let start = message.find("User \"")? + "User \"".len();
    let rest = &message[start..];
    let user = &rest[..rest.find('"')?];
    if user.is_empty() {
        return None;
    }
    Some(match user.strip_prefix("system:serviceaccount:") {
        Some(account) => format!("service account {account}"),
        None => format!("user {user}"),
    })
}

/// The status of an API error, if the error is one.
pub(crate) fn status_of(error: &::kube::Error) -> Option<&::kube::core::Status> {
    match error {
        ::kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

/// True for a 403 Forbidden answer.
pub(crate) fn is_forbidden(error: &::kube::Error) -> bool {
    status_of(error).is_some_and(|s| s.code == 403 || s.reason == "Forbidden")
}

/// True for a 404 Not Found answer.
pub(crate) fn is_not_found(error: &::kube::Error) -> bool {
    status_of(error).is_some_and(|s| s.code == 404 || s.reason == "NotFound")
}

/// True for a 409 AlreadyExists answer (to a create).
pub(crate) fn is_already_exists(error: &::kube::Error) -> bool {
    status_of(error).is_some_and(|s| s.code == 409 || s.reason == "AlreadyExists")
}

/// True for a 409 Conflict (a failed precondition).
pub(crate) fn is_conflict(error: &::kube::Error) -> bool {
    status_of(error).is_some_and(|s| s.code == 409)
}

/// True for a 410 Gone answer (a resource version too old to watch from).
pub(crate) fn is_gone(error: &::kube::Error) -> bool {
    status_of(error).is_some_and(|s| s.code == 410 || s.reason == "Expired" || s.reason == "Gone")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_from_messages() {
        let seed = "User \"system:serviceaccount:batch:default\" cannot watch jobs.batch in the \
                    namespace \"batch\": User \"system:serviceaccount:batch:default\" cannot watch \
                    jobs.batch in project \"batch\"";
        assert_eq!(
            refused_account(seed).as_deref(),
            Some("service account batch:default")
        );
        let modern = "jobs.batch is forbidden: User \"alice\" cannot create resource \"jobs\" in \
                      API group \"batch\" in the namespace \"x\"";
        assert_eq!(refused_account(modern).as_deref(), Some("user alice"));
        assert_eq!(refused_account("forbidden"), None);
        assert_eq!(refused_account("User \""), None);
    }

    #[test]
    fn forbidden_message_reads_well() {
        let error = KubeError::Forbidden {
            account: "service account batch:default".into(),
            verb: "watch",
            resource: "jobs.batch",
            namespace: "batch".into(),
            message: "no".into(),
        };
        assert_eq!(
            error.to_string(),
            "Kubernetes refused to let service account batch:default watch jobs.batch in \
             namespace batch (403 Forbidden): grant it the Role in deploy/base/role.yaml \
             (kubectl apply -k deploy/base/). The API server said: no"
        );
    }
}
