"""API requests of an operator install whose CSV takes 60 s: olm_operator (watches) against an until/retries loop.

``python -m tests.bench.olm_wait`` starts its own twin (default profile, ``timings.csv_install: 60``),
then installs Trustee 1.1.0 twice, each time in a fresh namespace, with Manual approval:

1. with ``confidential.gpu.olm_operator`` (lists once, then follows the API's watch);
2. with a polling loop that GETs every 5 s: the OperatorGroup and Subscription, the InstallPlan polled
   until it appears, a patch to approve it, then the CSV polled until it has succeeded;
3. the way playbooks usually write that loop: ``kubernetes.core.k8s`` and ``k8s_info`` with
   ``until``/``retries``/``delay: 5`` (each retry starts a module, so on a slow controller the GETs come
   further apart than 5 s).

It counts the requests of user ``admin`` (the playbooks' identity) in the twin's audit log: all of them,
and those made while waiting for the CSV (after the approval). Discovery requests are not in the twin's
audit log. Prints the three, with the ratios to the watching module, and exits non-zero unless the
watching module made the fewest requests while waiting.
"""

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
from twin.kube import path  # noqa: E402

CSV_SECONDS = 60
WATCH_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Install Trustee 1.1.0 and wait for its CSV
      confidential.gpu.olm_operator:
        name: trustee-operator
        namespace: {ns}
        version: 1.1.0
        timeout: 300
"""
POLL_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: OperatorGroup
      kubernetes.core.k8s:
        definition:
          apiVersion: operators.coreos.com/v1
          kind: OperatorGroup
          metadata: {{name: trustee-operator-group, namespace: {ns}}}
          spec: {{targetNamespaces: [{ns}]}}
    - name: Subscription
      kubernetes.core.k8s:
        definition:
          apiVersion: operators.coreos.com/v1alpha1
          kind: Subscription
          metadata: {{name: trustee-operator, namespace: {ns}}}
          spec: {{name: trustee-operator, source: redhat-operators, sourceNamespace: openshift-marketplace,
                  channel: stable, installPlanApproval: Manual, startingCSV: trustee-operator.v1.1.0}}
    - name: Wait for the InstallPlan
      kubernetes.core.k8s_info:
        api_version: operators.coreos.com/v1alpha1
        kind: InstallPlan
        namespace: {ns}
      register: plans
      until: plans.resources | selectattr('status.phase', 'defined') | list | length > 0
      retries: 60
      delay: 5
    - name: Approve it
      kubernetes.core.k8s:
        state: patched
        api_version: operators.coreos.com/v1alpha1
        kind: InstallPlan
        namespace: {ns}
        name: "{{{{ plans.resources[0].metadata.name }}}}"
        definition: {{spec: {{approved: true}}}}
    - name: Wait for the CSV to succeed
      kubernetes.core.k8s_info:
        api_version: operators.coreos.com/v1alpha1
        kind: ClusterServiceVersion
        namespace: {ns}
        name: trustee-operator.v1.1.0
      register: csv
      until: (csv.resources[0].status.phase | default('')) == 'Succeeded' if csv.resources else false
      retries: 60
      delay: 5
"""


def run(play, kubeconfig):
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(kubeconfig),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"),
               ANSIBLE_HOME=str(REPO / "build" / "ansible-home"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        handle.write(play)
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                               handle.name], env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
                              check=False)
    finally:
        os.unlink(handle.name)
    if proc.returncode != 0:
        raise SystemExit(f"playbook failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")


def poll_every_5s(cluster, ns):
    """The loop until/retries stands for, without a module's start-up: one GET every 5 s."""
    kube = cluster.kube("admin")
    kube.create(path("operators.coreos.com/v1", "operatorgroups", namespace=ns), {
        "apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup",
        "metadata": {"name": "trustee-operator-group"}, "spec": {"targetNamespaces": [ns]}})
    kube.create(path("operators.coreos.com/v1alpha1", "subscriptions", namespace=ns), {
        "apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription", "metadata": {"name": "trustee-operator"},
        "spec": {"name": "trustee-operator", "source": "redhat-operators", "sourceNamespace": "openshift-marketplace",
                 "channel": "stable", "installPlanApproval": "Manual", "startingCSV": "trustee-operator.v1.1.0"}})
    while True:
        plans = [p for p in kube.list(path("operators.coreos.com/v1alpha1", "installplans", namespace=ns))["items"]
                 if (p.get("status") or {}).get("phase")]
        if plans:
            break
        time.sleep(5)
    kube.merge_patch(path("operators.coreos.com/v1alpha1", "installplans", plans[0]["metadata"]["name"], ns),
                     {"spec": {"approved": True}})
    csv = path("operators.coreos.com/v1alpha1", "clusterserviceversions", "trustee-operator.v1.1.0", ns)
    while ((kube.get_or_none(csv) or {}).get("status") or {}).get("phase") != "Succeeded":
        time.sleep(5)


def measure(cluster, audit, play, ns):
    cluster.kube("admin").create(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}})
    start_offset = audit.offset()
    started = time.time()
    if callable(play):
        play(cluster, ns)
    else:
        run(play.format(ns=ns), cluster.kubeconfig)
    seconds = time.time() - started
    # A watch is logged when it ends; the module's ends with its process, a moment after the playbook.
    time.sleep(3)
    events = [e for e in audit.events(start_offset) if e.get("user", {}).get("username") == "admin"
              and (e.get("objectRef") or {}).get("namespace") in (ns, None, "openshift-marketplace")]
    approval = next((e["requestReceivedTimestamp"] for e in events if e["verb"] == "patch"
                     and (e.get("objectRef") or {}).get("resource") == "installplans"), None)
    waiting = [e for e in events if approval and e["requestReceivedTimestamp"] > approval]
    by_verb = {}
    for e in events:
        by_verb[e["verb"]] = by_verb.get(e["verb"], 0) + 1
    return {"total": len(events), "waiting": len(waiting), "seconds": round(seconds, 1), "by_verb": by_verb}


def main():
    spec = profiles.load("default")
    spec["timings"]["csv_install"] = CSV_SECONDS
    with tempfile.TemporaryDirectory(prefix="bench-olm-") as tmp:
        cluster = Cluster("bench-olm-wait", Path(tmp) / "state")
        cluster.up(spec, log=lambda msg: None)
        try:
            audit = AuditLog(cluster.state / "logs" / "audit.log")
            watch = measure(cluster, audit, WATCH_PLAY, "bench-watch")
            loop = measure(cluster, audit, poll_every_5s, "bench-poll-5s")
            until = measure(cluster, audit, POLL_PLAY, "bench-until")
        finally:
            cluster.down()
    print(f"Operator install, CSV taking {CSV_SECONDS} s on the twin (API requests by the playbook's user, "
          f"all / while waiting for the CSV after the approval):")
    rows = (("olm_operator (list, then watch)", watch), ("GET every 5 s (the polling loop)", loop),
            ("k8s_info until/retries, delay 5", until))
    for label, m in rows:
        print(f"  {label:34s} {m['total']:4d} / {m['waiting']:3d}   ({m['seconds']:5.1f} s)  "
              f"{json.dumps(m['by_verb'], sort_keys=True)}")
    for label, m in rows[1:]:
        print(f"  ratio {label} / olm_operator: {m['total'] / max(watch['total'], 1):.1f}x overall, "
              f"{m['waiting'] / max(watch['waiting'], 1):.1f}x while waiting")
    return 0 if watch["waiting"] < min(loop["waiting"], until["waiting"]) else 1


if __name__ == "__main__":
    sys.exit(main())
