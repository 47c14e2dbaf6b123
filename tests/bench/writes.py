"""Write requests of site.yml: a first run, the re-run that has nothing to do, and ``--check --diff`` on a fresh twin.

``python -m tests.bench.writes`` starts a twin (default profile), runs ``playbooks/site.yml`` against it the
way ``scripts/demo.sh`` does, runs it again unchanged with ``site_prove=false`` (the bring-up alone), then once
more with the proof (whose pods are its writes), takes the twin down, starts a fresh one and runs
``site.yml --check --diff`` there. Every request of the playbook's user (``admin``) is read from the
twin's audit log (``twin/audit.py``); a write is a create, update, patch, delete or deletecollection that
is not a server-side dry run (``dryRun=All``, which the API server validates and then discards).

Printed per run: the wall time, the requests, the writes, and every write as ``verb resource name``
(with the response code), so a regression names itself. The goals (issue 14): the re-run and the
check run write nothing, and the re-run takes at most 25 s. The re-run with the proof has no goal: its writes are
listed so that one outside the proof's pods, secret and restored Trustee values shows.

``--skip-check`` / ``--skip-rerun`` leave out a part; ``--json FILE`` also writes the numbers. Exits
non-zero when a run failed or a goal is missed.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from twin.audit import AuditLog, Window  # noqa: E402

USER = "admin"
RERUN_GOAL_S = 25.0
PROFILE = "default"
PROBE_NAMESPACE = "confidential-gpu-probe"


def is_dry_run(event):
    """A server-side dry run: validated and admitted, never stored."""
    return "dryRun=All" in event.get("requestURI", "")


def real_writes(events, user=USER):
    """The audit events of ``user`` that changed something (or tried to): writes that are not dry runs."""
    return [e for e in events if e.get("user", {}).get("username") == user
            and e["verb"] in Window.WRITE_VERBS and not is_dry_run(e)
            and (e.get("objectRef") or {}).get("resource") not in Window.REVIEWS]  # reviews store nothing


def describe(event):
    """``verb resource[/sub] namespace/name (code)`` of one audit event."""
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
    name = ref.get("name") or "(new)"
    where = "{0}/{1}".format(ref["namespace"], name) if ref.get("namespace") else name
    return "{0} {1} {2} ({3})".format(event["verb"], resource, where, event.get("responseStatus", {}).get("code"))


def probe_namespace_left(kube):
    """Whether the node probe's namespace exists (check mode must not create it)."""
    from twin.kube import path

    return kube.get_or_none(path("v1", "namespaces", PROBE_NAMESPACE)) is not None


def site_command(cluster, tmp, check=False, extra_vars=None, installed=None, playbook="site"):
    """ansible-playbook site.yml (or another of playbooks/) with scripts/demo.sh's variables, and its environment.

    From this checkout, or, given ``installed`` (a collections path holding the built collection), as
    scripts/demo.sh runs it: ``confidential.gpu.site`` by its FQCN from that path alone."""
    python = sys.executable
    state = str(cluster.state)
    kbs = subprocess.run([python, "-m", "twin", "--state-dir", state, "resolve", "kbs-trustee-operator-system"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    tee = subprocess.run([python, "-m", "twin.tee", "tee", "--profile", PROFILE], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    values = Path(tmp) / "reference-values.json"
    values.write_text(subprocess.run([python, "-m", "twin.tee", "reference-values", "--profile", PROFILE,
                                      "--kernel-cmdline-extra", "agent.guest_components_rest_api=all"], cwd=REPO,
                                     capture_output=True, text=True, check=True).stdout)
    extra = {"trustee_kbs_resolve": [kbs], "site_report_dir": str(Path(tmp) / "report"), "trustee_tee": tee,
             "trustee_reference_values_sources": [str(values)]}
    extra.update(extra_vars or {})
    playbook = "confidential.gpu." + playbook if installed else str(REPO / "playbooks" / (playbook + ".yml"))
    cmd = [str(Path(python).parent / "ansible-playbook"), "-i", "localhost,", playbook,
           "-e", "@" + str(REPO / "scripts" / "demo-vars.yml"), "-e", json.dumps(extra)]
    if check:
        cmd += ["--check", "--diff"]
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ANSIBLE_COLLECTIONS_PATH=str(installed or REPO / "build" / "collections"),
               ANSIBLE_HOME=str(REPO / "build" / "ansible-home"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=python, ANSIBLE_NOCOLOR="1")
    return cmd, env


def run_site(cluster, tmp, what, check=False, log=print, extra_vars=None):
    """One site.yml run: {rc, seconds, requests, writes (described), output tail}, from the audit log."""
    audit = AuditLog(cluster.state / "logs" / "audit.log")
    cmd, env = site_command(cluster, tmp, check=check, extra_vars=extra_vars)
    start = audit.offset()
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
    seconds = time.monotonic() - started
    (Path(tmp) / f"{what}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        log(f"{what}: site.yml failed (rc {proc.returncode}); tail:\n{proc.stdout[-3000:]}\n{proc.stderr[-1500:]}")
    # A watch is logged when it ends, a moment after the module's process does.
    time.sleep(2)
    events = [e for e in audit.events(start) if e.get("user", {}).get("username") == USER]
    writes = real_writes(events)
    return {"rc": proc.returncode, "seconds": round(seconds, 1), "requests": len(events),
            "dry_runs": sum(1 for e in events if is_dry_run(e)), "writes": [describe(e) for e in writes],
            "stdout": proc.stdout}


def main(argv=None):
    from twin.cluster import Cluster

    parser = argparse.ArgumentParser(prog="python -m tests.bench.writes", description=__doc__.splitlines()[0])
    parser.add_argument("--skip-rerun", action="store_true", help="no first run and re-run, only the check run")
    parser.add_argument("--skip-check", action="store_true", help="no --check run on a fresh twin")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        if not args.skip_rerun:
            cluster = Cluster("bench-writes", Path(tmp) / "twin")
            cluster.up(PROFILE, log=lambda msg: None)
            try:
                log("bench: site.yml, first run ...")
                runs["first run"] = run_site(cluster, tmp, "first", log=log)
                if runs["first run"]["rc"] == 0:
                    log("bench: site.yml again, nothing to do (site_prove=false) ...")
                    runs["no-op re-run"] = run_site(cluster, tmp, "rerun", log=log, extra_vars={"site_prove": False})
                    log("bench: site.yml again, with the proof ...")
                    runs["re-run, proof again"] = run_site(cluster, tmp, "rerun-proof", log=log)
            finally:
                cluster.down()
        if not args.skip_check:
            cluster = Cluster("bench-writes-check", Path(tmp) / "twin-check")
            cluster.up(PROFILE, log=lambda msg: None)
            try:
                log("bench: site.yml --check --diff on a fresh twin ...")
                runs["--check, fresh twin"] = run_site(cluster, tmp, "check", check=True, log=log)
                runs["--check, fresh twin"]["probe_namespace_left"] = probe_namespace_left(cluster.kube("admin"))
            finally:
                cluster.down()

    print(f"site.yml write requests (user {USER}, twin profile {PROFILE!r}, from the twin's audit log; "
          "dry runs are not writes):")
    print(f"  {'run':22s} {'rc':>3} {'seconds':>8} {'requests':>9} {'dry runs':>9} {'writes':>7}")
    for what, run in runs.items():
        print(f"  {what:22s} {run['rc']:3d} {run['seconds']:8.1f} {run['requests']:9d} {run['dry_runs']:9d} "
              f"{len(run['writes']):7d}")
    for what, run in runs.items():
        if what == "first run" or not run["writes"]:
            continue
        print(f"  writes of the {what}:")
        for line, count in sorted(collections.Counter(run["writes"]).items()):
            print(f"    {count:3d} x {line}")
    failed = [w for w, r in runs.items() if r["rc"] != 0]
    for what in ("no-op re-run", "--check, fresh twin"):
        if what in runs and runs[what]["writes"]:
            failed.append(f"{what}: {len(runs[what]['writes'])} writes (goal 0)")
    if "no-op re-run" in runs and runs["no-op re-run"]["seconds"] > RERUN_GOAL_S:
        failed.append(f"no-op re-run: {runs['no-op re-run']['seconds']} s (goal <= {RERUN_GOAL_S:.0f} s)")
    if runs.get("--check, fresh twin", {}).get("probe_namespace_left"):
        failed.append("--check left the probe namespace confidential-gpu-probe behind")
    for line in failed:
        print("  MISSED: " + line)
    if args.json:
        Path(args.json).write_text(json.dumps({w: {k: v for k, v in r.items() if k != "stdout"}
                                               for w, r in runs.items()}, indent=2, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
