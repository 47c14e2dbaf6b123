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

import hashlib

from ..controller import Controller
from ..kube import path
from ..world import FAULTS_CONFIGMAP, FAULTS_NAMESPACE

# The twin says which version of the faults it acts on, so a test can watch for it instead of
# guessing how long the informer takes (tests/conftest.py ``set_faults`` waits for it).
OBSERVED = "twin.confidential.gpu/faults-observed"


class FaultsWatcher(Controller):
    name = "faults"
    api_version = "v1"
    plural = "configmaps"

    def reconcile(self, key):
        if key != (FAULTS_NAMESPACE, FAULTS_CONFIGMAP):
            return None
        cm = self.cache("v1", "configmaps").get(FAULTS_CONFIGMAP, FAULTS_NAMESPACE)
        text = (cm or {}).get("data", {}).get("faults.yaml", "[]")
        self.world.set_runtime_faults(text)
        if cm is not None and (cm["metadata"].get("annotations") or {}).get(OBSERVED) != faults_digest(text):
            self.kube.merge_patch(path("v1", "configmaps", FAULTS_CONFIGMAP, FAULTS_NAMESPACE),
                                  {"metadata": {"annotations": {OBSERVED: faults_digest(text)}}})
        return None


def faults_digest(text):
    """The short digest of a faults.yaml text the twin writes in OBSERVED once it acts on it."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def register(manager, world):
    manager.add(FaultsWatcher(world))
