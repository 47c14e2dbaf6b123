"""The whole bring-up on the default profile (3 Intel TDX workers): every worker reboots once."""

from pathlib import Path

import pytest

from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

PLAYBOOK = Path(__file__).parent / "bringup.yml"
BOOTS = "twin.confidential.gpu/boots"
WORKERS = ("worker-0", "worker-1", "worker-2")


def boots(kube):
    return {n["metadata"]["name"]: int((n["metadata"].get("annotations") or {}).get(BOOTS, "1"))
            for n in kube.list(path("v1", "nodes"))["items"]}


def test_whole_bring_up_reboots_each_node_once_and_is_idempotent(cgpu_twin_factory, run_playbook):
    handle = cgpu_twin_factory("default")
    kube = handle.kube
    before = boots(kube)
    run = run_playbook(PLAYBOOK, env=handle.env(), callback="ansible.builtin.default")
    assert run.rc == 0, run.stdout[-8000:] + run.stderr[-2000:]
    after = boots(kube)
    assert {n: after[n] - before[n] for n in after} == {n: 1 if n in WORKERS else 0 for n in after}
    # the second OSC pass asked for the GPU class the late GPUs missed
    assert "Reconcile the KataConfig again" in run.stdout
    classes = {rc["metadata"]["name"]: rc for rc in kube.list(path("node.k8s.io/v1", "runtimeclasses"))["items"]}
    assert classes["kata-cc"]["handler"] == "kata-tdx"
    assert classes["kata-cc-nvidia-gpu"]["handler"] == "kata-tdx-nvidia-gpu"
    for name in WORKERS:
        node = kube.get(path("v1", "nodes", name))
        assert node["metadata"]["labels"]["nvidia.com/cc.ready.state"] == "true"
        assert node["status"]["allocatable"]["nvidia.com/pgpu"] == "1"
        assert node["status"]["allocatable"]["tdx.intel.com/keys"] != "0"

    again = run_playbook(PLAYBOOK, env=handle.env(), callback="ansible.builtin.default")
    assert again.rc == 0 and "changed=0" in again.stdout, again.stdout[-6000:]
    assert boots(kube) == after
