# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter of the roles' validate.yml: what is wrong with version pins and channel names, before anything changes."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils import arguments


def argument_problems(checks):
    """One message per invalid value of ``{variable: [value, form]}`` (module_utils/arguments.py FORMS)."""
    if not isinstance(checks, dict):
        raise AnsibleFilterError("argument_problems: expects {{variable: [value, form]}}, got {0}".format(
            type(checks).__name__))
    try:
        return arguments.problems(checks)
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError("argument_problems: {0}".format(exc))


class FilterModule:
    def filters(self):
        return {"argument_problems": argument_problems}
