# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The node probe: :func:`host_facts.collect` run in a short-lived privileged pod on a node.

PRIVATE to this collection. Two halves live here:

* the entry point the pod runs (``python3 -m <this module> --root /host``): it reads the host
  mounted at ``/host`` with the very code users run over SSH, adds the kernel log from
  ``/host/dev/kmsg``, the loaded modules and a few named files, and prints one JSON line;
* pure helpers for the module that starts the pods: the ConfigMap that carries this code into the
  pod, the pod itself, and the parser of its log.

Only the standard library is used at run time, so any image with ``python3`` can run it.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import sys

MARKER = "CGPU-NODE-PROBE "
PACKAGE = "ansible_collections.confidential.gpu.plugins.module_utils"
MODULE = PACKAGE + ".node_probe"
# The files that make up the probe in the pod: this module and what it imports.
SOURCE_MODULES = ("node_probe", "host_facts", "gpu_facts")
CODE_MOUNT = "/probe"
HOST_MOUNT = "/host"
NAME_LABEL = "app.kubernetes.io/name"
APP = "cgpu-node-probe"
RUN_LABEL = "confidential.gpu/probe-run"
MAX_FILE_BYTES = 16384
# The last facts a node's probe reported, kept on the Node with what they depend on (see cache_key).
CACHE_ANNOTATION = "confidential.gpu/host-facts"
# What the GPU operator changes on a host without a reboot is the GPUs' driver binding (vfio-manager binds
# them to vfio-pci); its device plugin then advertises them as resources of this prefix on the Node.
GPU_RESOURCE_PREFIX = "nvidia.com/"

__all__ = ["MARKER", "probe", "main", "parse_log", "configmap", "pod", "pod_name", "read_kmsg", "code_digest",
           "cache_key", "cached_facts", "cached_files", "cache_annotation", "CACHE_ANNOTATION"]


# --------------------------------------------------------------------------------------------
# in the pod


def read_kmsg(path, limit=20000):
    """The kernel log from ``/dev/kmsg`` records (``prio,seq,usec,flags;text``), or None if unreadable.

    The first ``limit`` records are kept: the firmware markers are logged at boot.

    /dev/kmsg returns one record per read and EAGAIN at the end when opened non-blocking; a plain
    file (a capture) ends with an empty read. Both end the loop.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    lines = []
    try:
        pending = b""
        while len(lines) < limit:
            try:
                chunk = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten while reading: skip ahead
                    continue
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINVAL):
                    break
                raise
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending and len(lines) < limit:
                record, pending = pending.split(b"\n", 1)
                if record.startswith(b" "):  # continuation lines (KEY=value) of the previous record
                    continue
                _head, sep, text = record.partition(b";")
                lines.append((text if sep else record).decode("utf-8", "replace"))
    finally:
        os.close(fd)
    return "\n".join(lines) + ("\n" if lines else "")


def _modules(root):
    try:
        with open(os.path.join(root, "proc/modules"), encoding="utf-8", errors="replace") as handle:
            return sorted(line.split()[0] for line in handle if line.strip())
    except OSError:
        return None


def _file(root, rel):
    try:
        with open(os.path.join(root, rel.lstrip("/")), "rb") as handle:
            data = handle.read(MAX_FILE_BYTES)
    except OSError:
        return None
    return data.decode("utf-8", "replace")


def probe(root, files=()):
    """Facts of the host at ``root``: host_facts plus kernel log source, loaded modules and files."""
    from ansible_collections.confidential.gpu.plugins.module_utils.host_facts import collect

    dmesg = read_kmsg(os.path.join(root, "dev/kmsg"))
    facts = collect(root, dmesg_text=dmesg)
    facts["modules"] = _modules(root)
    facts["files"] = {path: _file(root, path) for path in files}
    if dmesg is not None:
        facts["dmesg"]["source"] = "/dev/kmsg"
    # The ring buffer of a node that has run for long may have lost its boot messages, and with
    # them the firmware markers; whoever reads "no marker" as "firmware off" must know that.
    facts["dmesg"]["from_boot"] = dmesg is not None and any(
        line.startswith("Linux version") for line in dmesg.splitlines()[:5])
    return facts


def main(argv=None):
    parser = argparse.ArgumentParser(prog="node_probe", description="Read-only TEE/IOMMU/GPU facts of this host.")
    parser.add_argument("--root", default="/", help="where the host's / is mounted")
    parser.add_argument("--file", action="append", default=[], help="also report this file's content")
    args = parser.parse_args(argv)
    try:
        facts = probe(args.root, args.file)
    except Exception as exc:  # the module reports it per node instead of a bare failed pod
        sys.stdout.write(MARKER + json.dumps({"error": "{0}: {1}".format(type(exc).__name__, exc)}) + "\n")
        return 1
    sys.stdout.write(MARKER + json.dumps(facts, sort_keys=True) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# around the pod


def parse_log(text):
    """The facts a probe printed, from its container log; ValueError when there are none."""
    for line in reversed((text or "").splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (text or "").strip().splitlines()[-3:]
    raise ValueError("no probe result in the log" + (": " + " | ".join(tail) if tail else " (empty)"))


def code_digest(sources):
    """Short digest of the probe's code (module name to source text)."""
    return hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:10]


def cache_key(node, code):
    """What a node's probe facts depend on, read from the Node object alone; None when it has no boot ID.

    The facts the probe reads (firmware, kernel command line, modules loaded at boot, files MachineConfigs
    write, PCI devices) change with a reboot, and the kubelet reports a new ``bootID`` at every boot. The
    one change without a reboot is the GPUs' driver binding, which shows as the GPU resources advertised.
    A new probe version (``code``) may read more, so it never trusts an older one's facts.
    """
    status = node.get("status") or {}
    boot = (status.get("nodeInfo") or {}).get("bootID")
    if not boot:
        return None
    capacity = status.get("capacity") or {}
    return {"bootID": boot, "code": code,
            "gpuResources": {k: v for k, v in sorted(capacity.items()) if k.startswith(GPU_RESOURCE_PREFIX)}}


def _cache_entry(node):
    text = ((node.get("metadata") or {}).get("annotations") or {}).get(CACHE_ANNOTATION)
    if not text:
        return None
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("facts"), dict) else None


def cached_facts(node, key, files=()):
    """The facts kept on ``node`` when they were taken under ``key`` and hold every file asked for, else None.

    Only the files asked for are returned, as a probe for them would.
    """
    entry = _cache_entry(node)
    if key is None or entry is None or entry.get("key") != key:
        return None
    facts = entry["facts"]
    have = facts.get("files") or {}
    if any(path not in have for path in files):
        return None
    return dict(facts, files={path: have[path] for path in files})


def cached_files(node):
    """The files whose content the facts kept on ``node`` hold (a new probe reads them again, so none is lost)."""
    entry = _cache_entry(node)
    return sorted((entry["facts"].get("files") or {}) if entry else ())


def cache_annotation(key, facts):
    """The annotation value that keeps ``facts`` on the Node under ``key`` (compact JSON)."""
    return json.dumps({"key": key, "facts": facts}, sort_keys=True, separators=(",", ":"))


def configmap(namespace, sources):
    """The ConfigMap carrying the probe's code; its name changes with the code, so runs never mix versions."""
    digest = code_digest(sources)
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "{0}-{1}".format(APP, digest), "namespace": namespace,
                     "labels": {NAME_LABEL: APP, "app.kubernetes.io/managed-by": "confidential.gpu"}},
        "data": {"{0}.py".format(m): sources[m] for m in SOURCE_MODULES},
    }


def pod_name(node):
    name = "{0}-{1}".format(APP, node)
    if len(name) <= 63:
        return name
    return name[:52].rstrip("-.") + "-" + hashlib.sha256(node.encode()).hexdigest()[:10]


def pod(node, namespace, image, configmap_name, run_id, files=(), deadline=300):
    """One probe pod for ``node``: bound to it by name (no scheduler, cordoned nodes too), privileged,
    host PID namespace and the host's / read-only at /host, gone after it prints its line."""
    package_dir = PACKAGE.replace(".", "/")
    command = ["python3", "-m", MODULE, "--root", HOST_MOUNT]
    for path in files:
        command += ["--file", path]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(node), "namespace": namespace,
                     "labels": {NAME_LABEL: APP, RUN_LABEL: run_id, "app.kubernetes.io/managed-by": "confidential.gpu"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "hostPID": True,
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": int(deadline),
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "probe",
                "image": image,
                "command": command,
                "env": [{"name": "PYTHONPATH", "value": CODE_MOUNT}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "securityContext": {"privileged": True, "runAsUser": 0},
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "host", "mountPath": HOST_MOUNT, "readOnly": True},
                                 {"name": "code", "mountPath": CODE_MOUNT, "readOnly": True}],
            }],
            "volumes": [
                {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
                {"name": "code", "configMap": {"name": configmap_name, "items": [
                    {"key": "{0}.py".format(m), "path": "{0}/{1}.py".format(package_dir, m)} for m in SOURCE_MODULES]}},
            ],
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
