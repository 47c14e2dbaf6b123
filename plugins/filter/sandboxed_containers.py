# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the sandboxed_containers role."""

from __future__ import annotations

from ansible_collections.confidential.gpu.plugins.module_utils import kata_config


def osc_feature_gates(namespace, confidential=True, extra=None):
    """The osc-feature-gates ConfigMap (values as OSC reads them: the strings "true"/"false")."""
    return kata_config.feature_gates(namespace, confidential=confidential, extra=extra or {})


def osc_unified_handler(resources, kataconfigs=None):
    """What to do about spec.unifiedKataCCHandler, from k8s_info results: ``field`` (the served KataConfig CRD
    has it, so the KataConfig we write says false) and ``problem`` (an existing KataConfig has it on; '' if not)."""
    crd = (resources or [None])[0]
    existing = (kataconfigs or [None])[0]
    return {"field": kata_config.unified_handler_field(crd),
            "problem": kata_config.unified_handler_problem(existing) or ""}


class FilterModule:
    def filters(self):
        return {"osc_feature_gates": osc_feature_gates, "osc_unified_handler": osc_unified_handler}
