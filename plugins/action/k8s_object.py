# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# kubernetes.core's action plugin resolves a relative kubeconfig in files/ and decrypts vaulted ones.
from __future__ import annotations

from ansible_collections.kubernetes.core.plugins.action.k8s_info import ActionModule as K8sActionModule


class ActionModule(K8sActionModule):
    pass
