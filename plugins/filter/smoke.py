# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the smoke role: the agent policy it needs and no more, the tampered initdata, a wrong reference value."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils.smoke import (
    SmokeError, agent_policy, tamper, wrong_reference_value)


def smoke_agent_policy(denied):
    """Rego of a kata agent policy allowing every request except those in ``denied``."""
    try:
        return agent_policy(denied)
    except SmokeError as exc:
        raise AnsibleFilterError("smoke_agent_policy: {0}".format(exc))


def smoke_tamper(toml_text):
    """The same initdata with one byte changed (its digest no longer the pinned one)."""
    try:
        return tamper(toml_text)
    except SmokeError as exc:
        raise AnsibleFilterError("smoke_tamper: {0}".format(exc))


def smoke_wrong_reference_value(data, tee):
    """An RVPS ConfigMap's ``data`` with the TEE's launch measurement made wrong (same format)."""
    try:
        return wrong_reference_value(data, tee)
    except SmokeError as exc:
        raise AnsibleFilterError("smoke_wrong_reference_value: {0}".format(exc))


class FilterModule:
    def filters(self):
        return {"smoke_agent_policy": smoke_agent_policy, "smoke_tamper": smoke_tamper,
                "smoke_wrong_reference_value": smoke_wrong_reference_value}
