"""gpu_cc: which nodes switch, what blocks a switch, when cc-manager is done, and how a failure reads."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_cc


def node(name, mode=None, state=None, ready=None, cc_manager="true"):
    labels = {"nvidia.com/gpu.present": "true"}
    for key, value in ((gpu_cc.CC_MODE_LABEL, mode), (gpu_cc.CC_MODE_STATE_LABEL, state),
                       (gpu_cc.CC_READY_STATE_LABEL, ready), (gpu_cc.CC_MANAGER_DEPLOY_LABEL, cc_manager)):
        if value is not None:
            labels[key] = value
    return {"metadata": {"name": name, "labels": labels}}


def pod(name, node_name, pgpu=None, phase="Running", init=False, section="limits", namespace="apps"):
    container = {"name": "c", "image": "x"}
    if pgpu is not None:
        container["resources"] = {section: {"nvidia.com/pgpu": pgpu}}
    spec = {"nodeName": node_name, "containers": [{"name": "main", "image": "x"}]}
    spec["initContainers" if init else "containers"] = ([container] if init else [container])
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": {"phase": phase}}


@pytest.mark.parametrize("value, expected", [
    (True, "on"), (False, "off"), ("on", "on"), ("True", "on"), ("false", "off"), (" ppcie ", "ppcie"),
    ("devtools", "devtools"),
])
def test_yaml_booleans_become_modes(value, expected):
    assert gpu_cc.normalize_mode(value) == expected


def test_devtools_needs_explicit_permission_and_unknown_modes_are_named():
    assert gpu_cc.check_mode_request("on") is None
    assert gpu_cc.check_mode_request("ppcie") is None
    refusal = gpu_cc.check_mode_request("devtools")
    assert "allow_devtools=true" in refusal and "attestation" in refusal
    assert gpu_cc.check_mode_request("devtools", allow_devtools=True) is None
    bad = gpu_cc.check_mode_request("enabled")
    assert "'enabled'" in bad and "on, off, ppcie, devtools" in bad


@pytest.mark.parametrize("state, ready", [("on", "true"), ("ppcie", "true"), ("off", "false"), ("devtools", ""),
                                          ("failed", "")])
def test_ready_state_follows_cc_manager(state, ready):
    assert gpu_cc.expected_ready_state(state) == ready


def test_plan_marks_label_changes_switches_and_nodes_without_cc_manager():
    entries, errors = gpu_cc.plan([
        node("w-2", mode="on", state="on"),  # settled
        node("w-0"),  # default mode only: the label must be set
        node("w-1", mode="on", state="off"),  # switch still in progress: no label change, but a switch
        node("m-0", cc_manager=None),
    ], "on")
    by_name = {e["name"]: e for e in entries}
    assert [e["name"] for e in entries] == ["m-0", "w-0", "w-1", "w-2"]
    assert (by_name["w-2"]["change_label"], by_name["w-2"]["switch"]) == (False, False)
    assert (by_name["w-0"]["change_label"], by_name["w-0"]["switch"]) == (True, True)
    assert (by_name["w-1"]["change_label"], by_name["w-1"]["switch"]) == (False, True)
    assert len(errors) == 1 and errors[0].startswith("node m-0 has no cc-manager")


def test_paused_cc_manager_label_still_counts_as_deployed():
    entries, errors = gpu_cc.plan([node("w-0", cc_manager=gpu_cc.PAUSED)], "off")
    assert not errors and entries[0]["cc_manager"]


def test_pods_using_pgpu_on_the_node_only_and_live_only():
    pods = [
        pod("gpu-job", "w-0", pgpu="1"),
        pod("gpu-init", "w-0", pgpu=1, init=True),
        pod("gpu-requests", "w-0", pgpu="1", section="requests"),
        pod("done", "w-0", pgpu="1", phase="Succeeded"),
        pod("cpu-only", "w-0"),
        pod("zero", "w-0", pgpu="0"),
        pod("elsewhere", "w-1", pgpu="1"),
    ]
    assert gpu_cc.pods_using_pgpu(pods, "w-0") == ["apps/gpu-init", "apps/gpu-job", "apps/gpu-requests"]
    message = gpu_cc.blocking_pods_message({"w-0": ["apps/gpu-job"], "w-1": []})
    assert "w-0 (apps/gpu-job)" in message and "w-1" not in message and "nvidia.com/pgpu" in message
    assert gpu_cc.blocking_pods_message({"w-1": []}) is None


def test_progress_done_failed_and_seen():
    nodes = [node("w-0", state="on"), node("w-1", state="off"), node("w-2", state="failed")]
    done, failed, seen = gpu_cc.progress(nodes, ["w-0", "w-1"], "on")
    assert (done, failed) == (False, {}) and seen == "w-0: on, w-1: off"
    done, failed, seen = gpu_cc.progress(nodes, ["w-0", "w-2"], "on")
    assert not done and failed == {"w-2": "failed"}
    done, failed, seen = gpu_cc.progress(nodes, ["w-0"], "on")
    assert done and not failed
    done, failed, seen = gpu_cc.progress(nodes, ["w-9"], "on")
    assert not done and seen == "w-9: no state yet"


def test_failure_and_timeout_messages_name_node_state_and_pod():
    crashed = {"metadata": {"name": "nvidia-cc-manager-x1", "namespace": "nvidia-gpu-operator"},
               "status": {"phase": "Running", "containerStatuses": [{
                   "name": "nvidia-cc-manager", "ready": False, "restartCount": 3, "state": {"running": {}},
                   "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                "message": "Some GPUs are not cc-capable: 0000:18:00.0"}}}]}}
    text = gpu_cc.failure_message("on", {"w-2": "failed"}, {"w-2": crashed})
    assert "node w-2" in text and "'failed'" in text
    assert "nvidia-gpu-operator/nvidia-cc-manager-x1: Running" in text
    assert "restarts 3" in text and "last exit 1 (Error): Some GPUs are not cc-capable" in text
    timeout = gpu_cc.failure_message("on", {}, {"w-0": None}, seen="w-0: off", timeout=30)
    assert timeout.startswith("Timed out after 30s") and "last seen: w-0: off" in timeout
    assert "no cc-manager pod on the node" in timeout


def _cc_pod(uid="u1", restarts=0, ready=True, waiting=None, exit_code=None):
    cs = {"name": "nvidia-cc-manager", "ready": ready, "restartCount": restarts,
          "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
    if exit_code is not None:
        cs["lastState"] = {"terminated": {"exitCode": exit_code, "message": "Some GPUs are not cc-capable"}}
    return {"metadata": {"name": "nvidia-cc-manager-x", "namespace": "nvidia-gpu-operator", "uid": uid},
            "spec": {"nodeName": "worker-0"}, "status": {"phase": "Running", "containerStatuses": [cs]}}


def test_crash_loop_counts_only_crashes_since_the_switch_began():
    baseline = gpu_cc.restart_baseline(_cc_pod(restarts=2, ready=False, exit_code=1))
    assert baseline == ("u1", 2)
    assert not gpu_cc.crash_loop(_cc_pod(restarts=2, ready=False, exit_code=1), baseline)  # an old crash
    assert gpu_cc.crash_loop(_cc_pod(restarts=3, ready=False, exit_code=1), baseline)
    assert gpu_cc.crash_loop(_cc_pod(restarts=3, ready=False, waiting="CrashLoopBackOff"), baseline)
    assert not gpu_cc.crash_loop(_cc_pod(restarts=3, ready=True, exit_code=1), baseline)  # restarted and back up
    assert gpu_cc.crash_loop(_cc_pod(uid="u2", restarts=1, ready=False, exit_code=1), baseline)  # a new pod
    assert not gpu_cc.crash_loop(None) and not gpu_cc.crash_loop(_cc_pod())
    text = gpu_cc.crash_message("on", ["worker-0"], {"worker-0": _cc_pod(restarts=3, ready=False, exit_code=1)})
    assert "cc-manager on worker-0 is crash-looping" in text and "restarts 3" in text and "not cc-capable" in text
