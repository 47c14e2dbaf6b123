# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the nfd role: the vendor-guarded TEE NodeFeatureRule, and TEE nodes lacking their extended resource."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils import nfd_labels


def nfd_tee_rule(vendor, namespace="openshift-nfd", name=None):
    """The NodeFeatureRule OSC needs for CPUs of one vendor (NFD's cpu-model.vendor_id: Intel or AMD)."""
    try:
        return nfd_labels.tee_rule(vendor, namespace=namespace, name=name)
    except ValueError as exc:
        raise AnsibleFilterError("nfd_tee_rule: {0}".format(exc))


def nfd_tee_resource_gaps(nodes):
    """One message per TEE node (as wait_for_nodes returns them) without the extended resource its pod VMs take."""
    if not isinstance(nodes, list):
        raise AnsibleFilterError("nfd_tee_resource_gaps: expected the list of nodes wait_for_nodes returns")
    return nfd_labels.resource_gaps(nodes)


class FilterModule:
    def filters(self):
        return {"nfd_tee_rule": nfd_tee_rule, "nfd_tee_resource_gaps": nfd_tee_resource_gaps}
