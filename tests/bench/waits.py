"""API requests per wait of site.yml at the twin's durations x1 and x10: a wait that watches costs the same.

``python -m tests.bench.waits`` starts a twin (default profile) with the profile's simulated durations
(``timings``: reboots, pod starts, CSV installs, CC-mode switches, NFD relabelling) as shipped, runs
``playbooks/site.yml`` against it the way ``scripts/demo.sh`` does, takes it down, and does the same
again with every duration ten times longer. A callback (``callback_plugins/task_windows.py``) writes
each task's action and time window; every request of the playbook's user (``admin``) in the twin's
audit log is put on the task whose window holds its ``requestReceivedTimestamp``.

Printed per wait of site.yml (machine_config_pool_wait, kata_config_wait, gpu_operator_wait,
gpu_cc_mode, olm_operator, wait_for_nodes; every task of that module added up): the requests and the
seconds at x1 and at x10, and the ratio of the requests x10/x1. A wait that lists once and then follows
the watch makes about as many requests however long the wait lasts (ratio ~1); one that reads again
on a timer or per event grows with the time. Discovery requests are not in the twin's audit log.

``--scales 1,10`` picks the factors; ``--json FILE`` also writes the numbers (``--scales 1 --json a`` and
``--scales 10 --json b`` in two processes run side by side; ``--combine a b`` prints their table). Exits non-zero when a
run failed or a wait's ratio is above ``--max-ratio`` (default 2).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from twin import profile as profiles  # noqa: E402
from twin.audit import AuditLog  # noqa: E402
from twin.cluster import Cluster  # noqa: E402

WAITS = ("machine_config_pool_wait", "kata_config_wait", "gpu_operator_wait", "gpu_cc_mode", "olm_operator",
         "wait_for_nodes")
USER = "admin"


def _epoch(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_site(cluster, tmp, log, extra_vars=None):
    """site.yml against the cluster as scripts/demo.sh runs it; returns (returncode, seconds, windows path)."""
    state = str(cluster.state)
    python = sys.executable

    def twin_cli(*argv):
        return subprocess.run([python, "-m", "twin", "--state-dir", state, *argv], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()

    kbs = twin_cli("resolve", "kbs-trustee-operator-system")
    tee = subprocess.run([python, "-m", "twin.tee", "tee", "--profile", "default"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    values = Path(tmp) / "reference-values.json"
    values.write_text(subprocess.run([python, "-m", "twin.tee", "reference-values", "--profile", "default",
                                      "--kernel-cmdline-extra", "agent.guest_components_rest_api=all"], cwd=REPO,
                                     capture_output=True, text=True, check=True).stdout)
    windows = Path(tmp) / "windows.jsonl"
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"),
               ANSIBLE_HOME=str(REPO / "build" / "ansible-home"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=python, ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).resolve().parent / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_windows", CGPU_TASK_WINDOWS=str(windows))
    extra = {"trustee_kbs_resolve": [kbs], "site_report_dir": str(Path(tmp) / "report"), "trustee_tee": tee,
             "trustee_reference_values_sources": [str(values)]}
    extra.update(extra_vars or {})
    started = time.time()
    proc = subprocess.run([str(Path(python).parent / "ansible-playbook"), "-i", "localhost,",
                           str(REPO / "playbooks" / "site.yml"), "-e", "@" + str(REPO / "scripts" / "demo-vars.yml"),
                           "-e", json.dumps(extra)], env=env, cwd=REPO, capture_output=True, text=True, timeout=3600,
                          check=False)
    seconds = time.time() - started
    (Path(tmp) / "site.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        log(f"site.yml failed (rc {proc.returncode}); tail:\n{proc.stdout[-3000:]}\n{proc.stderr[-1500:]}")
    return proc.returncode, seconds, windows


def per_wait(events, windows):
    """{wait: {"requests", "seconds", "tasks", "by_verb"}} from the audit events and the task windows."""
    tasks = [json.loads(line) for line in windows.read_text().splitlines() if line.strip()] if windows.exists() else []
    out = {w: {"requests": 0, "seconds": 0.0, "tasks": 0, "by_verb": {}} for w in WAITS}
    mine = []
    for task in tasks:
        wait = next((w for w in WAITS if task["action"].split(".")[-1] == w), None)
        if wait is None or task["status"] == "skipped":
            continue
        out[wait]["tasks"] += 1
        out[wait]["seconds"] += task["end"] - task["start"]
        mine.append((task["start"], task["end"], wait))
    for event in events:
        if event.get("user", {}).get("username") != USER:
            continue
        at = _epoch(event["requestReceivedTimestamp"])
        wait = next((w for start, end, w in mine if start <= at <= end), None)
        if wait is not None:
            out[wait]["requests"] += 1
            verbs = out[wait]["by_verb"]
            verbs[event["verb"]] = verbs.get(event["verb"], 0) + 1
    return out


def measure(scale, log, extra_vars=None):
    spec = profiles.load("default")
    spec["timings"] = {k: v * scale for k, v in spec["timings"].items()}
    with tempfile.TemporaryDirectory(prefix=f"bench-waits-x{scale}-") as tmp:
        cluster = Cluster(f"bench-waits-x{scale}", Path(tmp) / "state")
        cluster.up(spec, log=lambda msg: None)
        try:
            audit = AuditLog(cluster.state / "logs" / "audit.log")
            start = audit.offset()
            rc, seconds, windows = run_site(cluster, tmp, log, extra_vars)
            # A watch is logged when it ends; a module's ends with its process, a moment after its task.
            time.sleep(3)
            result = per_wait(audit.events(start), windows)
        finally:
            cluster.down()
    return {"rc": rc, "seconds": round(seconds, 1), "waits": result}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.waits", description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10", help="duration factors, comma-separated (default 1,10)")
    parser.add_argument("--max-ratio", type=float, default=2.0)
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--combine", nargs="+", metavar="JSON", help="print the table of runs written by --json")
    parser.add_argument("--extra-vars", default="{}", help="JSON of more variables for site.yml (e.g. a shorter "
                        "trustee_wait_timeout where the twin's attestation engine is not built yet)")
    args = parser.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.combine:
        runs = {}
        for name in args.combine:
            runs.update({int(k): v for k, v in json.loads(Path(name).read_text()).items()})
        scales = sorted(runs)
    else:
        runs = {}
        for scale in scales:
            log(f"bench: site.yml at durations x{scale} ...")
            runs[scale] = measure(scale, log, json.loads(args.extra_vars))
            log(f"bench: x{scale} done in {runs[scale]['seconds']} s (rc {runs[scale]['rc']})")
        if args.json:
            Path(args.json).write_text(json.dumps(runs, indent=2, sort_keys=True))
    worst = table(runs, scales)
    failed = [s for s in scales if runs[s]["rc"] != 0]
    return 1 if failed or worst > args.max_ratio else 0


def table(runs, scales):
    """Print the requests per wait at each scale and the ratio of the last to the first; returns the worst ratio."""
    low, high = scales[0], scales[-1]
    print(f"Requests per wait of site.yml (user {USER}, from the twin's audit log), twin durations "
          + " and ".join(f"x{s}" for s in scales) + ":")
    head = "".join(f"  {'x' + str(s) + ' req':>8} {'s':>6}" for s in scales)
    print(f"  {'wait':26s} {'tasks':>5}{head}  ratio x{high}/x{low}")
    worst = 0.0
    for wait in WAITS:
        row = [runs[s]["waits"][wait] for s in scales]
        ratio = row[-1]["requests"] / row[0]["requests"] if row[0]["requests"] else float("nan")
        if row[0]["requests"]:
            worst = max(worst, ratio)
        cells = "".join(f"  {r['requests']:8d} {r['seconds']:6.1f}" for r in row)
        print(f"  {wait:26s} {row[0]['tasks']:5d}{cells}  {ratio:8.2f}")
    for s in scales:
        verbs = {w: runs[s]["waits"][w]["by_verb"] for w in WAITS}
        print(f"  x{s}: site.yml {runs[s]['seconds']} s, rc {runs[s]['rc']}; by verb {json.dumps(verbs, sort_keys=True)}")
    print(f"  worst ratio x{high}/x{low}: {worst:.2f} (goal about 1: requests grow with events, not with time)")
    return worst


if __name__ == "__main__":
    sys.exit(main())
