"""The teardown on the twin: a bring-up (site.yml, without the proof) taken down again.

``--check`` first: no write in the audit log, the plan and the reboots said. Then the teardown itself:
each worker reboots once (OSC's uninstall moves kata-oc's nodes back to worker; the host MachineConfigs
were written for kata-oc, which is gone by then, so removing them reboots nothing), nothing labelled as
the collection's is left, and the cluster's objects are those from before the bring-up — but for what
upstream leaves by design, listed in RESIDUE and printed.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.writes import describe, real_writes, site_command
from tests.conftest import REPO, ansible_env
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

BOOTS = "twin.confidential.gpu/boots"
WORKERS = ("worker-0", "worker-1", "worker-2")
MANAGED = "app.kubernetes.io/managed-by=confidential.gpu"

# What the snapshot compares: (api_version, plural, namespaced).
KINDS = (
    ("v1", "namespaces", False),
    ("machineconfiguration.openshift.io/v1", "machineconfigs", False),
    ("machineconfiguration.openshift.io/v1", "machineconfigpools", False),
    ("node.k8s.io/v1", "runtimeclasses", False),
    ("operators.coreos.com/v1alpha1", "subscriptions", True),
    ("operators.coreos.com/v1alpha1", "clusterserviceversions", True),
    ("operators.coreos.com/v1", "operatorgroups", True),
)
# Cluster-scoped operands the collection declares: none may be left.
OPERANDS = (
    ("kataconfiguration.openshift.io/v1", "kataconfigs", False),
    ("nvidia.com/v1", "clusterpolicies", False),
    ("nfd.openshift.io/v1alpha1", "nodefeaturerules", False),
)


def _served(kube, api_version, plural):
    try:
        return kube.list(path(api_version, plural))["items"]
    except Exception:  # noqa: BLE001 - a kind not served (its CRD not installed yet) holds nothing
        return []


def snapshot(kube):
    """Names per kind, plus each node's label and annotation keys (values the twin's clock moves are left out)."""
    out = {}
    for api_version, plural, _namespaced in KINDS:
        out[plural] = sorted("{0}/{1}".format(o["metadata"].get("namespace", ""), o["metadata"]["name"])
                             for o in _served(kube, api_version, plural)
                             # OLM copies a CSV into every namespace its OperatorGroup watches: count the original
                             if (o.get("status") or {}).get("reason") != "Copied")
    for node in kube.list(path("v1", "nodes"))["items"]:
        meta = node["metadata"]
        out["node " + meta["name"]] = sorted(
            ["label " + k + "=" + v for k, v in (meta.get("labels") or {}).items()]
            + ["annotation " + k for k in (meta.get("annotations") or {})])
    return out


def diff(before, after):
    lines = []
    for key in sorted(set(before) | set(after)):
        gone = sorted(set(before.get(key, [])) - set(after.get(key, [])))
        new = sorted(set(after.get(key, [])) - set(before.get(key, [])))
        lines += ["{0}: - {1}".format(key, g) for g in gone] + ["{0}: + {1}".format(key, n) for n in new]
    return lines


# Left by the operators by design, and not the collection's to remove:
RESIDUE = (
    # NFD's labels and its annotation listing them: an instance without prunerOnDelete leaves them (the
    # NodeFeatureDiscovery CRD's spec.prunerOnDelete; the twin's NFD does not prune).
    ": + label feature.node.kubernetes.io/",
    ": + annotation nfd.node.kubernetes.io/feature-labels",
    # The GPU operator's node labels outlive it (NVIDIA/gpu-operator#1391; #2518: "Helm uninstall won't remove
    # the labels"); nvidia.com/cc.mode, which the collection set, is removed.
    ": + label nvidia.com/gpu.",
    ": + label nvidia.com/cc.mode.state=",
    ": + label nvidia.com/cc.ready.state=",
    # The MCO's record of the drain that the one reboot needed.
    ": + annotation machineconfiguration.openshift.io/desiredDrain",
    ": + annotation machineconfiguration.openshift.io/lastAppliedDrain",
)


def boots(kube):
    return {n["metadata"]["name"]: int((n["metadata"].get("annotations") or {}).get(BOOTS, "1"))
            for n in kube.list(path("v1", "nodes"))["items"]}


def teardown(handle, tmp, check=False):
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           str(REPO / "playbooks" / "teardown.yml")] + (["--check", "--diff"] if check else [])
    env = ansible_env(dict(handle.env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"))
    return subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=1800, check=False)


@pytest.fixture(scope="module")
def brought_up(twin_factory, tmp_path_factory):
    handle = twin_factory("default", name="teardown")
    tmp = tmp_path_factory.mktemp("teardown")
    before = snapshot(handle.kube)
    cmd, env = site_command(handle.cluster, tmp, extra_vars={"site_prove": False})
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return handle, tmp, before


def test_teardown_check_mode_says_what_would_go_and_writes_nothing(brought_up):
    handle, tmp, _before = brought_up
    start = handle.audit.offset()
    proc = teardown(handle, tmp, check=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    writes = [describe(e) for e in real_writes(handle.audit.events(start))]
    assert writes == [], "teardown --check wrote:\n" + "\n".join(writes)
    out = proc.stdout
    print("teardown --check said:\n" + "\n".join(line for line in out.splitlines() if "would" in line))
    assert "sandboxed_containers operands: would delete KataConfig" in out, out[-6000:]
    assert "reboots: worker-0 ×1, worker-1 ×1, worker-2 ×1" in out, out[-6000:]
    assert "Would remove" in out and "Removed" not in out, out[-3000:]


def test_teardown_returns_the_cluster_to_before_the_bring_up(brought_up):
    handle, tmp, before = brought_up
    kube = handle.kube
    booted = boots(kube)
    started = time.monotonic()
    proc = teardown(handle, tmp)
    print("teardown took {0:.0f}s; its tasks and waits:\n".format(time.monotonic() - started) + "\n".join(
        line for line in proc.stdout.splitlines() if line.startswith(("TASK [", "  [localhost]", "ok: [localhost] => {"))
        or "Removed" in line))
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert "Removed" in proc.stdout, proc.stdout[-3000:]
    # one reboot per worker for everything removed
    assert {n: c - booted[n] for n, c in boots(kube).items()} == {n: 1 if n in WORKERS else 0 for n in booted}
    for api_version, plural, _namespaced in KINDS + OPERANDS:
        left = [o["metadata"]["name"] for o in _served(kube, api_version, plural)
                if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "confidential.gpu"]
        assert left == [], f"{plural} of the collection left: {left}"
    changes = diff(before, snapshot(kube))
    unexplained = [c for c in changes if not any(r in c for r in RESIDUE)]
    print("object diff against the state before the bring-up:\n" + json.dumps(changes, indent=1))
    assert unexplained == [], "\n".join(unexplained)
    # again: nothing left to do, nothing written
    start = handle.audit.offset()
    again = teardown(handle, tmp)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "nothing of confidential.gpu's is on this cluster" in again.stdout, again.stdout[-3000:]
    assert [describe(e) for e in real_writes(handle.audit.events(start))] == []
