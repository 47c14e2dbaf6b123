# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# This doc fragment is PRIVATE to the confidential.gpu collection.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
"""

    # A module that only reads: nothing to predict, nothing to diff.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
"""

    # Modules of the cgpu action group: one module_defaults block configures them and kubernetes.core's k8s modules.
    ACTIONGROUP_CGPU = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/confidential.gpu.cgpu) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - confidential.gpu.cgpu
"""
