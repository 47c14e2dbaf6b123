# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter that adds (or removes) initdata pinning in the CPU attestation policy the Trustee operator generated.

The trustee role reads the operator's policy from its ConfigMap and writes back what this returns, so the
pinned policy is always the operator's own text plus one rule (module_utils/attestation_policy.py says why).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils.attestation_policy import PolicyError, apply


def attestation_policy_pinning(policy_text, pinning=True):
    """The policy with initdata pinning when ``pinning``, else without ours (the operator's text)."""
    try:
        return apply(policy_text, bool(pinning))
    except PolicyError as exc:
        raise AnsibleFilterError("attestation_policy_pinning: {0}".format(exc))


class FilterModule:
    def filters(self):
        return {"attestation_policy_pinning": attestation_policy_pinning}
