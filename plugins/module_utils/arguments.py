# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of role arguments that an argument spec cannot express: the form of version pins and channel names.

Each role's ``tasks/validate.yml`` runs them (filter ``confidential.gpu.argument_problems``) before its first
change, and ``playbooks/site.yml`` runs every role's ``validate.yml`` before the run's first write, so a
value the cluster would only refuse hours later (after the reboots) is refused at once. Messages name the
variable, the value and what would be valid.
"""

from __future__ import annotations

import re

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_operator

__all__ = ["FORMS", "problem", "problems"]

# name -> (pattern, what a valid value looks like, empty allowed)
FORMS = {
    # What cluster_facts.parse_version reads as a full version: OpenShift's X.Y or X.Y.Z.
    "version": (re.compile(r"^\d+\.\d+(\.\d+)?$"), "a version X.Y or X.Y.Z (numbers only), for example 4.21.9", False),
    # A CSV's spec.version as the catalog lists it (semver; olm_state.normalize_version drops a leading v),
    # e.g. 26.3.1 or the 4.21.0-202511181406 of Red Hat's operators.
    "operator_version": (
        re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"),
        "an operator version X.Y.Z as the catalog lists it (a leading v and a -suffix allowed), for example 26.3.1,"
        " or empty for the channel's newest", True),
    # OLM channel names are the package's own (stable, v26.3, release-1.2); no spaces, no slashes.
    "channel": (
        re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"),
        "an OLM channel name (letters, digits, '.', '_' or '-'), for example stable or v26.3, or empty for the"
        " package's default", True),
}


def problem(variable, value, form):
    """None when ``value`` of ``variable`` has the ``form`` (a key of FORMS, or ``gpu_operator_version``), else why not."""
    if form == "gpu_operator_version":
        found = problem(variable, value, "operator_version")
        if found or not value:
            return found
        reason = gpu_operator.version_problem(value)
        return "{0}={1}: {2}.".format(variable, value, reason) if reason else None
    if form not in FORMS:
        raise ValueError("unknown form {0!r}; one of {1}".format(form, ", ".join(sorted(FORMS) + ["gpu_operator_version"])))
    pattern, valid, empty_ok = FORMS[form]
    if value is None or (isinstance(value, str) and value == ""):
        return None if empty_ok else "{0} is empty: expected {1}.".format(variable, valid)
    if not isinstance(value, str):
        # YAML reads 4.21 as a float and 26 as an int: the pin would lose its form (4.10 becomes 4.1).
        kind = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
        return "{0}={1!r} is a {2}, not a string: quote it in YAML (\"{1}\"); expected {3}.".format(
            variable, value, kind, valid)
    if not pattern.match(value):
        return "{0}={1!r} is not valid: expected {2}.".format(variable, value, valid)
    return None


def problems(checks):
    """The problems of ``{variable: [value, form]}``, in the order given (empty when all are valid)."""
    found = []
    for variable, (value, form) in checks.items():
        message = problem(variable, value, form)
        if message:
            found.append(message)
    return found
