# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the gpu_operator role: the ClusterPolicy for an operator version, and the GPUs a probe found."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_operator


def gpu_cluster_policy(version, name="gpu-cluster-policy", cc_mode="on", extra_spec=None):
    """The ClusterPolicy for OSC confidential GPUs, rendered for the installed operator version."""
    try:
        return gpu_operator.cluster_policy(version, name=name, cc_mode=cc_mode, extra_spec=extra_spec or {})
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def gpu_operator_version_problem(version):
    """Empty when the version can run confidential GPUs with OSC, else why not."""
    return gpu_operator.version_problem(version) or ""


def probe_gpu_counts(probe_nodes):
    """Node name to the number of NVIDIA GPUs M(confidential.gpu.node_probe) found on the host."""
    if not isinstance(probe_nodes, dict):
        raise AnsibleFilterError("probe_gpu_counts: expects node_probe's nodes (a dict), got {0}".format(
            type(probe_nodes).__name__))
    return {name: len((facts or {}).get("gpus") or []) for name, facts in probe_nodes.items()}


class FilterModule:
    def filters(self):
        return {"gpu_cluster_policy": gpu_cluster_policy, "gpu_operator_version_problem": gpu_operator_version_problem,
                "probe_gpu_counts": probe_gpu_counts}
