# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# A wait of minutes to hours prints its progress while it runs (plugin_utils/progress.py); kubernetes.core's
# action underneath resolves a relative kubeconfig in files/ and decrypts vaulted ones.
from __future__ import annotations

from ansible_collections.confidential.gpu.plugins.plugin_utils.progress import ProgressActionModule


class ActionModule(ProgressActionModule):
    pass
