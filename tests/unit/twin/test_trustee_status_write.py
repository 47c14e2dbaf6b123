"""The Trustee twin replaces TrusteeConfig status as the operator's ``r.Status().Update`` does
(confidential-containers/trustee-operator internal/controller/trusteeconfig_controller.go,
``Reconcile``): a field the operator no longer sets does not survive, as it would a merge patch."""

from twin.controllers.trustee import TrusteeConfigController


class _Kube:
    def __init__(self):
        self.calls = []

    def replace(self, p, body):
        self.calls.append(("PUT", p, body))
        return body

    def merge_patch(self, p, body):
        self.calls.append(("PATCH", p, body))
        return body


def test_status_is_replaced_whole():
    kube = _Kube()
    ctl = TrusteeConfigController.__new__(TrusteeConfigController)
    ctl.kube = kube
    tc = {"apiVersion": "confidentialcontainers.org/v1alpha1", "kind": "TrusteeConfig",
          "metadata": {"name": "t", "namespace": "ns", "resourceVersion": "7"},
          "spec": {"profileType": "Permissive"},
          "status": {"isReady": False, "statusDescription": "old", "kbsConfigRef": {"name": "gone"}}}
    ctl.write_status(tc, {"isReady": True, "statusDescription": "new"})
    assert [c[:2] for c in kube.calls] == [("PUT", "/apis/confidentialcontainers.org/v1alpha1/namespaces/ns/trusteeconfigs/t/status")]
    body = kube.calls[0][2]
    assert body["status"] == {"isReady": True, "statusDescription": "new"}
    assert body["metadata"]["resourceVersion"] == "7"  # optimistic concurrency, as Update has
    assert tc["status"]["statusDescription"] == "old"  # the cached object is not edited
