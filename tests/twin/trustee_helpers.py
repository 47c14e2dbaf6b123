"""What the Trustee tests share: CRDs when no OLM installed them, TLS material, waiting by watching."""

import base64
import json
import time

from twin import crds as crd_table, dns, pki
from twin.kube import ApiError, path

API = "confidentialcontainers.org/v1alpha1"
TRUSTEE_ROWS = [
    ("confidentialcontainers.org", "v1alpha1", "TrusteeConfig", "trusteeconfigs", "Namespaced", {}),
    ("confidentialcontainers.org", "v1alpha1", "KbsConfig", "kbsconfigs", "Namespaced", {}),
]


def ensure_trustee_crds(kube, conformance_dir=None):
    """Serve TrusteeConfig and KbsConfig as the operator's CSV would (real CRDs in conformance mode)."""
    wanted = [crd_table.twin_crd(*row) for row in TRUSTEE_ROWS]
    if conformance_dir:
        real = {c["metadata"]["name"]: c for c in crd_table.real_crds(conformance_dir)}
        wanted = [real.get(c["metadata"]["name"], c) for c in wanted]
    missing = []
    for crd in wanted:
        try:
            kube.get(path("apiextensions.k8s.io/v1", "customresourcedefinitions", crd["metadata"]["name"]))
        except ApiError as exc:
            if exc.status != 404:
                raise
            missing.append(crd)
    if missing:
        crd_table.install(kube, missing)


def wait_for(kube, collection, name, predicate, timeout=60, what=None):
    """Watch ``collection`` until the object ``name`` satisfies ``predicate``; return it."""
    deadline = time.monotonic() + timeout
    seen = "not seen"
    while True:
        listing = kube.list(collection)
        for obj in listing["items"]:
            if obj["metadata"]["name"] == name:
                seen = json.dumps(obj.get("status"))[:400]
                if predicate(obj):
                    return obj
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what or name}; last seen status: {seen}")
        for kind, obj in kube.watch(collection, listing["metadata"]["resourceVersion"],
                                    timeout_seconds=max(1, int(remaining))):
            if kind == "ERROR":
                break
            if kind == "BOOKMARK":  # only a resourceVersion
                continue
            if obj["metadata"]["name"] == name and kind != "DELETED":
                seen = json.dumps(obj.get("status"))[:400]
                if predicate(obj):
                    return obj
            if time.monotonic() > deadline:
                break


def tls_secret(name, namespace, key_pem, cert_pem):
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": base64.b64encode(key_pem).decode()}}


class TrusteePki:
    """A CA, a KBS server certificate for the route host and service names, and a token signer."""

    def __init__(self, route_host, namespace):
        self.ca = pki.CertificateAuthority.create("trustee test CA")
        self.kbs_key, self.kbs_cert = self.ca.issue(
            "kbs", server=True,
            dns=[route_host, "kbs-service", f"kbs-service.{namespace}", f"kbs-service.{namespace}.svc"])
        self.token_key, self.token_cert = self.ca.issue("attestation token signer")

    @property
    def ca_pem(self):
        return self.ca.cert_pem.decode()


def trustee_config(name, namespace, profile="Restricted", **spec):
    body = {"apiVersion": API, "kind": "TrusteeConfig", "metadata": {"name": name, "namespace": namespace},
            "spec": {"profileType": profile, "kbsServiceType": "ClusterIP", **spec}}
    if profile == "Restricted":
        body["spec"].setdefault("httpsSpec", {"tlsSecretName": "kbs-tls-secret"})
        body["spec"].setdefault("attestationTokenVerificationSpec", {"tlsSecretName": "kbs-attestation-token-secret"})
    return body


def route(namespace, name="kbs"):
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": name, "namespace": namespace},
            "spec": {"to": {"kind": "Service", "name": "kbs-service"}, "port": {"targetPort": "kbs-port"},
                     "tls": {"termination": "passthrough"}}}


def zone(kube):
    return dns.entries(kube)


def admitted(obj):
    return any(c.get("type") == "Admitted" and c.get("status") == "True"
               for i in ((obj.get("status") or {}).get("ingress") or []) for c in i.get("conditions") or [])


def set_reference_values(kube, namespace, entries):
    """Write the RVPS ConfigMap in the layout the operator generated (key and shape it chose)."""
    cm = kube.get(path("v1", "configmaps", "trustee-config-rvps-reference-values", namespace))
    (key,) = cm["data"]
    if key == "reference_value":
        # RVPS LocalJson: URL-safe padded base64 of each {"name", "expiration", "value"} record.
        text = json.dumps({e["name"]: base64.urlsafe_b64encode(json.dumps(
            {"name": e["name"], "expiration": e["expiration"], "value": e["value"]}).encode()).decode()
            for e in entries})
    else:
        text = json.dumps(entries)
    kube.merge_patch(path("v1", "configmaps", "trustee-config-rvps-reference-values", namespace), {"data": {key: text}})


def add_resource(kube, namespace, secret):
    """List a secret in kbsSecretResources and wait for the operator to roll the KBS out with it."""
    p = path(API, "kbsconfigs", "trustee-config-kbs-config", namespace)
    kbs = kube.get(p)
    resources = kbs["spec"].get("kbsSecretResources") or []
    if secret in resources:
        return
    kube.merge_patch(p, {"spec": {"kbsSecretResources": resources + [secret]}})

    def rolled_out(dep):
        volumes = dep["spec"]["template"]["spec"].get("volumes") or []
        status = dep.get("status") or {}
        return (any((v.get("secret") or {}).get("secretName") == secret for v in volumes)
                and status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == status.get("replicas", -1) == status.get("availableReplicas"))

    wait_for(kube, path("apps/v1", "deployments", namespace=namespace), "trustee-deployment", rolled_out,
             timeout=60, what=f"the KBS rolled out with resource {secret}")


def restart_kbs(kube, namespace):
    """Replace the KBS pod (what users do after editing its ConfigMaps) and wait until it serves again."""
    pods = path("v1", "pods", namespace=namespace)
    old = {p["metadata"]["uid"] for p in kube.list(pods, labelSelector="app=kbs")["items"]}
    for pod in kube.list(pods, labelSelector="app=kbs")["items"]:
        kube.delete(path("v1", "pods", pod["metadata"]["name"], namespace))
    wait_new_kbs_pod(kube, namespace, old)


def wait_new_kbs_pod(kube, namespace, old_uids):
    deps = path("apps/v1", "deployments", namespace=namespace)

    def settled(dep):
        status = dep.get("status") or {}
        if status.get("observedGeneration", 0) < dep["metadata"]["generation"]:
            return False
        pods = kube.list(path("v1", "pods", namespace=namespace), labelSelector="app=kbs")["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] not in old_uids and not p["metadata"].get("deletionTimestamp")
                 and (p.get("status") or {}).get("phase") == "Running"]
        stale = [p for p in pods if p["metadata"]["uid"] in old_uids]
        return bool(fresh) and not stale and status.get("availableReplicas", 0) >= 1

    wait_for(kube, deps, "trustee-deployment", settled, timeout=60, what="a new KBS pod serving")
