# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Will this pod run as a confidential GPU pod on OpenShift? Checks on a pod spec alone (pure).

PRIVATE to this collection. Used by the preflight: a workload that cannot be scheduled, or that
would run without confidentiality, is refused before anyone waits for it.

Facts (operators.md §1, §5.3, §6.3, §8): one confidential GPU per pod in the OpenShift Technology
Preview; GPUs are advertised as ``nvidia.com/pgpu``; only the ``kata-cc-nvidia-gpu`` runtime class
passes a GPU to a confidential VM (its nodeSelector asks for CC mode on and ready); extended
resources cannot be overcommitted, so a request must come with an equal limit.
"""

from __future__ import annotations

PGPU = "nvidia.com/pgpu"
GPU_RUNTIME_CLASS = "kata-cc-nvidia-gpu"
CPU_RUNTIME_CLASS = "kata-cc"
MAX_GPUS_PER_POD = 1

__all__ = ["pod_spec_of", "gpu_count", "check_pod_spec"]


def _verdict(vid, severity, subject, message, fix, evidence=None):
    return {"id": vid, "severity": severity, "subject": subject, "message": message, "fix": fix,
            "evidence": evidence}


def pod_spec_of(obj):
    """The pod spec inside a Pod, a pod template holder (Deployment, Job…) or a bare spec."""
    if not isinstance(obj, dict):
        return {}
    spec = obj.get("spec") if "spec" in obj or obj.get("kind") else obj
    spec = spec or {}
    while "template" in spec or "jobTemplate" in spec:
        spec = ((spec.get("jobTemplate") or spec.get("template") or {}).get("spec")) or {}
    return spec


def _quantity(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _gpus(container):
    resources = container.get("resources") or {}
    limit = _quantity((resources.get("limits") or {}).get(PGPU))
    request = _quantity((resources.get("requests") or {}).get(PGPU))
    return limit, request


def gpu_count(spec):
    """GPUs the scheduler reserves for the pod: the larger of the containers' sum and any init container."""
    main = sum((_gpus(c)[0] or _gpus(c)[1] or 0) for c in spec.get("containers") or [])
    init = max([(_gpus(c)[0] or _gpus(c)[1] or 0) for c in spec.get("initContainers") or []] or [0])
    return max(main, init)


def check_pod_spec(obj, name=None):
    """Verdicts on a workload meant to run on a confidential GPU (severity pass, warn or fail)."""
    spec = pod_spec_of(obj)
    subject = name or ((obj or {}).get("metadata") or {}).get("name") or "pod"
    verdicts = []
    runtime_class = spec.get("runtimeClassName")
    count = gpu_count(spec)
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        limit, request = _gpus(container)
        if request is not None and limit is None:
            verdicts.append(_verdict(
                "pod-pgpu-limit", "fail", subject,
                "container {0} requests {1} {2} without a limit: extended resources cannot be overcommitted, the API "
                "server rejects it".format(container.get("name"), request, PGPU),
                "set resources.limits[{0}] (requests may be left out)".format(PGPU)))
        elif request is not None and limit is not None and request != limit:
            verdicts.append(_verdict(
                "pod-pgpu-limit", "fail", subject,
                "container {0} requests {1} but limits {2} {3}: they must be equal".format(
                    container.get("name"), request, limit, PGPU), "make requests equal limits, or drop requests"))
    if count > MAX_GPUS_PER_POD:
        verdicts.append(_verdict(
            "pod-one-gpu", "fail", subject,
            "the pod asks for {0} {1}; OpenShift sandboxed containers pass one confidential GPU per pod "
            "(Technology Preview), so it would never be scheduled on a kata-cc-nvidia-gpu node".format(count, PGPU),
            "ask for {0}: 1 and split the work over several pods".format(PGPU), {"pgpu": count}))
    if count and runtime_class != GPU_RUNTIME_CLASS:
        verdicts.append(_verdict(
            "pod-runtime-class", "fail", subject,
            "the pod asks for {0} with runtimeClassName {1!r}: only {2} gives it a GPU inside a confidential VM "
            "on a node in CC mode".format(PGPU, runtime_class, GPU_RUNTIME_CLASS),
            "set spec.runtimeClassName: {0}".format(GPU_RUNTIME_CLASS)))
    if runtime_class == GPU_RUNTIME_CLASS and not count:
        verdicts.append(_verdict(
            "pod-runtime-class", "warn", subject,
            "runtimeClassName {0} without a {1} limit: the confidential VM starts without a GPU".format(
                GPU_RUNTIME_CLASS, PGPU),
            "add resources.limits[{0}]: 1 to the container that uses the GPU, or use {1}".format(PGPU, CPU_RUNTIME_CLASS)))
    if not verdicts:
        verdicts.append(_verdict("pod-spec", "pass", subject,
                                 "asks for {0} confidential GPU with runtimeClassName {1}".format(count, runtime_class)
                                 if count else "no GPU asked for", ""))
    return verdicts
