"""confidential.gpu.gpu_cc_mode against the GPU operator twin, through ansible-playbook."""

import time

import pytest

from twin.kube import path

from .conftest import GPU_NAMESPACE, cluster_policy, create_pod, ensure_namespace, wait_for

pytestmark = pytest.mark.twin

CP = path("nvidia.com/v1", "clusterpolicies")
NODES = path("v1", "nodes")
WORKERS = ("worker-0", "worker-1", "worker-2")


def _states(kube):
    return {n["metadata"]["name"]: (n["metadata"]["labels"].get("nvidia.com/cc.mode.state"),
                                    n["metadata"]["labels"].get("nvidia.com/cc.ready.state"))
            for n in kube.list(NODES)["items"] if n["metadata"]["name"] in WORKERS}


@pytest.fixture(scope="module")
def gpus(gpu_twin):
    kube = gpu_twin.kube
    if kube.get_or_none(f"{CP}/gpu-cluster-policy") is None:
        kube.create(CP, cluster_policy())
    wait_for(kube, NODES, lambda items: all(
        (items[n]["metadata"]["labels"].get("nvidia.com/cc.mode.state"),
         items[n]["metadata"]["labels"].get("nvidia.com/gpu.deploy.vfio-manager")) == ("on", "true") for n in WORKERS),
        timeout=90, what="GPUs in CC mode")
    return gpu_twin


def play(*tasks):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]


def cc(name, register="out", **args):
    return {"name": name, "confidential.gpu.gpu_cc_mode": args, "register": register, "ignore_errors": True}


def test_check_mode_apply_and_idempotence(gpus, run_playbook):
    kube = gpus.kube
    try:
        check = run_playbook(play(cc("switch", mode="off", nodes=["worker-2"])), env=gpus.env(), check=True, diff=True)
        result = check.result("switch")
        assert result["changed"] and result["changed_nodes"] == ["worker-2"], result
        assert result["msg"].startswith("would switch to CC mode 'off': worker-2")
        assert _states(kube)["worker-2"] == ("on", "true")  # check mode wrote nothing

        # unquoted YAML "off" is a boolean; the module takes it as the mode
        applied = run_playbook("""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: switch
      confidential.gpu.gpu_cc_mode:
        mode: off
        nodes: [worker-2]
        timeout: 60
      register: out
""", env=gpus.env())
        result = applied.result("switch")
        assert result["changed"] and not result.get("failed"), result
        assert result["nodes"] == [{"name": "worker-2", "mode_label": "off", "state": "off", "ready_state": "false",
                                    "changed": True}]
        again = run_playbook(play(cc("switch", mode="off", nodes=["worker-2"], timeout=60)), env=gpus.env())
        assert not again.result("switch")["changed"]
        again_check = run_playbook(play(cc("switch", mode="off", nodes=["worker-2"])), env=gpus.env(), check=True)
        assert not again_check.result("switch")["changed"]
        # all GPU nodes by the default selector
        everything = run_playbook(play(cc("switch", mode="on", timeout=60)), env=gpus.env())
        result = everything.result("switch")
        assert result["changed_nodes"] == list(WORKERS) and not result.get("failed"), result
        assert _states(kube) == {n: ("on", "true") for n in WORKERS}
    finally:
        for n in WORKERS:
            kube.merge_patch(path("v1", "nodes", n), {"metadata": {"labels": {"nvidia.com/cc.mode": "on"}}})


def test_refusals_devtools_no_cc_manager_and_pods_holding_a_gpu(gpus, run_playbook):
    kube = gpus.kube
    namespace = "cc-refusals"
    ensure_namespace(kube, namespace)
    pods = path("v1", "pods", namespace=namespace)
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holds-gpu"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": "worker-1"},
                     "containers": [{"name": "c", "image": "registry.example/cuda:1",
                                     "resources": {"limits": {"nvidia.com/pgpu": "1"}}}]}}
    create_pod(kube, namespace, body)
    wait_for(kube, pods, lambda items: (items.get("holds-gpu", {}).get("status") or {}).get("phase") == "Running",
             timeout=30)
    run = run_playbook(play(
        cc("devtools", register="devtools", mode="devtools", nodes=["worker-0"]),
        cc("master", register="master", mode="on", nodes=["master-0"]),
        cc("missing", register="missing", mode="on", nodes=["worker-9"]),
        cc("busy", register="busy", mode="off", nodes=["worker-1"]),
        cc("busy in check mode", register="busy_check", mode="off", nodes=["worker-1"], check_mode=True),
    ), env=gpus.env())
    devtools = run.result("devtools")
    assert devtools["failed"] and "allow_devtools=true" in devtools["msg"]
    assert "node master-0 has no cc-manager" in run.result("master")["msg"]
    assert run.result("missing")["msg"] == "nodes not found: worker-9"
    busy = run.result("busy")
    assert busy["failed"] and f"worker-1 ({namespace}/holds-gpu)" in busy["msg"], busy
    assert busy["blocking_pods"] == {"worker-1": [f"{namespace}/holds-gpu"]}
    assert run.result("busy in check mode")["failed"]
    assert _states(kube)["worker-1"] == ("on", "true")
    kube.delete(path("v1", "pods", "holds-gpu", namespace), gracePeriodSeconds=0)


def test_failed_and_hanging_switches_report_node_state_and_pod(gpus, run_playbook):
    kube = gpus.kube
    try:
        gpus.set_faults([{"kind": "gpu-cc-stuck-failed", "node": "worker-0"},
                         {"kind": "cc-mode-switch-hangs", "node": "worker-2"}])
        run = run_playbook(play(
            cc("failed", register="failed", mode="off", nodes=["worker-0"], timeout=60),
            cc("again", register="again", mode="off", nodes=["worker-0"], timeout=60),
            cc("hangs", register="hangs", mode="off", nodes=["worker-2"], timeout=5),
        ), env=gpus.env())
        failed = run.result("failed")
        assert failed["failed"]
        assert "node worker-0: nvidia.com/cc.mode.state is 'failed'" in failed["msg"], failed["msg"]
        assert f"cc-manager pod {GPU_NAMESPACE}/nvidia-cc-manager-" in failed["msg"]
        assert "restarts 0" in failed["msg"]  # a set/reset error writes failed; cc-manager keeps running
        # a second run does not wait for a cc-manager that will not act again
        assert "acts again only when the label changes" in run.result("again")["msg"]
        hangs = run.result("hangs")["msg"]
        assert hangs.startswith("Timed out after 5s waiting for nvidia.com/cc.mode.state to become 'off'"), hangs
        assert "last seen: worker-2: on" in hangs and "node worker-2: cc-manager pod" in hangs
    finally:
        gpus.set_faults([])
        for n in WORKERS:
            kube.merge_patch(path("v1", "nodes", n), {"metadata": {"labels": {"nvidia.com/cc.mode": "on"}}})
        wait_for(kube, NODES, lambda items: all(
            items[n]["metadata"]["labels"].get("nvidia.com/cc.mode.state") == "on" for n in WORKERS), timeout=30)


def test_crash_looping_cc_manager_fails_fast(gpus, run_playbook):
    kube = gpus.kube
    try:
        gpus.set_faults([{"kind": "cc-manager-crash-loop", "node": "worker-0"}])
        started = time.monotonic()
        run = run_playbook(play(cc("crash", register="crash", mode="off", nodes=["worker-0"], timeout=60)),
                           env=gpus.env())
        elapsed = time.monotonic() - started
        crash = run.result("crash")
        assert crash["failed"]
        assert elapsed < 40, f"took {elapsed:.0f}s: {crash['msg']}"
        assert "cc-manager on worker-0 is crash-looping" in crash["msg"], crash["msg"]
        assert "cannot take CC mode 'off'" in crash["msg"] and "restarts 0" not in crash["msg"]
    finally:
        gpus.set_faults([])
        kube.merge_patch(path("v1", "nodes", "worker-0"), {"metadata": {"labels": {"nvidia.com/cc.mode": "on"}}})
        wait_for(kube, NODES, lambda items: items["worker-0"]["metadata"]["labels"].get("nvidia.com/cc.mode.state")
                 == "on", timeout=60)
