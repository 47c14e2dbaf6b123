"""The Trustee operator twin and its KBS: generated objects, user edits kept, and real attestation exchanges.

The exchange tests attest a simulated TDX VM (twin.tee) with the collection's own initdata through
the passthrough route, verifying the KBS certificate against the test CA, and check the EAR token
and the secret; the negative cases are the ones users need to see refused (anchors T7).
"""

import base64
import time

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import ear
from plugins.module_utils import initdata
from tests.twin.trustee_helpers import (
    API,
    TrusteePki,
    add_resource,
    admitted,
    ensure_trustee_crds,
    restart_kbs,
    route,
    set_reference_values,
    tls_secret,
    trustee_config,
    wait_for,
    zone,
)
from twin import tee
from twin.kbs.client import KbsClient, KbsClientError, token_claims
from twin.kbs import config as kbs_config
from twin.kube import path

pytestmark = pytest.mark.twin


def _ready(obj):
    return (obj.get("status") or {}).get("isReady") is True


@pytest.fixture
def trustee(twin, namespace, twin_crds):
    """A Restricted TrusteeConfig with its TLS secrets and a passthrough route, ready."""
    kube = twin.kube
    ensure_trustee_crds(kube, twin_crds)
    kube.create(path("route.openshift.io/v1", "routes", namespace=namespace), route(namespace))
    host = wait_for(kube, path("route.openshift.io/v1", "routes", namespace=namespace), "kbs", admitted,
                    what="route kbs admitted")["spec"]["host"]
    material = TrusteePki(host, namespace)
    secrets = path("v1", "secrets", namespace=namespace)
    kube.create(secrets, tls_secret("kbs-tls-secret", namespace, material.kbs_key, material.kbs_cert))
    kube.create(secrets, tls_secret("kbs-attestation-token-secret", namespace, material.token_key, material.token_cert))
    kube.create(secrets, {"metadata": {"name": "kbsres1"}, "stringData": {"key1": "the-workload-secret"}})
    kube.create(path(API, "trusteeconfigs", namespace=namespace), trustee_config("trustee-config", namespace))
    tc = wait_for(kube, path(API, "trusteeconfigs", namespace=namespace), "trustee-config", _ready, timeout=90,
                  what="TrusteeConfig ready")
    return {"namespace": namespace, "host": host, "pki": material, "tc": tc, "kube": kube}


def _configmap(kube, namespace, name):
    return kube.get(path("v1", "configmaps", name, namespace))


@pytest.fixture
def node(twin):
    import yaml

    profile = yaml.safe_load((twin.state / "profile.yaml").read_text())
    return profile, next(n for n in profile["nodes"] if (n.get("tee") or {}).get("type"))


def _client(trustee):
    url = f"https://{trustee['host']}"
    return KbsClient(url, trustee["pki"].ca_pem, zone=zone(trustee["kube"]))


# -- generated objects -------------------------------------------------------------------------------


def test_trusteeconfig_generates_the_red_hat_objects(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    tc = trustee["tc"]
    assert tc["status"]["statusDescription"] == "TrusteeConfig is ready and KbsConfig is deployed successfully"
    assert tc["status"]["kbsConfigRef"]["name"] == "trustee-config-kbs-config"
    keys = {name: sorted(_configmap(kube, ns, name)["data"]) for name in (
        "trustee-config-kbs-config", "trustee-config-attestation-policy-cpu", "trustee-config-attestation-policy-gpu",
        "trustee-config-rvps-reference-values", "trustee-config-resource-policy")}
    assert keys == {
        "trustee-config-kbs-config": ["kbs-config.toml"],
        "trustee-config-attestation-policy-cpu": ["default_cpu.rego"],
        "trustee-config-attestation-policy-gpu": ["default_gpu.rego"],
        "trustee-config-rvps-reference-values": ["reference_value"],
        "trustee-config-resource-policy": ["resource-policy.rego"],
    }
    toml = _configmap(kube, ns, "trustee-config-kbs-config")["data"]["kbs-config.toml"]
    assert "insecure_http = false" in toml and 'authorization_mode = "DenyAll"' in toml
    assert '[attestation_service.verifier_config.nvidia_verifier]\ntype = "Remote"' in toml
    secrets = {s["metadata"]["name"]: s for s in kube.list(path("v1", "secrets", namespace=ns))["items"]}
    assert sorted(secrets["trustee-config-auth-secret"]["data"]) == ["privateKey", "publicKey"]
    assert base64.b64decode(secrets["trustee-config-auth-secret"]["data"]["publicKey"]).startswith(
        b"-----BEGIN PUBLIC KEY-----")
    assert sorted(secrets["trustee-config-https-key-secret"]["data"]) == ["privateKey"]
    assert sorted(secrets["trustee-config-https-cert-secret"]["data"]) == ["certificate"]
    assert sorted(secrets["trustee-config-attestation-key-secret"]["data"]) == ["token.key"]
    assert sorted(secrets["trustee-config-attestation-cert-secret"]["data"]) == ["token.crt"]
    assert "attestation-status" in secrets
    kbs = kube.get(path(API, "kbsconfigs", "trustee-config-kbs-config", ns))
    assert kbs["spec"]["kbsDeploymentType"] == "AllInOneDeployment"
    assert kbs["spec"]["kbsSecretResources"] == ["attestation-status"]
    assert kbs["spec"]["kbsRvpsRefValuesConfigMapName"] == "trustee-config-rvps-reference-values"
    assert kbs["status"]["isReady"] is True
    dep = kube.get(path("apps/v1", "deployments", "trustee-deployment", ns))
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "kbs"}
    svc = kube.get(path("v1", "services", "kbs-service", ns))
    assert svc["spec"]["ports"][0]["name"] == "kbs-port" and svc["spec"]["ports"][0]["port"] == 8080
    # Everything generated goes with the TrusteeConfig (owner references for the garbage collector).
    cm = _configmap(kube, ns, "trustee-config-attestation-policy-cpu")
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "TrusteeConfig"


def test_user_edits_of_generated_objects_survive_reconciles(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    cpu = path("v1", "configmaps", "trustee-config-attestation-policy-cpu", ns)
    edited = _configmap(kube, ns, "trustee-config-attestation-policy-cpu")["data"]["default_cpu.rego"] + "\n# ours\n"
    kube.merge_patch(cpu, {"data": {"default_cpu.rego": edited}})
    kbs_cm = path("v1", "configmaps", "trustee-config-kbs-config", ns)
    toml = _configmap(kube, ns, "trustee-config-kbs-config")["data"]["kbs-config.toml"] + "\n# tuned by hand\n"
    kube.merge_patch(kbs_cm, {"data": {"kbs-config.toml": toml}})
    add_resource(kube, ns, "kbsres1")
    # A spec change makes the operator reconcile everything it generates.
    kube.merge_patch(path(API, "trusteeconfigs", "trustee-config", ns), {"spec": {"tlsConfig": {"profile": "modern"}}})
    merged = wait_for(kube, path("v1", "configmaps", namespace=ns), "trustee-config-kbs-config",
                      lambda cm: 'tls_profile = "modern"' in cm["data"]["kbs-config.toml"], what="TLS merged in")
    assert "# tuned by hand" in merged["data"]["kbs-config.toml"]
    assert 'tls_profile = "intermediate"' not in merged["data"]["kbs-config.toml"]
    assert _configmap(kube, ns, "trustee-config-attestation-policy-cpu")["data"]["default_cpu.rego"] == edited
    kbs = kube.get(path(API, "kbsconfigs", "trustee-config-kbs-config", ns))
    assert kbs["spec"]["kbsSecretResources"] == ["attestation-status", "kbsres1"]


# -- attestation exchanges ---------------------------------------------------------------------------


def _good_reference_values(profile, node):
    return tee.reference_values(profile["openshift"]["version"], node["tee"]["type"], gpu=True, host_spec=node)


def test_attestation_exchange_affirms_and_releases_the_secret(trustee, node):
    kube, ns = trustee["kube"], trustee["namespace"]
    profile, host = node
    set_reference_values(kube, ns, _good_reference_values(profile, host))
    add_resource(kube, ns, "kbsres1")
    restart_kbs(kube, ns)
    url = f"https://{trustee['host']}"
    toml = initdata.render(url, kbs_cert=trustee["pki"].ca_pem)
    vm = tee.launch(host, profile["openshift"]["version"], initdata_toml=toml)
    client = _client(trustee)
    token = client.attest(vm, initdata_toml=toml)
    # The KBS's certificate verified against our CA for the route host (SNI through the router).
    assert ("DNS", trustee["host"]) in client.last_peer_certificate["subjectAltName"]
    claims = token_claims(token)
    assert {n: s["ear.status"] for n, s in claims["submods"].items()} == {"cpu0": "affirming", "gpu0": "affirming"}
    cpu0 = claims["submods"]["cpu0"]
    evidence = cpu0["ear.veraison.annotated-evidence"]
    assert evidence["init_data"] == initdata.bindings(toml)["tdx_mrconfigid"]
    assert evidence["init_data_claims"]["aa.toml"]["token_configs"]["kbs"]["url"] == url
    assert cpu0["ear.trustworthiness-vector"]["hardware"] == 2
    # The collection's own EAR reader agrees: signed by our token certificate, init_data and KBS URL as expected.
    verdict = ear.inspect(token, key=trustee["pki"].token_cert.decode(),
                          expected_init_data=initdata.bindings(toml)["tdx_mrconfigid"], expected_kbs_url=url,
                          require_gpu=True)
    assert verdict["ok"], verdict["problems"]
    assert client.resource("default/kbsres1/key1") == b"the-workload-secret"
    assert client.resource("default/attestation-status/status") == b"success"
    with pytest.raises(KbsClientError) as missing:
        client.resource("default/kbsres1/nope")
    assert missing.value.status == 404
    # The token also works on its own (Authorization: Bearer), verified against the token certificate.
    fresh = _client(trustee)
    fresh.key = client.key
    assert fresh.resource("default/kbsres1/key1", bearer=token) == b"the-workload-secret"
    logs = kube.request("GET", path("v1", "pods", _kbs_pod(kube, ns), ns, "log"))
    assert "NRAS at https://nras.attestation.nvidia.com/v4/attest cannot be reached from the twin" in logs


def _kbs_pod(kube, namespace):
    pods = kube.list(path("v1", "pods", namespace=namespace), labelSelector="app=kbs")["items"]
    return next(p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running")


def test_tampered_initdata_is_refused(trustee, node):
    profile, host = node
    url = f"https://{trustee['host']}"
    launched = initdata.render(url, kbs_cert=trustee["pki"].ca_pem)
    vm = tee.launch(host, profile["openshift"]["version"], initdata_toml=launched)
    # Same document, the agent policy loosened after launch: the bytes (and digest) differ.
    tampered = launched.replace("default ReadStreamRequest := false", "default ReadStreamRequest := true")
    assert tampered != launched
    client = _client(trustee)
    with pytest.raises(KbsClientError) as refused:
        client.attest(vm, initdata_toml=tampered)
    assert refused.value.status == 401 and refused.value.kind == "AttestationError"
    assert "MRCONFIGID is different" in refused.value.detail
    with pytest.raises(KbsClientError) as no_token:
        client.resource("default/attestation-status/status")
    assert no_token.value.status == 401 and no_token.value.kind == "TokenNotFound"


def test_wrong_reference_value_names_the_group_and_denies_the_secret(trustee, node):
    kube, ns = trustee["kube"], trustee["namespace"]
    profile, host = node
    values = _good_reference_values(profile, host)
    for entry in values:
        if entry["name"] == "mr_td":
            entry["value"] = ["00" * 48]  # firmware of another release
    set_reference_values(kube, ns, values)
    add_resource(kube, ns, "kbsres1")
    restart_kbs(kube, ns)
    url = f"https://{trustee['host']}"
    toml = initdata.render(url, kbs_cert=trustee["pki"].ca_pem)
    vm = tee.launch(host, profile["openshift"]["version"], initdata_toml=toml)
    client = _client(trustee)
    claims = token_claims(client.attest(vm, initdata_toml=toml))
    cpu0 = claims["submods"]["cpu0"]
    vector = cpu0["ear.trustworthiness-vector"]
    assert vector["hardware"] == 97  # unrecognized hardware: MRTD not among the reference values
    assert cpu0["ear.status"] == "contraindicated"
    assert claims["submods"]["gpu0"]["ear.status"] == "affirming"
    with pytest.raises(KbsClientError) as denied:
        client.resource("default/kbsres1/key1")
    assert denied.value.status == 403 and denied.value.kind == "PolicyDeny"


def test_permissive_and_unknown_profiles(twin, namespace, twin_crds):
    """Permissive: plain HTTP, permissive resource policy, RUST_LOG=debug; an unknown profile falls back to it."""
    kube = twin.kube
    ensure_trustee_crds(kube, twin_crds)
    body = trustee_config("trustee-config", namespace, profile="Permissive")
    body["spec"]["profileType"] = "Relaxed"  # not a profile: the operator uses Permissive
    kube.create(path(API, "trusteeconfigs", namespace=namespace), body)
    wait_for(kube, path(API, "trusteeconfigs", namespace=namespace), "trustee-config", _ready, timeout=90,
             what="TrusteeConfig ready")
    toml = _configmap(kube, namespace, "trustee-config-kbs-config")["data"]["kbs-config.toml"]
    assert "insecure_http = true" in toml and "insecure_header_jwk = true" in toml and "tls_profile" not in toml
    policy = _configmap(kube, namespace, "trustee-config-resource-policy")["data"]["resource-policy.rego"]
    assert "package policy" in policy and '"resource"' in policy and "submods" not in policy
    kbs = kube.get(path(API, "kbsconfigs", "trustee-config-kbs-config", namespace))
    assert kbs["spec"]["KbsEnvVars"] == {"RUST_LOG": "debug"}
    assert "kbsHttpsKeySecretName" not in kbs["spec"]
    dep = kube.get(path("apps/v1", "deployments", "trustee-deployment", namespace))
    assert {"name": "RUST_LOG", "value": "debug"} in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    # Without httpsSpec the operator's Route terminates TLS at the router (edge).
    route_obj = kube.get(path("route.openshift.io/v1", "routes", "kbs-route", namespace))
    assert route_obj["spec"]["tls"] == {"termination": "edge"}


# -- object for object what the real operator generates (trustee-operator 2c1a593) -------------------

FINALIZER = "kbsconfig.confidentialcontainers.org/finalizer"
MIGRATED = "kbs.confidentialcontainers.org/migrated-from-v1.1.0"
VERSIONS = "kbs.confidentialcontainers.org/configmap-versions"
GENERATED_CMS = ("trustee-config-kbs-config", "trustee-config-rvps-reference-values",
                 "trustee-config-attestation-policy-cpu", "trustee-config-attestation-policy-gpu",
                 "trustee-config-resource-policy")


def _deployment(kube, ns):
    return kube.get(path("apps/v1", "deployments", "trustee-deployment", ns))


def _versions_annotation(kube, ns):
    return ",".join(f"{name}:{_configmap(kube, ns, name)['metadata']['resourceVersion']}" for name in GENERATED_CMS)


def test_operator_objects_route_finalizer_annotations_and_mounts(trustee, twin_crds):
    kube, ns = trustee["kube"], trustee["namespace"]
    route_obj = kube.get(path("route.openshift.io/v1", "routes", "kbs-route", ns))
    assert {k: route_obj["spec"]["to"][k] for k in ("kind", "name")} == {"kind": "Service", "name": "kbs-service"}
    assert route_obj["spec"]["port"] == {"targetPort": "kbs-port"}
    assert route_obj["spec"]["tls"] == {"termination": "passthrough"}  # httpsSpec set
    assert route_obj["metadata"]["ownerReferences"][0]["kind"] == "TrusteeConfig"
    for name in ("trustee-config-kbs-config", "trustee-config-attestation-policy-cpu",
                 "trustee-config-attestation-policy-gpu", "trustee-config-resource-policy",
                 "trustee-config-rvps-reference-values"):  # the last one annotated by the KbsConfig reconciler
        cm = wait_for(kube, path("v1", "configmaps", namespace=ns), name,
                      lambda c: (c["metadata"].get("annotations") or {}).get(MIGRATED) == "v1.2.0",
                      timeout=30, what=f"{name} annotated as migrated")
        assert cm["metadata"]["annotations"][MIGRATED] == "v1.2.0"
    kbs = kube.get(path(API, "kbsconfigs", "trustee-config-kbs-config", ns))
    assert kbs["metadata"]["finalizers"] == [FINALIZER]
    dep = wait_for(kube, path("apps/v1", "deployments", namespace=ns), "trustee-deployment",
                   lambda d: d["spec"]["template"]["metadata"].get("annotations", {}).get(VERSIONS)
                   == _versions_annotation(kube, ns), timeout=30, what="configmap-versions up to date")
    pod_spec = dep["spec"]["template"]["spec"]
    (kbs_container,) = pod_spec["containers"]
    assert kbs_container["image"].endswith("/trustee-rhel9:1.2")
    assert kbs_container["command"] == ["/usr/local/bin/kbs", "--config-file", "/etc/kbs-config/kbs-config.toml"]
    assert kbs_container["ports"][0]["containerPort"] == 8080 and kbs_container["ports"][0]["name"] == "kbs"
    mounts = {m["mountPath"]: m.get("subPath") for m in kbs_container["volumeMounts"]}
    storage = "/opt/confidential-containers/storage"
    assert mounts == {
        "/etc/kbs-config": None, storage: None, f"{storage}/attestation_service_policy": None,
        f"{storage}/attestation_service_policy/default_cpu.rego": "default_cpu.rego",
        f"{storage}/attestation_service_policy/default_gpu.rego": "default_gpu.rego",
        f"{storage}/kbs": None, f"{storage}/kbs/resource-policy.rego": "resource-policy.rego",
        "/etc/auth-secret": None, "/etc/https-key": None, "/etc/https-cert": None,
        "/etc/attestation-key": None, "/etc/attestation-cert": None, f"{storage}/repository": None,
        f"{storage}/local_json": None, f"{storage}/local_json/reference_value": "reference_value"}
    (converter,) = pod_spec["initContainers"]
    assert converter["command"] == ["/secret-converter"] and converter["image"].endswith("/trustee-rhel9-operator:1.2")
    assert {"name": "attestation-status", "mountPath": "/tmp/kbs-secrets/attestation-status"} in [
        {k: m[k] for k in ("name", "mountPath")} for m in converter["volumeMounts"]]
    # Exactly one KBS process per running pod: the operator-image init container is not taken for a KBS.
    pods = kube.list(path("v1", "pods", namespace=ns), labelSelector="app=kbs")["items"]
    assert pods and all(s["state"].get("terminated", {}).get("exitCode") == 0
                        for p in pods for s in (p.get("status") or {}).get("initContainerStatuses") or [])
    if twin_crds:  # conformance mode: the generated ConfigMaps hold upstream's files byte for byte
        from tests.conftest import shared_path

        upstream = shared_path("trustee", "operator-templates")
        for name, key, file in (("trustee-config-attestation-policy-cpu", "default_cpu.rego",
                                 "ear_default_attestation_policy_cpu.rego"),
                                ("trustee-config-attestation-policy-gpu", "default_gpu.rego",
                                 "ear_default_attestation_policy_gpu.rego"),
                                ("trustee-config-resource-policy", "resource-policy.rego",
                                 "resource-policy-restrictive.rego")):
            assert _configmap(kube, ns, name)["data"][key] == (upstream / file).read_text(), name


def test_split_secrets_are_created_once_and_recreated_from_the_current_source(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    secrets = path("v1", "secrets", namespace=ns)
    first = kube.get(path("v1", "secrets", "trustee-config-https-cert-secret", ns))["data"]["certificate"]
    material = trustee["pki"]
    new_key, new_cert = material.ca.issue("kbs renewed", server=True, dns=[trustee["host"]])
    kube.replace(path("v1", "secrets", "kbs-tls-secret", ns), {
        **tls_secret("kbs-tls-secret", ns, new_key, new_cert),
        "metadata": {**kube.get(path("v1", "secrets", "kbs-tls-secret", ns))["metadata"]}})
    # A reconcile after the change (a spec edit it must merge) leaves the split halves as they were.
    kube.merge_patch(path(API, "trusteeconfigs", "trustee-config", ns), {"spec": {"tlsConfig": {"profile": "modern"}}})
    wait_for(kube, path("v1", "configmaps", namespace=ns), "trustee-config-kbs-config",
             lambda cm: 'tls_profile = "modern"' in cm["data"]["kbs-config.toml"], what="a reconcile after the change")
    assert kube.get(path("v1", "secrets", "trustee-config-https-cert-secret", ns))["data"]["certificate"] == first
    # Deleted, the halves come back from the source as it is now.
    kube.delete(path("v1", "secrets", "trustee-config-https-cert-secret", ns))
    kube.delete(path("v1", "secrets", "trustee-config-https-key-secret", ns))
    renewed = wait_for(kube, secrets, "trustee-config-https-cert-secret",
                       lambda s: s["data"]["certificate"] == base64.b64encode(new_cert).decode(), timeout=30,
                       what="the cert half recreated from the renewed source")
    assert renewed["metadata"]["ownerReferences"][0]["kind"] == "TrusteeConfig"
    key_half = wait_for(kube, secrets, "trustee-config-https-key-secret", lambda s: True, timeout=30)
    assert key_half["data"]["privateKey"] == base64.b64encode(new_key).decode()


def _rolled(kube, ns, old_generation):
    def done(dep):
        status = dep.get("status") or {}
        return (dep["metadata"]["generation"] > old_generation
                and status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == status.get("replicas", -1) == status.get("availableReplicas"))
    return wait_for(kube, path("apps/v1", "deployments", namespace=ns), "trustee-deployment", done, timeout=60,
                    what="the KBS rolled out")


def test_a_configmap_edit_rolls_the_kbs_pods(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    before = _deployment(kube, ns)
    policy = _configmap(kube, ns, "trustee-config-resource-policy")["data"]["resource-policy.rego"]
    kube.merge_patch(path("v1", "configmaps", "trustee-config-resource-policy", ns),
                     {"data": {"resource-policy.rego": policy + "\n# reviewed\n"}})
    edited = _configmap(kube, ns, "trustee-config-resource-policy")["metadata"]["resourceVersion"]
    dep = _rolled(kube, ns, before["metadata"]["generation"])
    assert f"trustee-config-resource-policy:{edited}" in dep["spec"]["template"]["metadata"]["annotations"][VERSIONS]


def test_a_foreign_edit_of_the_pod_template_is_reverted(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    before = _deployment(kube, ns)
    kube.merge_patch(path("apps/v1", "deployments", "trustee-deployment", ns), {"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}})
    dep = wait_for(kube, path("apps/v1", "deployments", namespace=ns), "trustee-deployment",
                   lambda d: "kubectl.kubernetes.io/restartedAt" not in d["spec"]["template"]["metadata"].get(
                       "annotations", {}) and d["metadata"]["generation"] >= before["metadata"]["generation"] + 2,
                   timeout=30, what="restartedAt reverted")
    assert dep["spec"]["template"]["metadata"]["annotations"] == before["spec"]["template"]["metadata"]["annotations"]


def test_the_apiserver_tls_profile_wins_over_the_trusteeconfig(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    apiserver = path("config.openshift.io/v1", "apiservers", "cluster")
    original = kube.get(apiserver)["spec"].get("tlsSecurityProfile")
    assert original is None  # as on a fresh OpenShift cluster: the API server applies Intermediate
    try:
        kube.merge_patch(apiserver, {"spec": {"tlsSecurityProfile": {"type": "Modern", "modern": {}}}})
        merged = wait_for(kube, path("v1", "configmaps", namespace=ns), "trustee-config-kbs-config",
                          lambda cm: 'tls_profile = "modern"' in cm["data"]["kbs-config.toml"],
                          what="the APIServer's Modern profile merged in")
        assert 'tls_profile = "intermediate"' not in merged["data"]["kbs-config.toml"]
        # The TrusteeConfig asking for another profile changes nothing while the APIServer sets one.
        kube.merge_patch(path(API, "trusteeconfigs", "trustee-config", ns), {"spec": {"tlsConfig": {"profile": "old"}}})
        kube.merge_patch(apiserver, {"spec": {"tlsSecurityProfile": {
            "type": "Custom", "custom": {"minTLSVersion": "VersionTLS13", "ciphers": ["TLS_AES_128_GCM_SHA256"]}}}})
        custom = wait_for(kube, path("v1", "configmaps", namespace=ns), "trustee-config-kbs-config",
                          lambda cm: 'tls_profile = "custom"' in cm["data"]["kbs-config.toml"], what="Custom merged")
        import tomllib

        server = tomllib.loads(custom["data"]["kbs-config.toml"])["http_server"]
        assert server["tls_min_version"] == "1.3" and server["tls_ciphers"] == "TLS_AES_128_GCM_SHA256"
        assert "tls_max_version" not in server
    finally:
        kube.json_patch(apiserver, [{"op": "remove", "path": "/spec/tlsSecurityProfile"}])
    wait_for(kube, path("v1", "configmaps", namespace=ns), "trustee-config-kbs-config",
             lambda cm: 'tls_profile = "old"' in cm["data"]["kbs-config.toml"], what="back to the TrusteeConfig's")


def test_deleting_the_trusteeconfig_runs_the_kbsconfig_finalizer(trustee):
    kube, ns = trustee["kube"], trustee["namespace"]
    assert kube.get(path(API, "kbsconfigs", "trustee-config-kbs-config", ns))["metadata"]["finalizers"] == [FINALIZER]
    kube.delete(path(API, "trusteeconfigs", "trustee-config", ns))
    deadline = time.monotonic() + 60
    while kube.get_or_none(path(API, "kbsconfigs", "trustee-config-kbs-config", ns)) is not None \
            or kube.get_or_none(path("apps/v1", "deployments", "trustee-deployment", ns)) is not None:
        assert time.monotonic() < deadline, "KbsConfig or its Deployment still there after the TrusteeConfig went"
        listing = kube.list(path(API, "kbsconfigs", namespace=ns))
        next(iter(kube.watch(path(API, "kbsconfigs", namespace=ns), listing["metadata"]["resourceVersion"],
                             timeout_seconds=5)), None)


# -- no cluster: the twin's own kbs-config template against upstream's ------------------------------

TLS_CASES = [None, {"profile": "intermediate"}, {"profile": "old"}, {"profile": "modern"}, {"profile": "custom"},
             {"profile": "custom", "minVersion": "1.2", "maxVersion": "1.3", "groups": ["x25519", "secp256r1"],
              "ciphers": ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                          "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA"]}]


@pytest.mark.parametrize("profile", ["Restricted", "Permissive", "Relaxed"])
@pytest.mark.parametrize("tls", TLS_CASES, ids=lambda t: "none" if t is None else "-".join(map(str, t.values()))[:40])
def test_the_twins_own_kbs_config_is_upstreams_document(profile, tls):
    import tomllib

    from tests.conftest import shared_path

    upstream = shared_path("trustee", "operator-templates")
    data = kbs_config.tls_data(None, tls)
    theirs = kbs_config.Sources(upstream).kbs_config(profile, data)
    ours = kbs_config.Sources(None).kbs_config(profile, data)
    assert tomllib.loads(ours) == tomllib.loads(theirs)

    # The TLS lines the operator merges into an existing file are the same lines too.
    def tls_lines(text):
        return [line for line in kbs_config.extract_tls_lines(text) if line.strip()]

    assert tls_lines(ours) == tls_lines(theirs)
    edited = theirs + "# ours\n"
    assert kbs_config.merge_tls_settings(edited, ours) == kbs_config.merge_tls_settings(
        kbs_config.merge_tls_settings(edited, ours), ours)


def test_tls_data_precedence_and_cipher_names():

    assert kbs_config.tls_data(None, None) == {"TlsProfile": "intermediate"}
    assert kbs_config.tls_data({"spec": {}}, {"profile": "old"}) == {"TlsProfile": "old"}
    assert kbs_config.tls_data({"spec": {"tlsSecurityProfile": {"type": "Modern"}}}, {"profile": "old"}) == {
        "TlsProfile": "modern"}
    assert kbs_config.tls_data({"spec": {"tlsSecurityProfile": {"type": "Weird"}}}, None) == {
        "TlsProfile": "intermediate"}
    assert kbs_config.openssl_cipher("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
    assert kbs_config.openssl_cipher("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384") == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert kbs_config.openssl_cipher("TLS_AES_256_GCM_SHA384") == "TLS_AES_256_GCM_SHA384"
    with pytest.raises(kbs_config.TemplateError):
        kbs_config.render_go_template("{{range .X}}{{end}}", {})
    assert kbs_config.render_go_template('{{if eq .A "x"}}1{{else}}2{{end}}{{if .B}}b{{end}}', {"A": "x"}) == "1"


def test_the_kbs_workload_claims_only_the_kbs_image():
    from twin import workloads
    from twin.controllers import trustee as operator

    def ctx(image, command=None):
        return workloads.Context(pod={}, container={"image": image, "command": command}, host=None, world=None)

    assert operator.KbsWorkload().claims(ctx(operator.KBS_IMAGE))
    assert not operator.KbsWorkload().claims(ctx(operator.OPERATOR_IMAGE, ["/secret-converter"]))
    assert operator.SecretConverterWorkload().claims(ctx(operator.OPERATOR_IMAGE, ["/secret-converter"]))


def test_the_migration_carries_1_1_plugins_over_as_upstream_does():
    """migration.go extractPluginsSections / removePluginsSections / transformPluginsToV12, on a 1.1 file."""
    old = ('[http_server]\nsockets = ["0.0.0.0:8080"]\n\n[[plugins]]\nname = "resource"\ntype = "LocalFs"\n'
           'dir_path = "/opt/confidential-containers/kbs/repository"\n\n[[plugins]]\nname = "sample"\n\n'
           '[attestation_token]\ninsecure_header_jwk = false\n')
    sections = kbs_config.plugins_sections(old)
    assert sections == ['[[plugins]]\nname = "resource"\ntype = "LocalFs"\n'
                        'dir_path = "/opt/confidential-containers/kbs/repository"\n', '[[plugins]]\nname = "sample"\n']
    assert kbs_config.plugins_to_v12(sections) == ['[[plugins]]\nname = "resource"\nstorage_backend_type = "kvstorage"\n',
                                                   '[[plugins]]\nname = "sample"\n']
    assert kbs_config.without_plugins_sections(old) == (
        '[http_server]\nsockets = ["0.0.0.0:8080"]\n\n[attestation_token]\ninsecure_header_jwk = false\n')
    vault = '[[plugins]]\nname = "resource"\ntype = "Vault"\n'
    assert kbs_config.plugins_to_v12([vault]) == ['[[plugins]]\nname = "resource"\nstorage_backend_type = "Vault"\n']
