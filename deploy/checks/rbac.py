"""The least-privilege RBAC of deploy/, asserted over the rendered manifests (scripts/check-deploy).

    python rbac.py --launcher-job JOB.json [--secrets FILE] NAME=RENDERED.yaml ...

Each rendering (kubectl kustomize of deploy/base and of each overlay) must hold
  - exactly one Role, csv2db-launcher, granting exactly EXPECTED below: no other resource,
    verb or API group, no wildcard, no resourceNames or nonResourceURLs;
  - exactly one RoleBinding, csv2db-launcher, binding that Role (kind Role, not ClusterRole)
    to the ServiceAccount csv2db-launcher of the binding's own namespace (`batch` in the base,
    which sets none), and that ServiceAccount;
  - no ClusterRole and no ClusterRoleBinding.
The launcher Job must run as that ServiceAccount and use only ConfigMaps and claims that the
base defines, and Secrets that a rendering or --secrets (deploy/base/secret.example.yaml) defines.
Prints one summary line, or every violation, and exits 1 on any.
"""

import argparse
import json
import sys

import yaml

NAME = "csv2db-launcher"
BASE_SUBJECT_NAMESPACE = "batch"
EXPECTED = {
    ("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "delete")
} | {("", "pods", verb) for verb in ("get", "list", "watch")} | {("", "pods/log", "get")}
RULE_KEYS = {"apiGroups", "resources", "verbs"}


def grant(g):
    group, resource, verb = g
    return f"{verb} {resource}" + (f".{group}" if group else "")


def check_rendering(label, docs, problems):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)

    for kind in ("ClusterRole", "ClusterRoleBinding"):
        for d in by_kind.get(kind, []):
            problems.append(f"{label}: {kind} {d['metadata']['name']} (only a namespaced Role is allowed)")

    def exactly_one(kind):
        found = by_kind.get(kind, [])
        names = [d["metadata"]["name"] for d in found]
        if names != [NAME]:
            problems.append(f"{label}: expected exactly one {kind} {NAME}, found {names or 'none'}")
        return found

    roles = exactly_one("Role")
    for role in roles:
        rname = role["metadata"]["name"]
        granted = set()
        for i, rule in enumerate(role.get("rules") or []):
            extra = set(rule) - RULE_KEYS
            if extra:
                problems.append(f"{label}: Role {rname} rule {i + 1} has {sorted(extra)}; only {sorted(RULE_KEYS)} are allowed")
            for key in ("apiGroups", "resources", "verbs"):
                if "*" in (rule.get(key) or []):
                    problems.append(f"{label}: Role {rname} rule {i + 1} has a wildcard in {key}")
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        granted.add((group, resource, verb))
        for g in sorted(granted - EXPECTED):
            problems.append(f"{label}: Role {rname} grants `{grant(g)}`, which the launcher does not need")
        if rname == NAME:
            for g in sorted(EXPECTED - granted):
                problems.append(f"{label}: Role {rname} lacks `{grant(g)}`, which the launcher needs")

    bindings = exactly_one("RoleBinding")
    for b in bindings:
        bname = b["metadata"]["name"]
        ref = b.get("roleRef") or {}
        want_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}
        if ref != want_ref:
            problems.append(f"{label}: RoleBinding {bname} refers to {ref}, expected {want_ref}")
        namespace = b["metadata"].get("namespace") or BASE_SUBJECT_NAMESPACE
        want_subjects = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
        if b.get("subjects") != want_subjects:
            problems.append(f"{label}: RoleBinding {bname} binds {b.get('subjects')}, expected {want_subjects}")

    accounts = [a["metadata"]["name"] for a in by_kind.get("ServiceAccount", [])]
    if NAME not in accounts:
        problems.append(f"{label}: no ServiceAccount {NAME}")
    return by_kind


def names(by_kind, kind):
    return {d["metadata"]["name"] for d in by_kind.get(kind, [])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher-job", required=True)
    parser.add_argument("--secrets", action="append", default=[])
    parser.add_argument("renderings", nargs="+", metavar="NAME=FILE")
    args = parser.parse_args()

    problems = []
    rendered = {}
    for item in args.renderings:
        label, _, path = item.partition("=")
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        rendered[label] = check_rendering(label, docs, problems)

    base = rendered.get("deploy/base") or next(iter(rendered.values()))
    secrets = set()
    for by_kind in rendered.values():
        secrets |= names(by_kind, "Secret")
    for path in args.secrets:
        with open(path, encoding="utf-8") as f:
            secrets |= {d["metadata"]["name"] for d in yaml.safe_load_all(f) if d and d.get("kind") == "Secret"}

    with open(args.launcher_job, encoding="utf-8") as f:
        job = json.load(f)
    pod = job["spec"]["template"]["spec"]
    label = "launcher Job"
    if pod.get("serviceAccountName") != NAME:
        problems.append(f"{label}: runs as {pod.get('serviceAccountName')!r}, expected {NAME}")
    for v in pod.get("volumes") or []:
        if "configMap" in v and v["configMap"]["name"] not in names(base, "ConfigMap"):
            problems.append(f"{label}: mounts ConfigMap {v['configMap']['name']}, which deploy/base does not define")
        if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in names(base, "PersistentVolumeClaim"):
            problems.append(f"{label}: mounts claim {v['persistentVolumeClaim']['claimName']}, which deploy/base does not define")
        if "secret" in v and v["secret"]["secretName"] not in secrets:
            problems.append(f"{label}: mounts Secret {v['secret']['secretName']}, which deploy/ does not define")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["name"] not in secrets:
                problems.append(f"{label}: reads Secret {ref['name']} ({e['name']}), which deploy/ does not define")

    if problems:
        for p in problems:
            print(f"  {p}")
        return 1
    print(
        f"Role {NAME} grants exactly {len(EXPECTED)} verb/resource pairs in "
        f"{len(rendered)} renderings, no ClusterRole; the launcher Job's references exist"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
