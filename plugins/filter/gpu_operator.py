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


def _probe_nodes(name, probe_nodes):
    if not isinstance(probe_nodes, dict):
        raise AnsibleFilterError("{0}: expects node_probe's nodes (a dict), got {1}".format(
            name, type(probe_nodes).__name__))
    return probe_nodes


def probe_gpu_counts(probe_nodes):
    """Node name to the nvidia.com/pgpu devices the GPUs M(confidential.gpu.node_probe) found make (one per IOMMU group)."""
    return gpu_operator.pgpu_expected(_probe_nodes("probe_gpu_counts", probe_nodes))


def probe_pgpu_problems(probe_nodes):
    """Why the GPUs found could not all be advertised as nvidia.com/pgpu (mixed models on a node); empty when none."""
    return gpu_operator.pgpu_problems(_probe_nodes("probe_pgpu_problems", probe_nodes))


def gpu_operator_spec_problem(extra_spec):
    """Empty when gpu_operator_policy_extra_spec keeps the GPUs nvidia.com/pgpu, else why not."""
    return gpu_operator.spec_problem(extra_spec) or ""


class FilterModule:
    def filters(self):
        return {"gpu_cluster_policy": gpu_cluster_policy, "gpu_operator_version_problem": gpu_operator_version_problem,
                "probe_gpu_counts": probe_gpu_counts, "probe_pgpu_problems": probe_pgpu_problems,
                "gpu_operator_spec_problem": gpu_operator_spec_problem}
