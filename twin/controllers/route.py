"""The smallest twin, and the pattern for the others: the OpenShift router admitting Routes.

openshift-apiserver defaults ``spec.host`` to ``<name>-<namespace>.<apps domain>`` and the
router reports ``status.ingress[].conditions[Admitted]``. Reconcile reads the cached object,
writes only what differs (so watch events settle), and never sleeps.
"""

from ..controller import Controller
from ..kube import path
from ..kubelet import now


class RouteAdmitter(Controller):
    name = "route"
    api_version = "route.openshift.io/v1"
    plural = "routes"

    def reconcile(self, key):
        namespace, name = key
        route = self.cache(self.api_version, self.plural).get(name, namespace)
        if route is None or route["metadata"].get("deletionTimestamp"):
            return None
        p = path(self.api_version, self.plural, name, namespace)
        host = route.get("spec", {}).get("host")
        if not host:
            host = f"{name}-{namespace}.{self.world.profile['openshift']['apps_domain']}"
            self.kube.merge_patch(p, {"spec": {"host": host}})
            return None  # the update event brings us back with the host set
        ingress = (route.get("status") or {}).get("ingress") or []
        if ingress and ingress[0].get("host") == host:
            return None
        self.kube.merge_patch(p + "/status", {"status": {"ingress": [{
            "host": host, "routerName": "default", "wildcardPolicy": "None",
            "routerCanonicalHostname": f"router-default.{self.world.profile['openshift']['apps_domain']}",
            "conditions": [{"type": "Admitted", "status": "True", "lastTransitionTime": now()}],
        }]}})
        return None


def register(manager, world):
    manager.add(RouteAdmitter(world))
