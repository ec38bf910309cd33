"""Applies deploy/checks/checkov-waivers.yaml to a checkov JSON report (scripts/check-deploy).

    python checkov_gate.py REPORT.json WAIVERS.yaml ARTIFACT...

Fails (exit 1) when
  - a check failed on an artifact and no waiver names that check for that artifact;
  - a waiver matched no failed check (it is stale: remove it);
  - a waiver has no reason, or names an artifact that is not scanned;
  - checkov could not parse a file, or scanned none of an artifact's contents.
Prints one summary line on success, the offending findings on failure.
"""

import json
import sys
from collections import defaultdict

import yaml


def reports(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    # One framework with results: an object; several: a list; none: a bare summary.
    if isinstance(data, dict):
        data = [data] if "check_type" in data else []
    return data


def artifact_of(result):
    return result["file_path"].lstrip("/")


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    report_path, waivers_path, artifacts = argv[1], argv[2], argv[3:]
    problems = []

    with open(waivers_path, encoding="utf-8") as f:
        waivers = (yaml.safe_load(f) or {}).get("waivers") or []
    waived = {}
    for i, w in enumerate(waivers):
        check, artifact, reason = w.get("check"), w.get("artifact"), w.get("reason")
        where = f"{waivers_path}: waiver #{i + 1} ({check} on {artifact})"
        if not check or not artifact:
            problems.append(f"{where}: needs `check` and `artifact`")
            continue
        if not (reason or "").strip():
            problems.append(f"{where}: has no reason")
        if artifact not in artifacts:
            problems.append(f"{where}: `{artifact}` is not a scanned artifact ({', '.join(artifacts)})")
        if (check, artifact) in waived:
            problems.append(f"{where}: duplicate")
        waived[(check, artifact)] = reason

    seen = defaultdict(int)  # artifact -> results of any kind
    used = set()
    unwaived = []
    counts = defaultdict(int)
    for report in reports(report_path):
        summary = report.get("summary", {})
        if summary.get("parsing_errors"):
            problems.append(
                f"checkov could not parse {summary['parsing_errors']} file(s) "
                f"({report.get('check_type')}): "
                + ", ".join(report.get("results", {}).get("parsing_errors", []) or ["?"])
            )
        results = report.get("results", {})
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for r in results.get(kind, []):
                seen[artifact_of(r)] += 1
        counts["passed"] += len(results.get("passed_checks", []))
        counts["skipped inline"] += len(results.get("skipped_checks", []))
        for r in results.get("failed_checks", []):
            key = (r["check_id"], artifact_of(r))
            if key in waived:
                used.add(key)
                counts["waived"] += 1
            else:
                unwaived.append(r)

    for artifact in artifacts:
        if not seen.get(artifact):
            problems.append(f"checkov ran no check on {artifact} (not parsed?)")
    for key in sorted(set(waived) - used):
        problems.append(
            f"stale waiver: {key[0]} on {key[1]} no longer fails; remove it from {waivers_path}"
        )
    for r in unwaived:
        lines = r.get("file_line_range") or ["?", "?"]
        problems.append(
            f"{r['check_id']} {r.get('check_name', '')!r} failed for {r['resource']} "
            f"in {artifact_of(r)} (lines {lines[0]}-{lines[1]}): fix it, or waive it in "
            f"{waivers_path} with the reason"
        )

    if problems:
        for p in problems:
            print(f"  {p}")
        return 1
    print(
        f"{counts['passed']} passed, 0 unwaived, {counts['waived']} waived "
        f"({len(waived)} waivers), {counts['skipped inline']} skipped inline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
