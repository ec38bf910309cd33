//! `kubectl` against a test cluster's namespace, for end-to-end tests that act as an operator.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Runs `kubectl --kubeconfig <kubeconfig> --namespace <namespace> ...`.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The cluster's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The namespace every command works in.
    pub namespace: String,
}

impl Kubectl {
    /// Runs kubectl with `args`, writing `stdin` (if any) to its standard input.
    ///
    /// # Panics
    /// When kubectl cannot be run.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut input = child.stdin.take().expect("kubectl's stdin");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("write kubectl's input");
        drop(input);
        child.wait_with_output().expect("kubectl's output")
    }

    /// Runs kubectl, which must succeed; returns its standard output.
    ///
    /// # Panics
    /// When kubectl fails.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
