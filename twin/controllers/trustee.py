"""The Trustee operator twin: TrusteeConfig → KbsConfig → the KBS Deployment, and the KBS that runs in it.

TrusteeConfig ``<N>`` (operators.md §7.1–7.2) generates, in its namespace and owned by it:

* ConfigMaps ``<N>-kbs-config`` (``kbs-config.toml`` for the profile), ``<N>-attestation-policy-cpu``
  (``default_cpu.rego``), ``<N>-attestation-policy-gpu`` (``default_gpu.rego``),
  ``<N>-rvps-reference-values`` (empty) and ``<N>-resource-policy`` (restrictive or permissive). The
  key names of the last two depend on the operator version (``twin.kbs.config.LAYOUTS``). A ConfigMap
  that exists is left as its users made it; only the TLS lines of ``kbs-config.toml`` are merged in.
* Secrets ``<N>-auth-secret`` (an Ed25519 key pair, generated once), ``attestation-status`` (the
  sample resource), and the halves of the TLS secrets the spec names: ``<N>-https-key-secret`` /
  ``<N>-https-cert-secret`` from ``httpsSpec``, ``<N>-attestation-key-secret`` /
  ``<N>-attestation-cert-secret`` from ``attestationTokenVerificationSpec``.
* KbsConfig ``<N>-kbs-config`` naming all of them; manual ``kbsSecretResources``, ``KbsEnvVars``,
  replicas and the certificate cache survive reconciles.

``status.isReady`` mirrors the KbsConfig's. An unknown ``profileType`` falls back to Permissive with
the log line "Unknown profile type".

KbsConfig → Deployment ``trustee-deployment`` (pods ``app=kbs``, port 8080, every ConfigMap and
Secret mounted where kbs-config.toml expects it) and Service ``kbs-service``; ``status.isReady``
once the Deployment is available.

The KBS image runs through the kubelet twin (:class:`KbsWorkload`): the pod's volumes are written to
a directory (its root file system) and a real KBS process (``python -m twin.kbs``) serves from it
on a loopback port, registered with the router twin for container port 8080. The files are read
when the pod starts, as the KBS reads its configuration: edits reach a running KBS when its pod is
replaced. The process stops when its pod goes.
"""

import base64
import copy
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
from ..build import ensure_opa
from ..controller import Controller
from ..kbs import config as kbs_config
from ..kube import ApiError, path
from ..router import ENDPOINTS

log = logging.getLogger("twin.trustee")

API = "confidentialcontainers.org/v1alpha1"
OLM = "operators.coreos.com/v1alpha1"
KBS_IMAGE = "registry.redhat.io/build-of-trustee/trustee-rhel9:1.2"
DEPLOYMENT = "trustee-deployment"
SERVICE = "kbs-service"
PORT = 8080
POLICIES = Path(__file__).resolve().parent.parent / "kbs" / "policies"
REPO = Path(__file__).resolve().parent.parent.parent
READY_DESCRIPTION = "TrusteeConfig is ready and KbsConfig is deployed successfully"


def policy_text(name):
    return (POLICIES / name).read_text()


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
    watches = ((API, "kbsconfigs"), ("v1", "secrets"), ("v1", "configmaps"), (OLM, "clusterserviceversions"))

    def map_event(self, kind, obj):
        namespace = obj["metadata"].get("namespace")
        return [(namespace, t["metadata"]["name"]) for t in self.cache(API, "trusteeconfigs").items()
                if t["metadata"]["namespace"] == namespace]

    # -- helpers -------------------------------------------------------------------------------

    def _create(self, p, body):
        try:
            self.kube.create(p, body)
            return True
        except ApiError as exc:
            if exc.status != 409:  # created meanwhile (our cache lags our own writes): keep what is there
                raise
            return False

    def _ensure_configmap(self, namespace, name, key, content, owner):
        existing = self.cache("v1", "configmaps").get(name, namespace) or self.kube.get_or_none(
            path("v1", "configmaps", name, namespace))
        if existing is not None:
            return existing
        self._create(path("v1", "configmaps", namespace=namespace), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
            "data": {key: content}})
        log.info("%s/%s: generated", namespace, name)
        return None

    def _secret(self, namespace, name):
        return self.cache("v1", "secrets").get(name, namespace) or self.kube.get_or_none(
            path("v1", "secrets", name, namespace))

    def _ensure_secret(self, namespace, name, data, owner, replace=False, secret_type="Opaque"):
        existing = self._secret(namespace, name)
        if existing is None:
            self._create(path("v1", "secrets", namespace=namespace), {
                "apiVersion": "v1", "kind": "Secret", "type": secret_type,
                "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
                "data": data})
            log.info("%s/%s: generated", namespace, name)
        elif replace and (existing.get("data") or {}) != data:
            self.kube.merge_patch(path("v1", "secrets", name, namespace), {"data": data})
            log.info("%s/%s: updated from its source secret", namespace, name)

    def _split(self, namespace, source_name, halves, owner):
        """Copy a kubernetes.io/tls secret's key and certificate into the two secrets the KBS mounts."""
        source = self._secret(namespace, source_name)
        if source is None:
            return f"secret {source_name} (named in the TrusteeConfig) does not exist in {namespace}"
        data = source.get("data") or {}
        missing = [k for k in ("tls.crt", "tls.key") if k not in data]
        if missing:
            return f"secret {source_name} has no {' or '.join(missing)} (a kubernetes.io/tls secret is expected)"
        (key_secret, key_name), (cert_secret, cert_name) = halves
        self._ensure_secret(namespace, key_secret, {key_name: data["tls.key"]}, owner, replace=True)
        self._ensure_secret(namespace, cert_secret, {cert_name: data["tls.crt"]}, owner, replace=True)
        return None

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

        kbs_cm = f"{name}-kbs-config"
        existing = self._ensure_configmap(namespace, kbs_cm, "kbs-config.toml",
                                          kbs_config.render(profile, layout, spec.get("tlsConfig")), owner)
        if existing is not None:
            text = (existing.get("data") or {}).get("kbs-config.toml", "")
            merged = kbs_config.merge_tls(text, spec.get("tlsConfig"))
            if merged != text:
                self.kube.merge_patch(path("v1", "configmaps", kbs_cm, namespace),
                                      {"data": {"kbs-config.toml": merged}})
        names = {
            "cpu": f"{name}-attestation-policy-cpu",
            "gpu": f"{name}-attestation-policy-gpu",
            "rvps": f"{name}-rvps-reference-values",
            "resource": f"{name}-resource-policy",
        }
        self._ensure_configmap(namespace, names["cpu"], "default_cpu.rego", policy_text("default_cpu.rego"), owner)
        self._ensure_configmap(namespace, names["gpu"], "default_gpu.rego", policy_text("default_gpu.rego"), owner)
        self._ensure_configmap(namespace, names["rvps"], layout["rvps_key"], layout["rvps_empty"], owner)
        resource_policy = ("resource-policy-restrictive.rego" if profile == "Restricted"
                           else "resource-policy-permissive.rego")
        self._ensure_configmap(namespace, names["resource"], layout["resource_policy_key"],
                               policy_text(resource_policy), owner)

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
        current = tc.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            self.kube.merge_patch(path(API, "trusteeconfigs", name, namespace, "status"), {"status": status})
        return None


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


def pod_volumes(spec, layout):
    """(volumes, mounts) of the KBS container for a KbsConfig spec."""
    volumes, mounts = [], []

    def add(volume_name, source, mount_path, sub_path=None):
        volumes.append({"name": volume_name, **source})
        mount = {"name": volume_name, "mountPath": mount_path, "readOnly": True}
        if sub_path:
            mount["subPath"] = sub_path
        mounts.append(mount)

    def configmap(name):
        return {"configMap": {"name": name}}

    def secret(name):
        return {"secret": {"secretName": name}}

    add("kbs-config", configmap(spec["kbsConfigMapName"]), str(Path(kbs_config.KBS_CONFIG).parent))
    if spec.get("kbsAuthSecretName"):
        add("auth-secret", secret(spec["kbsAuthSecretName"]), str(Path(kbs_config.AUTH_PUBLIC_KEY).parent))
    for field, volume_name, target in (
            ("kbsHttpsKeySecretName", "https-key", kbs_config.HTTPS_KEY),
            ("kbsHttpsCertSecretName", "https-cert", kbs_config.HTTPS_CERT),
            ("kbsAttestationKeySecretName", "attestation-key", kbs_config.TOKEN_KEY),
            ("kbsAttestationCertSecretName", "attestation-cert", kbs_config.TOKEN_CERT)):
        if spec.get(field):
            add(volume_name, secret(spec[field]), str(Path(target).parent))
    opa_dir = f"{kbs_config.POLICY_DIR}/opa"
    if spec.get("kbsAttestationPolicyConfigMapName"):
        add("attestation-policy-cpu", configmap(spec["kbsAttestationPolicyConfigMapName"]),
            f"{opa_dir}/default_cpu.rego", "default_cpu.rego")
    if spec.get("kbsGpuAttestationPolicyConfigMapName"):
        add("attestation-policy-gpu", configmap(spec["kbsGpuAttestationPolicyConfigMapName"]),
            f"{opa_dir}/default_gpu.rego", "default_gpu.rego")
    if spec.get("kbsResourcePolicyConfigMapName"):
        add("resource-policy", configmap(spec["kbsResourcePolicyConfigMapName"]), kbs_config.RESOURCE_POLICY,
            layout["resource_policy_key"])
    if spec.get("kbsRvpsRefValuesConfigMapName"):
        add("reference-values", configmap(spec["kbsRvpsRefValuesConfigMapName"]), layout["rvps_path"],
            layout["rvps_key"])
    for index, name in enumerate(spec.get("kbsSecretResources") or []):
        add(f"resource-{index}", secret(name), f"{kbs_config.REPOSITORY}/default/{name}")
    return volumes, mounts


class KbsConfigController(Controller):
    name = "kbsconfig"
    api_version = API
    plural = "kbsconfigs"
    watches = (("apps/v1", "deployments"), ("v1", "configmaps"), ("v1", "secrets"), (OLM, "clusterserviceversions"))

    def map_event(self, kind, obj):
        namespace = obj["metadata"].get("namespace")
        return [(namespace, k["metadata"]["name"]) for k in self.cache(API, "kbsconfigs").items()
                if k["metadata"]["namespace"] == namespace]

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

    def reconcile(self, key):
        namespace, name = key
        kbs = self.cache(API, "kbsconfigs").get(name, namespace)
        if kbs is None or kbs["metadata"].get("deletionTimestamp"):
            return None
        spec = kbs.get("spec") or {}
        owner = _owner(kbs)
        ready = False
        if not spec.get("kbsConfigMapName"):
            self._status(kbs, False)
            return None
        missing = self._missing(namespace, spec)
        if missing:
            # A pod would sit in ContainerCreating on volumes that cannot be set up; say what is missing.
            log.info("%s/%s: waiting for %s", namespace, name, ", ".join(missing))
            self._status(kbs, False)
            return None
        layout = kbs_config.layout_for(operator_version(self.cache(OLM, "clusterserviceversions"), namespace))
        volumes, mounts = pod_volumes(spec, layout)
        env = [{"name": k, "value": str(v)} for k, v in sorted((spec.get("KbsEnvVars") or {}).items())]
        replicas = (spec.get("KbsDeploymentSpec") or {}).get("replicas")
        labels = {"app": "kbs"}
        template = {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "kbs", "image": KBS_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/kbs", "--config-file", kbs_config.KBS_CONFIG],
                "ports": [{"name": "kbs-port", "containerPort": PORT, "protocol": "TCP"}],
                "env": env, "volumeMounts": mounts}],
                "volumes": volumes},
        }
        desired = {"replicas": 1 if replicas is None else replicas,
                   "selector": {"matchLabels": labels}, "template": template}
        dep = self.cache("apps/v1", "deployments").get(DEPLOYMENT, namespace)
        dp = path("apps/v1", "deployments", DEPLOYMENT, namespace)
        if dep is None:
            try:
                self.kube.create(path("apps/v1", "deployments", namespace=namespace), {
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": DEPLOYMENT, "namespace": namespace, "labels": labels,
                                 "ownerReferences": [owner]},
                    "spec": desired})
            except ApiError as exc:
                if exc.status != 409:
                    raise
        else:
            current = dep["spec"]
            current_container = current["template"]["spec"]["containers"][0]
            wanted_container = template["spec"]["containers"][0]
            drift = (current.get("replicas") != desired["replicas"]
                     or current["template"]["spec"].get("volumes") != volumes
                     or any(current_container.get(k) != wanted_container[k]
                            for k in ("image", "env", "volumeMounts", "ports", "command")))
            if drift:
                body = copy.deepcopy(dep)
                body["spec"]["replicas"] = desired["replicas"]
                body["spec"]["template"]["spec"]["volumes"] = volumes
                body["spec"]["template"]["spec"]["containers"][0].update(wanted_container)
                self.kube.replace(dp, body)
                log.info("%s/%s: %s updated", namespace, name, DEPLOYMENT)
            status = dep.get("status") or {}
            ready = (status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
                     and any(c.get("type") == "Available" and c.get("status") == "True"
                             for c in status.get("conditions") or [])
                     and status.get("availableReplicas", 0) >= 1
                     and status.get("updatedReplicas", 0) >= desired["replicas"])
        service = self.cache("v1", "services").get(SERVICE, namespace)
        if service is None:
            try:
                self.kube.create(path("v1", "services", namespace=namespace), {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": SERVICE, "namespace": namespace, "labels": labels,
                                 "ownerReferences": [owner]},
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


def materialize(kube, pod, container, root):
    """Write the container's mounted ConfigMaps and Secrets under ``root`` at their mount paths."""
    namespace = pod["metadata"]["namespace"]
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
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
        target = root / mount["mountPath"].lstrip("/")
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


class KbsWorkload(workloads.Workload):
    name = "trustee-kbs"

    def claims(self, ctx):
        return ctx.container.get("image", "").startswith(KBS_IMAGE.rsplit(":", 1)[0])

    def run(self, ctx):
        pod = ctx.pod
        meta = pod["metadata"]
        namespace, pod_name, uid = meta["namespace"], meta["name"], meta["uid"]
        write = ctx.extra.get("log") if ctx.extra else None
        state = Path(ctx.world.state_dir or "/tmp")
        root = state / "pods" / namespace / f"{pod_name}-{uid[:8]}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        try:
            materialize(ctx.world.kube, pod, ctx.container, root)
        except FileNotFoundError as exc:
            shutil.rmtree(root, ignore_errors=True)
            return workloads.Result(exit_code=1, log=f"{exc}\n")
        opa = ensure_opa(log=lambda m: log.info("%s", m))
        argv = [sys.executable, "-m", "twin.kbs", "--root", str(root), "--listen", "127.0.0.1:0", "--opa", str(opa)]
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


def register(manager, world):
    workloads.register(KbsWorkload())
    manager.informer("v1", "services")
    manager.add(TrusteeConfigController(world))
    manager.add(KbsConfigController(world))
    manager.add(KbsPodReaper(world))
