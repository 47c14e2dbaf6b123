# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter of the aap_controller role: a job template's survey made from the roles' argument specs."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils import aap_survey


def aap_survey_spec(variables, argument_specs, name, description=""):
    """AAP survey_spec asking for ``variables`` (module_utils/aap_survey.py)."""
    try:
        return aap_survey.survey_spec(list(variables or []), list(argument_specs or []), name, description)
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError("aap_survey_spec: {0}".format(exc))


class FilterModule:
    def filters(self):
        return {"aap_survey_spec": aap_survey_spec}
