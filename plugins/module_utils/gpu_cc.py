# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU confidential-computing mode on nodes: what to change, what blocks it, when it is done (pure).

PRIVATE to this collection. The NVIDIA cc-manager (one pod per GPU node, deployed by the GPU
operator in sandboxed ``kata`` mode) watches the node label ``nvidia.com/cc.mode`` and reports
what it applied in ``nvidia.com/cc.mode.state`` and ``nvidia.com/cc.ready.state``. It resets the
GPUs without draining anything, so a switch under a running confidential pod kills that pod's
GPU; the callers refuse in that case. Inputs are plain dicts as the API serves them.
"""

from __future__ import annotations

CC_MODE_LABEL = "nvidia.com/cc.mode"
CC_MODE_STATE_LABEL = "nvidia.com/cc.mode.state"
CC_READY_STATE_LABEL = "nvidia.com/cc.ready.state"
CC_MANAGER_DEPLOY_LABEL = "nvidia.com/gpu.deploy.cc-manager"
# cc-manager's pods carry ``name: nvidia-cc-manager``; only its DaemonSet object carries ``app`` (NVIDIA/gpu-operator
# assets/state-cc-manager/0500_daemonset.yaml, v26.3.3 and v26.7.0).
CC_MANAGER_POD_SELECTOR = "name=nvidia-cc-manager"
PGPU = "nvidia.com/pgpu"

# ppcie (protected PCIe) is Hopper's multi-GPU mode, a node label only; devtools turns on CC with
# the GPU's debug interfaces open, and GPU attestation then fails to match the measurements.
CC_MODES = ("on", "off", "ppcie", "devtools")
FAILED = "failed"
# cc-manager evicts some operands while it switches by appending this to their deploy labels.
PAUSED = "paused-for-cc-mode-change"

DEFAULT_NODE_SELECTOR = "nvidia.com/gpu.present=true"

__all__ = [
    "CC_MODES", "CC_MODE_LABEL", "CC_MODE_STATE_LABEL", "CC_READY_STATE_LABEL", "PGPU",
    "normalize_mode", "check_mode_request", "expected_ready_state", "node_cc", "plan", "pods_using_pgpu",
    "blocking_pods_message", "progress", "pod_status_line", "failure_message", "restart_baseline", "crash_loop",
    "crash_message",
]


def normalize_mode(value):
    """The mode as cc-manager spells it: YAML 1.1 turns an unquoted ``on``/``off`` into a boolean."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    text = str(value).strip()
    return {"true": "on", "false": "off"}.get(text.lower(), text)


def check_mode_request(mode, allow_devtools=False):
    """None when the requested mode may be applied, else the sentence that says why not."""
    if mode not in CC_MODES:
        return "mode {0!r} is not a cc-manager mode; valid: {1}".format(mode, ", ".join(CC_MODES))
    if mode == "devtools" and not allow_devtools:
        return ("mode 'devtools' leaves the GPUs' debug interfaces open and GPU attestation does not match "
                "their measurements in it; it is for GPU development only. Set allow_devtools=true to apply it anyway")
    return None


def expected_ready_state(state):
    """What cc-manager writes to ``nvidia.com/cc.ready.state`` beside a given mode state."""
    if state in ("on", "ppcie"):
        return "true"
    if state == "off":
        return "false"
    return ""


def _labels(node):
    return (node.get("metadata") or {}).get("labels") or {}


def node_cc(node):
    """The CC view of one node: its name, desired label, reported states, whether cc-manager runs there."""
    labels = _labels(node)
    deploy = labels.get(CC_MANAGER_DEPLOY_LABEL)
    return {
        "name": (node.get("metadata") or {}).get("name"),
        "mode_label": labels.get(CC_MODE_LABEL),
        "state": labels.get(CC_MODE_STATE_LABEL),
        "ready_state": labels.get(CC_READY_STATE_LABEL),
        # "true", or paused by cc-manager itself in the middle of a switch
        "cc_manager": deploy == "true" or bool(deploy and PAUSED in deploy),
    }


def plan(nodes, mode):
    """Per target node: what is there and whether its label must change.

    Returns ``(entries, errors)``; ``errors`` names nodes cc-manager does not run on (no label
    would ever be acted upon there, so waiting would only end at the deadline).
    """
    entries, errors = [], []
    for node in sorted(nodes, key=lambda n: (n.get("metadata") or {}).get("name") or ""):
        view = node_cc(node)
        if not view["cc_manager"]:
            value = _labels(node).get(CC_MANAGER_DEPLOY_LABEL)
            errors.append(
                "node {0} has no cc-manager ({1} is {2}, not 'true'): the GPU operator deploys it only on "
                "GPU nodes in sandboxed kata mode with vm-passthrough and ccManager enabled".format(
                    view["name"], CC_MANAGER_DEPLOY_LABEL, "not set" if value is None else repr(value)))
        view["change_label"] = view["mode_label"] != mode
        view["switch"] = view["change_label"] or view["state"] != mode
        entries.append(view)
    return entries, errors


def _requests(container, resource):
    resources = container.get("resources") or {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get(resource)
        if value not in (None, "", "0", 0):
            return True
    return False


def pods_using_pgpu(pods, node_name, resource=PGPU):
    """``namespace/name`` of the live pods on a node that hold a passthrough GPU."""
    found = []
    for pod in pods:
        spec = pod.get("spec") or {}
        if spec.get("nodeName") != node_name:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
        if any(_requests(c, resource) for c in containers):
            meta = pod.get("metadata") or {}
            found.append("{0}/{1}".format(meta.get("namespace"), meta.get("name")))
    return sorted(found)


def blocking_pods_message(blocking):
    """One sentence for ``{node: [pods]}`` of pods that a switch would cut off from their GPU."""
    parts = ["{0} ({1})".format(node, ", ".join(pods)) for node, pods in sorted(blocking.items()) if pods]
    if not parts:
        return None
    return ("refusing to switch the GPU CC mode: cc-manager resets the GPUs without draining, and pods still use "
            "{0} on {1}. Stop or move them first".format(PGPU, "; ".join(parts)))


def progress(nodes, targets, mode):
    """``(done, failed, seen)`` over the current node objects while waiting for ``mode``.

    ``failed`` is ``{node: state}`` for targets cc-manager reported ``failed`` on; ``seen`` is the
    one line kept for a timeout message.
    """
    by_name = {(n.get("metadata") or {}).get("name"): n for n in nodes}
    failed, pending, parts = {}, [], []
    for name in sorted(targets):
        node = by_name.get(name)
        state = _labels(node).get(CC_MODE_STATE_LABEL) if node else None
        parts.append("{0}: {1}".format(name, state if state is not None else "no state yet"))
        if node is None:
            pending.append(name)
        elif state == FAILED:
            failed[name] = state
        elif state != mode:
            pending.append(name)
    return not pending and not failed, failed, ", ".join(parts)


def pod_status_line(pod):
    """A cc-manager pod's status in one line: phase, readiness, restarts and the last termination."""
    if not pod:
        return "no cc-manager pod on the node"
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    parts = ["{0}/{1}: {2}".format(meta.get("namespace"), meta.get("name"), status.get("phase") or "Pending")]
    for cs in status.get("containerStatuses") or []:
        bits = ["ready" if cs.get("ready") else "not ready", "restarts {0}".format(cs.get("restartCount", 0))]
        state = cs.get("state") or {}
        waiting = state.get("waiting")
        if waiting:
            bits.append("waiting: {0}".format(waiting.get("reason") or "?"))
        last = (cs.get("lastState") or {}).get("terminated") or state.get("terminated")
        if last:
            bits.append("last exit {0} ({1}){2}".format(
                last.get("exitCode"), last.get("reason") or "?",
                ": " + last["message"].strip() if last.get("message") else ""))
        parts.append("{0} {1}".format(cs.get("name"), ", ".join(bits)))
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") != "True" and cond.get("message"):
            parts.append("Ready: " + cond["message"])
    return "; ".join(parts)


def restart_baseline(pod):
    """``(uid, restarts)`` of a cc-manager pod before the switch, to tell a crash since then from an old one."""
    if not pod:
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return (pod.get("metadata") or {}).get("uid"), sum(int(cs.get("restartCount") or 0) for cs in statuses)


def crash_loop(pod, baseline=None):
    """True when the cc-manager container exited with an error since ``baseline`` and is not back up.

    A GPU that cannot take the mode (not CC-capable, or a device without PPCIe for ``ppcie``) makes
    cc-manager exit before it writes any label (k8s-cc-manager ``set_cc_mode``/``set_ppcie_mode``
    call ``sys.exit(1)``); the kubelet restarts it, it exits again: ``nvidia.com/cc.mode.state``
    never changes, so only the pod tells. A restart that comes back ready is not a crash loop:
    cc-manager re-applies the mode at every start.
    """
    if not pod:
        return False
    uid = (pod.get("metadata") or {}).get("uid")
    before = baseline[1] if baseline and baseline[0] == uid else 0
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if int(cs.get("restartCount") or 0) <= before or cs.get("ready"):
            continue
        waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if waiting == "CrashLoopBackOff" or int(last.get("exitCode") or 0) != 0:
            return True
    return False


def crash_message(mode, crashing, pods_by_node):
    """The error for target nodes whose cc-manager crash-loops instead of switching to ``mode``."""
    lines = ["cc-manager could not switch the GPU CC mode to {0!r}".format(mode)]
    for node in sorted(crashing):
        lines.append("cc-manager on {0} is crash-looping (it exits before writing {1}, as it does for a GPU that "
                     "cannot take the mode): pod {2}".format(
                         node, CC_MODE_STATE_LABEL, pod_status_line(pods_by_node.get(node))))
    return ". ".join(lines)


def failure_message(mode, failed, pods_by_node, seen=None, timeout=None):
    """The error for a switch that failed (``failed`` non-empty) or ran out of time."""
    if failed:
        lines = ["cc-manager could not switch the GPU CC mode to {0!r}".format(mode)]
        for node in sorted(failed):
            lines.append("node {0}: {1} is {2!r}; cc-manager pod {3}".format(
                node, CC_MODE_STATE_LABEL, failed[node], pod_status_line(pods_by_node.get(node))))
        return ". ".join(lines)
    lines = ["Timed out after {0}s waiting for {1} to become {2!r}; last seen: {3}".format(
        timeout, CC_MODE_STATE_LABEL, mode, seen)]
    for node in sorted(pods_by_node):
        lines.append("node {0}: cc-manager pod {1}".format(node, pod_status_line(pods_by_node[node])))
    return ". ".join(lines)
