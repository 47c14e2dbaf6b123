"""Scale: preflight and verify on a 1000-node twin with 10% GPU nodes, after NFD has labelled them.

``python -m tests.bench.scale`` starts its own twin (profile ``scale-1000``: 3 control-plane nodes,
100 Intel TDX workers with an H100, 897 CPU-only workers), then in one run:

1. counts the nodes carrying taints beyond the ones they registered with, right after ``twin up``
   and again after one node-monitor grace period (the node lifecycle controller taints a node
   whose Lease or Ready heartbeat lags: the twin's kubelet must keep up with 1000 nodes);
2. runs the nfd role (the NFD operator through OLM, the TEE rule) and waits for its labels;
3. runs ``playbooks/preflight.yml``;
4. runs the verify steps: ``cluster_info``, ``machine_config_pool_info`` of the worker pool, and
   tee_hosts' probe and check (``node_probe`` then the ``tee_hosts_verify`` filter) on the GPU nodes;

and prints, for steps 3 and 4, the wall time and the collection's API requests by verb and
resource from the twin's audit log (user ``admin``), plus how many of them name a single node
(``get nodes/<name>``: per-node requests grow with the cluster). Exits non-zero when a node
stays tainted or a step fails.
"""

import collections
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "collections"))
sys.path.insert(0, str(REPO))

from tests.bench.reboots import run_playbook  # noqa: E402
from twin.audit import AuditLog  # noqa: E402
from twin.cluster import Cluster  # noqa: E402
from twin.kube import path  # noqa: E402
from twin.profile import load_state  # noqa: E402
from twin.seed import node_object  # noqa: E402

PROFILE = os.environ.get("CGPU_SCALE_PROFILE", "scale-1000")
# kube-controller-manager's default nodeMonitorGracePeriod is 40 s (50 s in newer releases), and
# it looks every nodeMonitorPeriod (5 s): a lagging node is tainted within this long.
GRACE = 60
GPU_LABEL = "feature.node.kubernetes.io/pci-10de.present"

VERIFY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Read the cluster
      confidential.gpu.cluster_info:
      register: info
    - name: Read the worker pool
      confidential.gpu.machine_config_pool_info:
        name: worker
      register: pool
    - name: Probe the GPU hosts
      confidential.gpu.node_probe:
        node_selector: "%(gpu_label)s=true"
        files: [/etc/modules-load.d/vsock.conf]
        timeout: 900
      register: probe
    - name: Check every GPU host as tee_hosts does after its rollout
      ansible.builtin.set_fact:
        report: "{{ probe.nodes | confidential.gpu.tee_hosts_verify('tdx', iommu=true, require_gpus=true) }}"
    - name: Say how many hosts were checked
      ansible.builtin.debug:
        msg: "verified {{ report | length }} hosts, {{ report.values() | selectattr('ok') | list | length }} ok"
""" % {"gpu_label": GPU_LABEL}


def registered_taints(cluster):
    """{node: {(key, effect)}}: the taints each node of a running twin registered with."""
    spec = load_state(cluster.state)
    port = cluster.info()["ports"]["kubelet"]
    return {n["name"]: {(t["key"], t["effect"]) for t in node_object(n, spec, port)["spec"].get("taints", [])}
            for n in spec["nodes"]}


def extra_taints(kube, registered):
    """Nodes whose taints go beyond what they registered with: {node: [key:effect, ...]}."""
    found = {}
    for node in kube.list(path("v1", "nodes"))["items"]:
        name = node["metadata"]["name"]
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or ()}
        extra = taints - registered.get(name, set())
        if extra:
            found[name] = sorted(f"{k}:{e}" for k, e in extra)
    return found


def taints_over(kube, registered, seconds):
    """Every node that carried an extra taint at any time during ``seconds`` (watched, not polled)."""
    listing = kube.list(path("v1", "nodes"))
    seen = {}
    for node in listing["items"]:
        extra = _extra(node, registered)
        if extra:
            seen[node["metadata"]["name"]] = extra
    version = listing["metadata"]["resourceVersion"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for kind, node in kube.watch(path("v1", "nodes"), version, timeout_seconds=max(1, int(deadline - time.monotonic()))):
            if kind == "ERROR":
                break
            version = node["metadata"].get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            extra = _extra(node, registered)
            if extra:
                seen.setdefault(node["metadata"]["name"], extra)
    return seen


def _extra(node, registered):
    taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or ()}
    return sorted(f"{k}:{e}" for k, e in taints - registered.get(node["metadata"]["name"], set()))


def measure(audit, what):
    start = audit.offset()
    began = time.monotonic()
    what()
    seconds = time.monotonic() - began
    events = [e for e in audit.events(start) if e.get("user", {}).get("username") == "admin"]
    counts = collections.Counter()
    per_node = 0
    for event in events:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        counts[(event["verb"], resource)] += 1
        if ref.get("resource") == "nodes" and ref.get("name"):
            per_node += 1
    return seconds, counts, per_node


def wait_labelled(kube, want, timeout=900):
    """Watch nodes until ``want`` of them carry the NFD GPU label."""
    listing = kube.list(path("v1", "nodes"), labelSelector=f"{GPU_LABEL}=true")
    have = {n["metadata"]["name"] for n in listing["items"]}
    version = kube.list(path("v1", "nodes"))["metadata"]["resourceVersion"]
    deadline = time.monotonic() + timeout
    while len(have) < want:
        if time.monotonic() > deadline:
            raise SystemExit(f"NFD labelled {len(have)} of {want} GPU nodes within {timeout}s")
        for kind, node in kube.watch(path("v1", "nodes"), version, timeout_seconds=30):
            if kind == "ERROR":
                break
            version = node["metadata"].get("resourceVersion", version)
            if kind != "BOOKMARK" and (node["metadata"].get("labels") or {}).get(GPU_LABEL) == "true":
                have.add(node["metadata"]["name"])
                if len(have) >= want:
                    break
    return len(have)


def table(title, seconds, counts, per_node):
    print(f"{title}: {seconds:.1f}s, {sum(counts.values())} requests, {per_node} naming one node")
    for (verb, resource), n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        print(f"    {n:>5}  {verb:<7} {resource}")


def main():
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        cluster = Cluster("bench-scale", Path(tmp) / "twin")
        began = time.monotonic()
        cluster.up(PROFILE, log=lambda msg: None)
        up_s = time.monotonic() - began
        try:
            kube = cluster.kube("admin")
            spec = load_state(cluster.state)
            registered = registered_taints(cluster)
            gpus = sum(1 for n in spec["nodes"] if n["gpus"])
            at_up = extra_taints(kube, registered)
            during = taints_over(kube, registered, GRACE)
            after = extra_taints(kube, registered)
            print(f"twin {PROFILE}: {len(spec['nodes'])} nodes ({gpus} with GPUs) up in {up_s:.1f}s")
            print(f"  nodes with taints beyond their registered ones: at up {len(at_up)}, "
                  f"at any time in the {GRACE}s after {len(during)}, at the end {len(after)}"
                  + (f"; e.g. {dict(list(during.items())[:3])}" if during else ""))
            if after:
                failed.append(f"{len(after)} nodes still tainted")

            audit = AuditLog(cluster.state / "logs" / "audit.log")
            nfd = "- hosts: localhost\n  gather_facts: false\n  roles: [confidential.gpu.nfd]\n"
            nfd_s, _requests, _window = measure(audit, lambda: run_playbook(cluster, tmp, nfd, "nfd"))
            labelled = wait_labelled(kube, gpus)
            print(f"nfd role: {nfd_s:.1f}s; {labelled} nodes carry {GPU_LABEL}=true")

            preflight = measure(audit, lambda: run_playbook(cluster, tmp, REPO / "playbooks" / "preflight.yml", "preflight"))
            table("preflight (playbooks/preflight.yml)", *preflight)
            verify = measure(audit, lambda: run_playbook(cluster, tmp, VERIFY, "verify"))
            table(f"verify (cluster_info, pool info, node_probe + tee_hosts_verify on {gpus} GPU nodes)", *verify)
        finally:
            cluster.down()
    if failed:
        raise SystemExit("; ".join(failed))


if __name__ == "__main__":
    main()
