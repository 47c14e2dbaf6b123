# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the tee_hosts role: from node probe facts to MachineConfigs, and from facts to a verdict per node."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils import tee_hosts


def tee_hosts_plan(nodes, pool, tee="auto", iommu=True, require_gpus=True, existing=(), prefix="99"):
    """The MachineConfigs TEE hosts need (``machine_configs``), or why the role must stop first (``stop_message``)."""
    if not isinstance(nodes, dict):
        raise AnsibleFilterError("tee_hosts_plan: expects the node_probe result's nodes (a dict), got {0}".format(
            type(nodes).__name__))
    try:
        return tee_hosts.plan(nodes, pool, tee=tee, iommu=iommu, require_gpus=require_gpus,
                              existing=existing, prefix=str(prefix))
    except ValueError as exc:
        raise AnsibleFilterError("tee_hosts_plan: {0}".format(exc))


def tee_hosts_verify(nodes, tee, iommu=True, require_gpus=True, gpu_driver=""):
    """Per node ``{ok, checks, line}``: does each host now have what the MachineConfigs promised?"""
    return tee_hosts.verify(nodes, tee, iommu=iommu, require_gpus=require_gpus, gpu_driver=gpu_driver or "")


class FilterModule:
    def filters(self):
        return {"tee_hosts_plan": tee_hosts_plan, "tee_hosts_verify": tee_hosts_verify}
