"""The Trustee operator twin: TrusteeConfig → KbsConfig → the KBS Deployment, and the KBS that runs in it.

It generates what the real operator generates, object for object (``openshift/trustee-operator``
2c1a593, ``internal/controller/``; each behaviour cites its function). TrusteeConfig ``<N>``, in its
namespace and owned by it:

* ConfigMaps ``<N>-kbs-config`` (``kbs-config.toml``), ``<N>-attestation-policy-cpu``
  (``default_cpu.rego``), ``<N>-attestation-policy-gpu`` (``default_gpu.rego``),
  ``<N>-resource-policy`` (``resource-policy.rego``), all four annotated
  ``kbs.confidentialcontainers.org/migrated-from-v1.1.0: v1.2.0``, and ``<N>-rvps-reference-values``
  (``reference_value``). Contents come from ``twin.kbs.config.Sources``: upstream's files in
  conformance mode, the twin's own otherwise. An existing ConfigMap is left as users made it; only
  the TLS lines of ``kbs-config.toml`` are merged in, from the APIServer ``cluster`` TLS profile
  when it sets one, else from ``TrusteeConfig.spec.tlsConfig``.
* Secrets ``<N>-auth-secret`` (Ed25519, generated once), ``attestation-status`` (the sample
  resource), and the halves of the kubernetes.io/tls secrets the spec names, ``<N>-https-key-secret``
  / ``<N>-https-cert-secret`` and ``<N>-attestation-key-secret`` / ``<N>-attestation-cert-secret``:
  created once, then preserved (a changed source does not reach them; deleted, they are recreated
  from the source as it is then).
* Route ``kbs-route`` to ``kbs-service`` port ``kbs-port``: passthrough with ``httpsSpec``, edge
  without; created when absent, never updated.
* KbsConfig ``<N>-kbs-config`` naming all of them; manual ``kbsSecretResources``, ``KbsEnvVars``,
  replicas and the certificate cache survive reconciles.

``status.isReady`` mirrors the KbsConfig's. An unknown ``profileType`` falls back to Permissive with
the log line "Unknown profile type". Operator 1.1 (trustee-operator v1.1.0) writes no migration
annotation; 1.2 does, and its KbsConfig reconciler first migrates what 1.1 left (migration.go
migrateConfigMapsIfNeeded): a ``<name>.v1.1`` backup of each ConfigMap, kbs-config and the three
policies deleted for the TrusteeConfig reconciler to make again, the reference-values.json list
rewritten as ``reference_value``.

KbsConfig → Deployment ``trustee-deployment`` (pods ``app=kbs``; the ``secret-converter`` init
container of the operator's image flattens ``kbsSecretResources`` into the repository; the pod
template's ``kbs.confidentialcontainers.org/configmap-versions`` annotation lists the mounted
ConfigMaps' resourceVersions, so every change of one rolls the pods; the operator rewrites the
template it owns, so foreign edits are reverted) and Service ``kbs-service``. The finalizer
``kbsconfig.confidentialcontainers.org/finalizer`` is added when the Deployment is created; on
deletion it deletes the Deployment, then lets the KbsConfig go. ``status.isReady`` once the
Deployment is available.

The KBS image runs through the kubelet twin (:class:`KbsWorkload`): the pod's volumes are written to
a directory (its root file system) and a real KBS process (``python -m twin.kbs``) serves from it
on a loopback port, registered with the router twin for container port 8080. The files are read
when the pod starts, as the KBS reads its configuration. The process stops when its pod goes.
"""

import base64
import copy
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .. import workloads
from ..build import ensure_engine
from ..controller import Controller
from ..kbs import config as kbs_config
from ..kube import ApiError, path
from ..router import ENDPOINTS

log = logging.getLogger("twin.trustee")

API = "confidentialcontainers.org/v1alpha1"
OLM = "operators.coreos.com/v1alpha1"
CONFIG = "config.openshift.io/v1"
ROUTES = "route.openshift.io/v1"
# The images the operator's CSV sets (KBS_IMAGE_NAME, OPERATOR_IMAGE_NAME in config/manager/manager.yaml).
KBS_IMAGE = "registry.redhat.io/build-of-trustee/trustee-rhel9:1.2"
OPERATOR_IMAGE = "registry.redhat.io/build-of-trustee/trustee-rhel9-operator:1.2"
DEPLOYMENT = "trustee-deployment"  # common.go KbsDeploymentName
SERVICE = "kbs-service"  # common.go KbsServiceName
ROUTE = "kbs-route"  # common.go KbsRouteName
PORT = 8080
FINALIZER = "kbsconfig.confidentialcontainers.org/finalizer"  # common.go KbsFinalizerName
MIGRATION_ANNOTATION = "kbs.confidentialcontainers.org/migrated-from-v1.1.0"  # migration.go MigrationAnnotation
MIGRATION_VERSION = "v1.2.0"  # migration.go MigrationVersion
BACKUP_SUFFIX = ".v1.1"  # migration.go BackupSuffix; createConfigMapBackup's annotations:
BACKUP_OF = "kbs.confidentialcontainers.org/backup-of"
BACKUP_TIMESTAMP = "kbs.confidentialcontainers.org/backup-timestamp"
CONFIGMAP_VERSIONS = "kbs.confidentialcontainers.org/configmap-versions"  # getConfigMapVersionAnnotations
REPO = Path(__file__).resolve().parent.parent.parent
READY_DESCRIPTION = "TrusteeConfig is ready and KbsConfig is deployed successfully"


def _b64(text):
    return base64.b64encode(text if isinstance(text, bytes) else text.encode()).decode()


def _owner(obj, controller=True):
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": True}


def operator_version(informer, namespace):
    """The trustee-operator version installed in ``namespace`` (a Succeeded CSV), or None."""
    for csv in informer.items():
        meta = csv["metadata"]
        if meta.get("namespace") == namespace and meta["name"].startswith("trustee-operator.") \
                and (csv.get("status") or {}).get("phase") == "Succeeded":
            return (csv.get("spec") or {}).get("version") or meta["name"].split(".", 1)[1]
    return None


class TrusteeConfigController(Controller):
    name = "trusteeconfig"
    api_version = API
    plural = "trusteeconfigs"
    watches = ((API, "kbsconfigs"), ("v1", "secrets"), ("v1", "configmaps"), (OLM, "clusterserviceversions"),
               (ROUTES, "routes"), (CONFIG, "apiservers"))

    def __init__(self, world, sources=None):
        super().__init__(world)
        self.sources = sources or kbs_config.Sources()

    def map_event(self, kind, obj):
        namespace = obj["metadata"].get("namespace")
        return [(t["metadata"]["namespace"], t["metadata"]["name"]) for t in self.cache(API, "trusteeconfigs").items()
                if namespace is None or t["metadata"]["namespace"] == namespace]  # APIServer is cluster-scoped

    # -- helpers -------------------------------------------------------------------------------

    def _create(self, p, body):
        try:
            self.kube.create(p, body)
            return True
        except ApiError as exc:
            if exc.status != 409:  # created meanwhile (our cache lags our own writes): keep what is there
                raise
            return False

    def _ensure_configmap(self, namespace, name, key, content, owner, annotated=True):
        """createOrUpdate*ConfigMap: create when absent (with the migration annotation from 1.2 on), else leave it."""
        existing = self.cache("v1", "configmaps").get(name, namespace) or self.kube.get_or_none(
            path("v1", "configmaps", name, namespace))
        if existing is not None:
            return existing
        meta = {"name": name, "namespace": namespace, "ownerReferences": [owner]}
        if annotated:
            meta["annotations"] = {MIGRATION_ANNOTATION: MIGRATION_VERSION}
        self._create(path("v1", "configmaps", namespace=namespace),
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {key: content}})
        log.info("%s/%s: generated", namespace, name)
        return None

    def _secret(self, namespace, name):
        return self.cache("v1", "secrets").get(name, namespace) or self.kube.get_or_none(
            path("v1", "secrets", name, namespace))

    def _ensure_secret(self, namespace, name, data, owner, secret_type="Opaque"):
        """Create the secret when absent; an existing one keeps its content ("preserving existing content")."""
        if self._secret(namespace, name) is not None:
            return
        self._create(path("v1", "secrets", namespace=namespace), {
            "apiVersion": "v1", "kind": "Secret", "type": secret_type,
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
            "data": data})
        log.info("%s/%s: generated", namespace, name)

    def _split(self, namespace, source_name, halves, owner):
        """Split a kubernetes.io/tls secret into the two secrets the KBS mounts, once.

        createOrUpdateHttpsSecrets / createOrUpdateAttestationSecrets: the source must exist, be of
        type kubernetes.io/tls and hold tls.key and tls.crt; each half is created only when absent
        (createOrUpdateHttpsKeySecret & co. log "already exists, preserving existing content").
        """
        source = self._secret(namespace, source_name)
        if source is None:
            return f"secret {source_name} (named in the TrusteeConfig) does not exist in {namespace}"
        if source.get("type") != "kubernetes.io/tls":
            return f"secret {source_name} is not of type kubernetes.io/tls, got {source.get('type') or 'Opaque'}"
        data = source.get("data") or {}
        for key in ("tls.key", "tls.crt"):
            if key not in data:
                return f"{key} not found in TLS secret {source_name}"
        (key_secret, key_name), (cert_secret, cert_name) = halves
        self._ensure_secret(namespace, key_secret, {key_name: data["tls.key"]}, owner)
        self._ensure_secret(namespace, cert_secret, {cert_name: data["tls.crt"]}, owner)
        return None

    def _ensure_route(self, namespace, owner, termination):
        """createKbsRoute: Route kbs-route to kbs-service port kbs-port, created when absent, never updated."""
        if self.cache(ROUTES, "routes").get(ROUTE, namespace) is not None:
            return
        if self.kube.get_or_none(path(ROUTES, "routes", ROUTE, namespace)) is not None:
            return
        created = self._create(path(ROUTES, "routes", namespace=namespace), {
            "apiVersion": ROUTES, "kind": "Route",
            "metadata": {"name": ROUTE, "namespace": namespace, "ownerReferences": [owner]},
            "spec": {"to": {"kind": "Service", "name": SERVICE}, "port": {"targetPort": "kbs-port"},
                     "tls": {"termination": termination}}})
        if created:
            log.info("%s/%s: created (%s termination)", namespace, ROUTE, termination)

    def apiserver(self):
        """The cluster's APIServer ``cluster`` object, or None (not OpenShift, or not there)."""
        return self.cache(CONFIG, "apiservers").get("cluster")

    # -- reconcile -----------------------------------------------------------------------------

    def reconcile(self, key):
        namespace, name = key
        tc = self.cache(API, "trusteeconfigs").get(name, namespace)
        if tc is None or tc["metadata"].get("deletionTimestamp"):
            return None
        spec = tc.get("spec") or {}
        profile = spec.get("profileType")
        if profile not in ("Permissive", "Restricted"):
            log.info("%s/%s: Unknown profile type %r; using Permissive", namespace, name, profile)
            profile = "Permissive"
        version = operator_version(self.cache(OLM, "clusterserviceversions"), namespace)
        layout = kbs_config.layout_for(version)
        owner = _owner(tc)
        problems = []
        sources = self.sources
        # generateKbsTomlConfig: TLS data from the APIServer first (GetTLSConfigFromCluster).
        tls = kbs_config.tls_data(self.apiserver(), spec.get("tlsConfig"))

        kbs_cm = f"{name}-kbs-config"
        generated = sources.kbs_config(profile, tls, layout)
        # 2c1a593 annotates all four it generates (1711d5a added kbs-config; v1.2.1 left it out, so its first
        # reconcile "migrated" a fresh one); v1.1.0 knows no annotation.
        annotated = layout["migrates"]
        existing = self._ensure_configmap(namespace, kbs_cm, kbs_config.KBS_CONFIG_KEY, generated, owner, annotated)
        if existing is not None:
            # createOrUpdateKbsConfigMap: an existing file only has its TLS lines merged (tlsmerge.go).
            text = (existing.get("data") or {}).get(kbs_config.KBS_CONFIG_KEY, "")
            merged = kbs_config.merge_tls_settings(text, generated)
            if merged != text:
                self.kube.merge_patch(path("v1", "configmaps", kbs_cm, namespace),
                                      {"data": {kbs_config.KBS_CONFIG_KEY: merged}})
                log.info("%s/%s: TLS settings merged (%s)", namespace, kbs_cm, tls.get("TlsProfile"))
        names = {
            "cpu": f"{name}-attestation-policy-cpu",
            "gpu": f"{name}-attestation-policy-gpu",
            "rvps": f"{name}-rvps-reference-values",
            "resource": f"{name}-resource-policy",
        }
        self._ensure_configmap(namespace, names["cpu"], kbs_config.CPU_POLICY_KEY, sources.cpu_policy(), owner, annotated)
        self._ensure_configmap(namespace, names["gpu"], kbs_config.GPU_POLICY_KEY, sources.gpu_policy(), owner, annotated)
        # generateRvpsReferenceValuesConfigMap sets no migration annotation (the KbsConfig reconciler adds it).
        self._ensure_configmap(namespace, names["rvps"], layout["rvps_key"], sources.reference_values(layout), owner,
                               annotated=False)
        self._ensure_configmap(namespace, names["resource"], layout["resource_policy_key"],
                               sources.resource_policy(profile), owner, annotated)

        auth = f"{name}-auth-secret"
        if self._secret(namespace, auth) is None:
            private = ed25519.Ed25519PrivateKey.generate()
            self._ensure_secret(namespace, auth, {
                "privateKey": _b64(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())),
                "publicKey": _b64(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))},
                owner)
        self._ensure_secret(namespace, "attestation-status", {"status": _b64("success")}, owner)

        kbs_spec = {
            "kbsConfigMapName": kbs_cm,
            "kbsAuthSecretName": auth,
            "kbsServiceType": spec.get("kbsServiceType") or "ClusterIP",
            "kbsDeploymentType": "AllInOneDeployment",
            "kbsSecretResources": ["attestation-status"],
            "kbsAttestationPolicyConfigMapName": names["cpu"],
            "kbsGpuAttestationPolicyConfigMapName": names["gpu"],
            "kbsResourcePolicyConfigMapName": names["resource"],
            "kbsRvpsRefValuesConfigMapName": names["rvps"],
            "KbsDeploymentSpec": {"replicas": 1},
        }
        if profile == "Permissive":
            kbs_spec["KbsEnvVars"] = {"RUST_LOG": "debug"}
        https = (spec.get("httpsSpec") or {}).get("tlsSecretName")
        if https:
            problem = self._split(namespace, https, ((f"{name}-https-key-secret", "privateKey"),
                                                     (f"{name}-https-cert-secret", "certificate")), owner)
            if problem:
                problems.append(problem)
            kbs_spec["kbsHttpsKeySecretName"] = f"{name}-https-key-secret"
            kbs_spec["kbsHttpsCertSecretName"] = f"{name}-https-cert-secret"
        token = (spec.get("attestationTokenVerificationSpec") or {}).get("tlsSecretName")
        if token:
            problem = self._split(namespace, token, ((f"{name}-attestation-key-secret", "token.key"),
                                                     (f"{name}-attestation-cert-secret", "token.crt")), owner)
            if problem:
                problems.append(problem)
            kbs_spec["kbsAttestationKeySecretName"] = f"{name}-attestation-key-secret"
            kbs_spec["kbsAttestationCertSecretName"] = f"{name}-attestation-cert-secret"

        kbs_name = f"{name}-kbs-config"
        kbs = self.cache(API, "kbsconfigs").get(kbs_name, namespace)
        if kbs is None:
            created = self._create(path(API, "kbsconfigs", namespace=namespace), {
                "apiVersion": API, "kind": "KbsConfig",
                "metadata": {"name": kbs_name, "namespace": namespace, "ownerReferences": [owner]},
                "spec": kbs_spec})
            if created:
                log.info("%s/%s: KbsConfig %s created (profile %s, operator %s)", namespace, name, kbs_name, profile,
                         version or "unknown")
        else:
            merged = merge_kbs_spec(kbs_spec, kbs.get("spec") or {})
            if merged != (kbs.get("spec") or {}):
                body = copy.deepcopy(kbs)
                body["spec"] = merged
                self.kube.replace(path(API, "kbsconfigs", kbs_name, namespace), body)

        # Reconcile: passthrough with HTTPS in the pod, edge otherwise.
        self._ensure_route(namespace, owner, "passthrough" if https else "edge")

        kbs_ready = bool(kbs and (kbs.get("status") or {}).get("isReady"))
        ready = kbs_ready and not problems
        if problems:
            description = "; ".join(problems)
        elif ready:
            description = READY_DESCRIPTION
        else:
            description = "KbsConfig is not ready yet"
        status = {"isReady": ready, "statusDescription": description}
        if kbs is not None:
            status["kbsConfigRef"] = {"apiVersion": API, "kind": "KbsConfig", "name": kbs_name,
                                      "namespace": namespace, "uid": kbs["metadata"]["uid"]}
        if (tc.get("status") or {}) != status:
            self.write_status(tc, status)
        return None

    def write_status(self, tc, status):
        """The whole status, replaced: the operator sets its fields and calls ``r.Status().Update``
        (confidential-containers/trustee-operator internal/controller/trusteeconfig_controller.go,
        ``Reconcile``), so a field it no longer sets (a stale kbsConfigRef) does not survive as
        with a merge patch; the resourceVersion read makes a stale write a conflict (retried)."""
        body = copy.deepcopy(tc)  # tc is the informer's cached object: never changed in place
        body["status"] = status
        meta = tc["metadata"]
        self.kube.replace(path(API, "trusteeconfigs", meta["name"], meta["namespace"], "status"), body)


def merge_kbs_spec(generated, current):
    """The KbsConfig spec after a reconcile: generated fields, with the user's own additions kept."""
    merged = copy.deepcopy(generated)
    resources = list(generated.get("kbsSecretResources") or [])
    for secret in current.get("kbsSecretResources") or []:
        if secret not in resources:
            resources.append(secret)
    merged["kbsSecretResources"] = resources
    if current.get("KbsEnvVars"):
        merged["KbsEnvVars"] = dict(generated.get("KbsEnvVars") or {}, **current["KbsEnvVars"])
    replicas = (current.get("KbsDeploymentSpec") or {}).get("replicas")
    if replicas is not None:
        merged["KbsDeploymentSpec"] = {"replicas": replicas}
    if current.get("kbsLocalCertCacheSpec"):
        merged["kbsLocalCertCacheSpec"] = copy.deepcopy(current["kbsLocalCertCacheSpec"])
    return merged


# -- KbsConfig → Deployment and Service ------------------------------------------------------------

SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}}  # createSecurityContext


def pod_volumes(spec, layout=None):
    """(volumes, kbs mounts, secret-converter staging mounts) for a KbsConfig spec (AllInOneDeployment).

    The order and paths of newKbsDeployment: the kbs-config directory, emptyDirs for storage, the
    AS policy directory, the KBS policy directory, the repository and the RVPS directory, with the
    generated files mounted into them by subPath; secrets in /etc/<volume>; kbsSecretResources only
    in the init container, at /tmp/kbs-secrets/<secret> (createKbsSecretResourcesVolume).
    """
    layout = layout or kbs_config.LAYOUTS[kbs_config.DEFAULT_LAYOUT]
    volumes, mounts = [], []
    c = kbs_config

    def volume(name, source):
        volumes.append({"name": name, **source})

    def mount(name, mount_path, sub_path=None):
        m = {"name": name, "mountPath": mount_path}
        if sub_path:
            m["subPath"] = sub_path
        mounts.append(m)

    def empty_dir(name, mount_path):
        volume(name, {"emptyDir": {"medium": "Memory"}})
        mount(name, mount_path)

    volume("kbs-config", {"configMap": {"name": spec["kbsConfigMapName"]}})
    mount("kbs-config", c.KBS_CONFIG_DIR)
    empty_dir("base-storage-dir", c.STORAGE)
    empty_dir("attestation-policy-dir", c.AS_POLICY_DIR)
    if spec.get("kbsAttestationPolicyConfigMapName"):
        volume("attestation-policy", {"configMap": {"name": spec["kbsAttestationPolicyConfigMapName"]}})
        mount("attestation-policy", c.CPU_POLICY, c.CPU_POLICY_KEY)
    if spec.get("kbsGpuAttestationPolicyConfigMapName"):
        volume("attestation-policy-gpu", {"configMap": {"name": spec["kbsGpuAttestationPolicyConfigMapName"]}})
        mount("attestation-policy-gpu", c.GPU_POLICY, c.GPU_POLICY_KEY)
    empty_dir("resource-policy-dir", c.KBS_STORAGE_DIR)
    if spec.get("kbsResourcePolicyConfigMapName"):
        volume("resource-policy", {"configMap": {"name": spec["kbsResourcePolicyConfigMapName"]}})
        mount("resource-policy", c.RESOURCE_POLICY, layout["resource_policy_key"])
    volume("auth-secret", {"secret": {"secretName": spec.get("kbsAuthSecretName") or ""}})
    mount("auth-secret", c.AUTH_SECRET_DIR)
    for entry in (spec.get("kbsLocalCertCacheSpec") or {}).get("secrets") or []:
        volume(entry["secretName"], {"secret": {"secretName": entry["secretName"]}})
        mount(entry["secretName"], entry.get("mountPath") or c.CERT_CACHE_DIR)
    if spec.get("kbsHttpsKeySecretName") and spec.get("kbsHttpsCertSecretName"):
        volume("https-key", {"secret": {"secretName": spec["kbsHttpsKeySecretName"]}})
        mount("https-key", c.HTTPS_KEY_DIR)
        volume("https-cert", {"secret": {"secretName": spec["kbsHttpsCertSecretName"]}})
        mount("https-cert", c.HTTPS_CERT_DIR)
    if spec.get("kbsAttestationKeySecretName") and spec.get("kbsAttestationCertSecretName"):
        volume("attestation-key", {"secret": {"secretName": spec["kbsAttestationKeySecretName"]}})
        mount("attestation-key", c.TOKEN_KEY_DIR)
        volume("attestation-cert", {"secret": {"secretName": spec["kbsAttestationCertSecretName"]}})
        mount("attestation-cert", c.TOKEN_CERT_DIR)
    empty_dir("repository-dir", c.REPOSITORY)
    staging = []
    for name in spec.get("kbsSecretResources") or []:
        volume(name, {"secret": {"secretName": name}})
        staging.append({"name": name, "mountPath": f"{c.SECRETS_STAGING}/{name}"})
    empty_dir("rvps-dir", c.RVPS_DIR)
    if spec.get("kbsRvpsRefValuesConfigMapName"):
        volume("reference-values", {"configMap": {"name": spec["kbsRvpsRefValuesConfigMapName"]}})
        mount("reference-values", layout.get("rvps_list_file") or c.REFERENCE_VALUES, layout["rvps_key"])
    return volumes, mounts, staging


def _without_defaults(value):
    """A pod template part with the API server's defaults removed, to compare with what we generate."""
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    if not isinstance(value, dict):
        return value
    dropped = {"defaultMode", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
               "resources", "restartPolicy", "dnsPolicy", "schedulerName", "securityContext_pod",
               "terminationGracePeriodSeconds", "protocol"}
    return {k: _without_defaults(v) for k, v in value.items() if k not in dropped}


def template_drift(current, desired, metadata=True):
    """Whether the Deployment's pod template differs from the one the operator generates.

    updateKbsDeployment compares the whole template (apiequality.Semantic.DeepEqual) and writes it
    back, so any foreign edit (an annotation, a label, a container field) is reverted. The twin
    compares the same, less the fields the API server defaults. ``metadata=False``: the 1.1
    operator, which compares and writes only the template's spec.
    """
    cur_meta, want_meta = current.get("metadata") or {}, desired["metadata"]
    if metadata and ((cur_meta.get("annotations") or {}) != want_meta.get("annotations", {}) or
                     (cur_meta.get("labels") or {}) != want_meta.get("labels", {})):
        return True
    cur_spec, want_spec = current.get("spec") or {}, desired["spec"]
    for field in ("containers", "initContainers", "volumes"):
        if _without_defaults(cur_spec.get(field) or []) != _without_defaults(want_spec.get(field) or []):
            return True
    extra = set(cur_spec) - set(want_spec) - {"restartPolicy", "dnsPolicy", "schedulerName", "securityContext",
                                              "terminationGracePeriodSeconds"}
    return bool(extra)


class KbsConfigController(Controller):
    name = "kbsconfig"
    api_version = API
    plural = "kbsconfigs"
    watches = (("apps/v1", "deployments"), ("v1", "configmaps"), ("v1", "secrets"), (OLM, "clusterserviceversions"),
               (CONFIG, "proxies"))

    def map_event(self, kind, obj):
        namespace = obj["metadata"].get("namespace")
        return [(k["metadata"]["namespace"], k["metadata"]["name"]) for k in self.cache(API, "kbsconfigs").items()
                if namespace is None or k["metadata"]["namespace"] == namespace]  # Proxy is cluster-scoped

    def _missing(self, namespace, spec):
        missing = []
        for field in ("kbsConfigMapName", "kbsAttestationPolicyConfigMapName", "kbsGpuAttestationPolicyConfigMapName",
                      "kbsResourcePolicyConfigMapName", "kbsRvpsRefValuesConfigMapName"):
            if spec.get(field) and self.cache("v1", "configmaps").get(spec[field], namespace) is None:
                missing.append(f"configmap {spec[field]}")
        secrets = [spec.get(f) for f in ("kbsAuthSecretName", "kbsHttpsKeySecretName", "kbsHttpsCertSecretName",
                                         "kbsAttestationKeySecretName", "kbsAttestationCertSecretName")]
        for name in [s for s in secrets if s] + list(spec.get("kbsSecretResources") or []):
            if self.cache("v1", "secrets").get(name, namespace) is None:
                missing.append(f"secret {name}")
        return missing

    def _finalize(self, kbs):
        """finalizeKbsConfig: delete the Deployment, then remove the finalizer.

        Upstream returns the Get error when the Deployment is already gone, so the finalizer stays and
        the reconcile is retried; the twin does the same (with a requeue), as a real cluster would.
        """
        meta = kbs["metadata"]
        namespace = meta["namespace"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return None
        dp = path("apps/v1", "deployments", DEPLOYMENT, namespace)
        try:
            self.kube.delete(dp)
        except ApiError as exc:
            if exc.status == 404:
                log.info("%s/%s: finalizer: deployment %s not found; retrying (as the operator does)",
                         namespace, meta["name"], DEPLOYMENT)
                return 30
            raise
        log.info("%s/%s: finalizer: deleted %s; removing %s", namespace, meta["name"], DEPLOYMENT, FINALIZER)
        body = copy.deepcopy(kbs)
        body["metadata"]["finalizers"] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        self.kube.replace(path(API, "kbsconfigs", meta["name"], namespace), body)
        return None

    # -- migrateConfigMapsIfNeeded (internal/controller/migration.go), a 1.2 operator's first step ------------
    # Each ConfigMap the KbsConfig names is moved over once; the migration annotation marks it done. Reads are
    # live, not from the cache: a reconcile right after our own create or delete must see it.

    def _live_configmap(self, namespace, name):
        return self.kube.get_or_none(path("v1", "configmaps", name, namespace))

    def _unmigrated(self, namespace, name):
        """The ConfigMap, read live, when it is there without the migration annotation; else None.

        Every reconcile asks, so the cache answers the common case: a ConfigMap it holds with the
        annotation is done (nothing takes the annotation away)."""
        cached = self.cache("v1", "configmaps").get(name, namespace)
        if cached is not None and MIGRATION_ANNOTATION in (cached["metadata"].get("annotations") or {}):
            return None
        cm = self._live_configmap(namespace, name)
        if cm is None or MIGRATION_ANNOTATION in (cm["metadata"].get("annotations") or {}):
            return None
        return cm

    def _annotate(self, cm):
        """addMigrationAnnotation: a ConfigMap already in the 1.2 format."""
        meta = cm["metadata"]
        self.kube.merge_patch(path("v1", "configmaps", meta["name"], meta["namespace"]),
                              {"metadata": {"annotations": {MIGRATION_ANNOTATION: MIGRATION_VERSION}}})

    def _backup(self, cm):
        """createConfigMapBackup: a copy named <name>.v1.1 with the original's metadata, kept after the migration."""
        meta = cm["metadata"]
        name, namespace = meta["name"] + BACKUP_SUFFIX, meta["namespace"]
        if self._live_configmap(namespace, name) is not None:
            return
        created = meta.get("creationTimestamp", "")
        stamp = created.replace("T", " ").replace("Z", " +0000 UTC") if created else ""  # metav1.Time String()
        annotations = dict(meta.get("annotations") or {}, **{BACKUP_OF: meta["name"], BACKUP_TIMESTAMP: stamp})
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
                "data": dict(cm.get("data") or {})}
        for field in ("labels", "ownerReferences"):
            if meta.get(field):
                body["metadata"][field] = copy.deepcopy(meta[field])
        if cm.get("binaryData"):
            body["binaryData"] = dict(cm["binaryData"])
        self.kube.create(path("v1", "configmaps", namespace=namespace), body)
        log.info("%s/%s: backup of %s made for the migration from 1.1", namespace, name, meta["name"])

    def _migrate_kbs_config(self, namespace, name):
        """migrateKbsConfigMap: back up and delete a 1.1 kbs-config.toml; once the TrusteeConfig reconciler has
        made it again, carry the backup's [[plugins]] sections over (mergePluginsFromBackup)."""
        cm = self._unmigrated(namespace, name)
        if cm is None:
            return
        backup = self._live_configmap(namespace, name + BACKUP_SUFFIX)
        if backup is not None:
            old = (backup.get("data") or {}).get(kbs_config.KBS_CONFIG_KEY)
            plugins = kbs_config.plugins_sections(old) if old is not None else []
            if not plugins:
                self.kube.delete(path("v1", "configmaps", backup["metadata"]["name"], namespace))
                self._annotate(cm)
                return
            text = (cm.get("data") or {}).get(kbs_config.KBS_CONFIG_KEY, "")
            merged = kbs_config.without_plugins_sections(text) + "\n\n" + "\n\n".join(
                kbs_config.plugins_to_v12(plugins))
            self.kube.merge_patch(path("v1", "configmaps", name, namespace), {
                "metadata": {"annotations": {MIGRATION_ANNOTATION: MIGRATION_VERSION}},
                "data": {kbs_config.KBS_CONFIG_KEY: merged}})
            log.info("%s/%s: %d plugin section(s) of the 1.1 configuration merged in", namespace, name, len(plugins))
            return
        if kbs_config.KBS_CONFIG_KEY not in (cm.get("data") or {}):
            self._annotate(cm)
            return
        self._backup(cm)
        self.kube.delete(path("v1", "configmaps", name, namespace))
        log.info("%s/%s: deleted, to be made again in the 1.2 format", namespace, name)

    def _migrate_reference_values(self, namespace, name):
        """migrateRvpsConfigMap: the reference-values.json list becomes reference_value, name -> base64 of the
        entry's compact JSON (its name kept in it), after a backup; a list that does not parse is left."""
        cm = self._unmigrated(namespace, name)
        if cm is None:
            return
        old = (cm.get("data") or {}).get("reference-values.json")
        if old is None:
            self._annotate(cm)
            return
        self._backup(cm)
        try:
            entries = json.loads(old)
        except ValueError:
            log.info("%s/%s: Failed to parse old RVPS format, skipping migration", namespace, name)
            return
        converted = {}
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                # json.Marshal of a map[string]any: keys sorted, no spaces
                converted[entry["name"]] = _b64(json.dumps(entry, sort_keys=True, separators=(",", ":")))
        body = copy.deepcopy(cm)
        data = dict(body.get("data") or {})
        data.pop("reference-values.json", None)
        data["reference_value"] = json.dumps(converted, indent=2, sort_keys=True)
        body["data"] = data
        body["metadata"].setdefault("annotations", {})[MIGRATION_ANNOTATION] = MIGRATION_VERSION
        self.kube.replace(path("v1", "configmaps", name, namespace), body)
        log.info("%s/%s: reference values migrated to the 1.2 format (%d)", namespace, name, len(converted))

    def _migrate_generated(self, namespace, name):
        """migrateGeneratedPolicyConfigMap: a policy without the annotation is backed up and deleted; the
        TrusteeConfig reconciler makes it again from the 1.2 templates."""
        cm = self._unmigrated(namespace, name)
        if cm is None:
            return
        self._backup(cm)
        self.kube.delete(path("v1", "configmaps", name, namespace))
        log.info("%s/%s: deleted, to be made again from the 1.2 templates", namespace, name)

    def _migrate(self, namespace, spec, layout):
        if not layout["migrates"]:
            return
        if spec.get("kbsConfigMapName"):
            self._migrate_kbs_config(namespace, spec["kbsConfigMapName"])
        if spec.get("kbsRvpsRefValuesConfigMapName"):
            self._migrate_reference_values(namespace, spec["kbsRvpsRefValuesConfigMapName"])
        for field in ("kbsResourcePolicyConfigMapName", "kbsAttestationPolicyConfigMapName",
                      "kbsGpuAttestationPolicyConfigMapName"):
            if spec.get(field):
                self._migrate_generated(namespace, spec[field])

    def _configmap_versions(self, namespace, spec):
        """getConfigMapVersionAnnotations: "name:resourceVersion" of each mounted ConfigMap, comma-separated."""
        versions = []
        for field in ("kbsConfigMapName", "kbsRvpsRefValuesConfigMapName", "kbsAttestationPolicyConfigMapName",
                      "kbsGpuAttestationPolicyConfigMapName", "kbsResourcePolicyConfigMapName"):
            name = spec.get(field)
            cm = self.cache("v1", "configmaps").get(name, namespace) if name else None
            if cm is not None:
                versions.append(f"{name}:{cm['metadata']['resourceVersion']}")
        return {CONFIGMAP_VERSIONS: ",".join(versions)} if versions else {}

    def _env(self, spec):
        """buildEnvVars: the cluster Proxy's settings, overridden by KbsEnvVars, sorted by name."""
        env = {}
        proxy = (self.cache(CONFIG, "proxies").get("cluster") or {}).get("spec") or {}
        for field, names in (("httpProxy", ("HTTP_PROXY", "http_proxy")), ("httpsProxy", ("HTTPS_PROXY", "https_proxy")),
                             ("noProxy", ("NO_PROXY", "no_proxy"))):
            if proxy.get(field):
                env.update({n: proxy[field] for n in names})
        env.update({k: str(v) for k, v in (spec.get("KbsEnvVars") or {}).items()})
        return [{"name": k, "value": v} for k, v in sorted(env.items())]

    def template(self, namespace, spec, layout):
        """The pod template newKbsDeployment builds for an AllInOneDeployment."""
        volumes, mounts, staging = pod_volumes(spec, layout)
        labels = {"app": "kbs"}
        return {
            "metadata": {"labels": labels,
                         "annotations": self._configmap_versions(namespace, spec) if layout.get("rollouts") else {}},
            "spec": {
                "initContainers": [{
                    "name": "secret-converter", "image": OPERATOR_IMAGE, "command": ["/secret-converter"],
                    "volumeMounts": mounts + staging,
                    "securityContext": dict(SECURITY_CONTEXT, runAsNonRoot=True)}],
                "containers": [{
                    "name": "kbs", "image": KBS_IMAGE,
                    "ports": [{"containerPort": PORT, "name": "kbs"}],
                    "command": ["/usr/local/bin/kbs", "--config-file", kbs_config.KBS_CONFIG],
                    "securityContext": copy.deepcopy(SECURITY_CONTEXT),
                    "volumeMounts": mounts, "env": self._env(spec)}],
                "volumes": volumes},
        }

    def reconcile(self, key):
        namespace, name = key
        kbs = self.cache(API, "kbsconfigs").get(name, namespace)
        if kbs is None:
            return None
        if kbs["metadata"].get("deletionTimestamp"):
            return self._finalize(kbs)
        spec = kbs.get("spec") or {}
        owner = _owner(kbs)
        ready = False
        if not spec.get("kbsConfigMapName"):
            self._status(kbs, False)
            return None
        layout = kbs_config.layout_for(operator_version(self.cache(OLM, "clusterserviceversions"), namespace))
        self._migrate(namespace, spec, layout)
        missing = self._missing(namespace, spec)
        if missing:
            # A pod would sit in ContainerCreating on volumes that cannot be set up; say what is missing.
            log.info("%s/%s: waiting for %s", namespace, name, ", ".join(missing))
            self._status(kbs, False)
            return None
        template = self.template(namespace, spec, layout)
        replicas = (spec.get("KbsDeploymentSpec") or {}).get("replicas")
        replicas = 1 if replicas is None else replicas
        labels = {"app": "kbs"}
        dep = self.cache("apps/v1", "deployments").get(DEPLOYMENT, namespace)
        dp = path("apps/v1", "deployments", DEPLOYMENT, namespace)
        if dep is None:
            created = False
            try:
                self.kube.create(path("apps/v1", "deployments", namespace=namespace), {
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": DEPLOYMENT, "namespace": namespace, "ownerReferences": [owner]},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                             "template": template}})
                created = True
            except ApiError as exc:
                if exc.status != 409:
                    raise
            if created and FINALIZER not in (kbs["metadata"].get("finalizers") or []):
                # deployOrUpdateKbsDeployment → addKbsConfigFinalizer, right after creating the Deployment.
                body = copy.deepcopy(kbs)
                body["metadata"]["finalizers"] = list(kbs["metadata"].get("finalizers") or []) + [FINALIZER]
                self.kube.replace(path(API, "kbsconfigs", name, namespace), body)
                return None  # the update event brings us back
        else:
            current = dep["spec"]
            if current.get("replicas") != replicas or template_drift(current.get("template") or {}, template,
                                                                     metadata=layout.get("rollouts")):
                body = copy.deepcopy(dep)
                body["spec"]["replicas"] = replicas
                body["spec"]["template"] = template
                if not layout.get("rollouts"):  # 1.1 writes the spec only: foreign metadata stays
                    body["spec"]["template"]["metadata"] = copy.deepcopy(current.get("template", {}).get("metadata") or {})
                self.kube.replace(dp, body)
                log.info("%s/%s: %s updated", namespace, name, DEPLOYMENT)
            status = dep.get("status") or {}
            ready = (status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
                     and any(c.get("type") == "Available" and c.get("status") == "True"
                             for c in status.get("conditions") or [])
                     and status.get("availableReplicas", 0) >= 1
                     and status.get("updatedReplicas", 0) >= replicas)
        service = self.cache("v1", "services").get(SERVICE, namespace)
        if service is None:
            try:
                # newKbsService: no labels; selector app=kbs; port kbs-port 8080 → 8080.
                self.kube.create(path("v1", "services", namespace=namespace), {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": SERVICE, "namespace": namespace, "ownerReferences": [owner]},
                    "spec": {"type": spec.get("kbsServiceType") or "ClusterIP", "selector": labels,
                             "ports": [{"name": "kbs-port", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]}})
            except ApiError as exc:
                if exc.status != 409:
                    raise
        self._status(kbs, ready)
        return None

    def _status(self, kbs, ready):
        if (kbs.get("status") or {}).get("isReady") != ready:
            meta = kbs["metadata"]
            self.kube.merge_patch(path(API, "kbsconfigs", meta["name"], meta["namespace"], "status"),
                                  {"status": {"isReady": ready}})


# -- the KBS image on the kubelet twin -------------------------------------------------------------


class KbsProcesses:
    """Running KBS processes by pod uid, so they stop when their pod goes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_uid = {}

    def add(self, uid, namespace, pod, proc, root):
        with self.lock:
            self.by_uid[uid] = (namespace, pod, proc, root)

    def stop(self, uid):
        with self.lock:
            entry = self.by_uid.pop(uid, None)
        if entry is None:
            return
        namespace, pod, proc, root = entry
        ENDPOINTS.unregister(namespace, pod)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
        log.info("KBS of pod %s/%s stopped", namespace, pod)

    def uids(self):
        with self.lock:
            return list(self.by_uid)


PROCESSES = KbsProcesses()


def pod_root(world, pod):
    """The directory standing for the pod's file system, shared by its init and main containers."""
    meta = pod["metadata"]
    return Path(world.state_dir or "/tmp") / "pods" / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"


def materialize(kube, pod, container, root):
    """Write the container's mounts under ``root``: ConfigMaps and Secrets as files, emptyDirs as directories."""
    namespace = pod["metadata"]["namespace"]
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
        target = root / mount["mountPath"].lstrip("/")
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)  # shared between the pod's containers: never wiped here
            continue
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            obj = kube.get_or_none(path("v1", "configmaps", name, namespace))
            files = {k: v.encode() for k, v in ((obj or {}).get("data") or {}).items()}
            kind = "configmap"
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            obj = kube.get_or_none(path("v1", "secrets", name, namespace))
            files = {k: base64.b64decode(v) for k, v in ((obj or {}).get("data") or {}).items()}
            kind = "secret"
        else:
            continue
        if obj is None:
            raise FileNotFoundError(f'MountVolume.SetUp failed for volume "{mount["name"]}": {kind} "{name}" not found')
        if mount.get("subPath"):
            if mount["subPath"] not in files:
                raise FileNotFoundError(f'{kind} "{name}" has no key "{mount["subPath"]}" (subPath of '
                                        f'volume "{mount["name"]}")')
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[mount["subPath"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            for key, content in files.items():
                (target / key).write_bytes(content)


class SecretConverterWorkload(workloads.Workload):
    """The operator image's ``/secret-converter`` init container (trustee-operator cmd/secret-converter).

    Every file ``/tmp/kbs-secrets/<secret>/<key>`` becomes the flat file
    ``default\\x2F<secret>\\x2F<key>`` in the repository, the name kvstorage's LocalFs backend
    gives the key ``default/<secret>/<key>``.
    """

    name = "trustee-secret-converter"

    def claims(self, ctx):
        return ctx.container.get("image") == OPERATOR_IMAGE and ctx.container.get("command") == ["/secret-converter"]

    def run(self, ctx):
        root = pod_root(ctx.world, ctx.pod)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        try:
            materialize(ctx.world.kube, ctx.pod, ctx.container, root)
        except FileNotFoundError as exc:
            return workloads.Result(exit_code=1, log=f"{exc}\n")
        lines = ["Converting secret directories to flat files..."]
        source = root / kbs_config.SECRETS_STAGING.lstrip("/")
        repository = root / kbs_config.REPOSITORY.lstrip("/")
        secrets = sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
        if not secrets:
            lines.append(f"No secrets found in {kbs_config.SECRETS_STAGING}, skipping conversion")
        for secret in secrets:
            lines.append(f"Processing secret: {secret.name}")
            for file in sorted(f for f in secret.iterdir() if f.is_file() and not f.name.startswith(".")):
                flat = f"default\\x2F{secret.name}\\x2F{file.name}"
                lines.append(f"  Converting {file.name} -> {flat}")
                repository.mkdir(parents=True, exist_ok=True)
                (repository / flat).write_bytes(file.read_bytes())
        if secrets:
            lines.append("Secret conversion complete")
        return workloads.Result(exit_code=0, log="".join(f"{line}\n" for line in lines))


class KbsWorkload(workloads.Workload):
    name = "trustee-kbs"

    def claims(self, ctx):
        # Exactly the KBS image: the operator's own image (the init container) shares its prefix.
        return ctx.container.get("image", "") == KBS_IMAGE

    def run(self, ctx):
        pod = ctx.pod
        meta = pod["metadata"]
        namespace, pod_name, uid = meta["namespace"], meta["name"], meta["uid"]
        write = ctx.extra.get("log") if ctx.extra else None
        root = pod_root(ctx.world, pod)
        root.mkdir(parents=True, exist_ok=True)  # the init container made it, with the repository in it
        try:
            materialize(ctx.world.kube, pod, ctx.container, root)
        except FileNotFoundError as exc:
            shutil.rmtree(root, ignore_errors=True)
            return workloads.Result(exit_code=1, log=f"{exc}\n")
        # Built before the process starts (normally by 'twin build'), so no KBS pod builds it itself.
        engine = ensure_engine(log=lambda m: log.info("%s", m))
        argv = [sys.executable, "-m", "twin.kbs", "--root", str(root), "--listen", "127.0.0.1:0",
                "--engine", str(engine)]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1)
        started, lines = time.monotonic(), []
        port = None
        while time.monotonic() - started < 30:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if " listening on " in line:
                port = int(line.split(" listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
                break
        if port is None:
            proc.kill()
            rest = proc.stdout.read() if proc.stdout else ""
            shutil.rmtree(root, ignore_errors=True)
            return workloads.Result(exit_code=1, log="".join(lines) + (rest or ""))
        ENDPOINTS.register(namespace, pod_name, PORT, ("127.0.0.1", port))
        PROCESSES.add(uid, namespace, pod_name, proc, root)

        def forward():
            for line in proc.stdout:
                if write:
                    write(line)
                log.info("kbs %s/%s: %s", namespace, pod_name, line.rstrip())

        threading.Thread(target=forward, name=f"kbs-log-{pod_name}", daemon=True).start()
        log.info("KBS of pod %s/%s serving on 127.0.0.1:%d", namespace, pod_name, port)
        return workloads.Result(running=True, log="".join(lines))


class KbsPodReaper(Controller):
    """Stops a KBS process when its pod is deleted."""

    name = "kbs-pods"
    api_version = "v1"
    plural = "pods"

    def reconcile(self, key):
        alive = {p["metadata"]["uid"] for p in self.cache("v1", "pods").items()
                 if not p["metadata"].get("deletionTimestamp")}
        for uid in PROCESSES.uids():
            if uid not in alive:
                PROCESSES.stop(uid)
        return None


def seed(kube, profile):
    """What an OpenShift cluster has before anyone installs Trustee: the APIServer and Proxy ``cluster`` objects.

    A fresh cluster's APIServer sets no ``tlsSecurityProfile`` (the API server then applies
    Intermediate, OpenShift's default), so the operator falls back to TrusteeConfig.tlsConfig; the
    Proxy has an empty spec (no proxy).
    """
    for plural, kind, spec in (("apiservers", "APIServer", {"audit": {"profile": "Default"}}),
                               ("proxies", "Proxy", {"trustedCA": {"name": ""}})):
        kube.create_or_get(path(CONFIG, plural), {"apiVersion": CONFIG, "kind": kind,
                                                  "metadata": {"name": "cluster"}, "spec": spec})


def register(manager, world):
    sources = kbs_config.Sources(kbs_config.upstream_dir_of_state(world.state_dir))
    log.info("trustee operator twin: generating from %s",
             sources.folder if sources.upstream else "the twin's own templates and policies")
    workloads.register(SecretConverterWorkload())
    workloads.register(KbsWorkload())
    manager.informer("v1", "services")
    manager.add(TrusteeConfigController(world, sources))
    manager.add(KbsConfigController(world))
    manager.add(KbsPodReaper(world))
