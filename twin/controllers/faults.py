"""Fault injection over the API: the ConfigMap ``twin-system/twin-faults`` (key ``faults.yaml``).

Faults are a list of mappings with a ``kind`` and fields to match, e.g.
``- {kind: csv-failed, package: gpu-operator-certified}`` or
``- {kind: reboot-degrades, node: worker-1}``. Profile faults are always active; these are added
and removed at run time, so a test can ask for a failure in the middle of a bring-up.

Confidential guests (``twin.guest``, read when a kata pod's sandbox starts; fields ``node``,
``namespace``, ``pod``): ``- {kind: guest-gpu-cc-off, node: worker-0}`` hands the guest its GPU out
of CC mode (vectorAdd fails, ``gpu0`` is not affirming); ``- {kind: guest-debug, node: worker-0}``
launches a debug TD / an SNP guest with ``debug_allowed`` (``cpu0`` is not affirming).
"""

from ..controller import Controller
from ..world import FAULTS_CONFIGMAP, FAULTS_NAMESPACE


class FaultsWatcher(Controller):
    name = "faults"
    api_version = "v1"
    plural = "configmaps"

    def reconcile(self, key):
        if key != (FAULTS_NAMESPACE, FAULTS_CONFIGMAP):
            return None
        cm = self.cache("v1", "configmaps").get(FAULTS_CONFIGMAP, FAULTS_NAMESPACE)
        self.world.set_runtime_faults((cm or {}).get("data", {}).get("faults.yaml", "[]"))
        return None


def register(manager, world):
    manager.add(FaultsWatcher(world))
