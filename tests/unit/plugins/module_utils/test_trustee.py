"""trustee: the in-place edit of kbs-config.toml, the egress it implies, readiness of the pieces."""

import tomllib

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import trustee as t

# What an operator generates, in substance (no NVIDIA table: the verifier defaults to Local).
WITHOUT_NVIDIA = """[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = false
# a comment the user wrote
tls_profile = "intermediate"

[attestation_service.verifier_config.snp_verifier]
vcek_sources = [{ type = "OfflineStore" }, { type = "KDS" }]

[[plugins]]
name = "resource"
"""

WITH_LOCAL = """[http_server]
insecure_http = false

[attestation_service.verifier_config.nvidia_verifier]
# chosen during the pilot
type = "Local"

[attestation_service.verifier_config.dcap_verifier]
collateral_service = "https://pccs.example.com/sgx/certification/v4/"
"""


def test_remote_is_appended_and_every_other_line_is_kept():
    edited = t.set_nvidia_verifier(WITHOUT_NVIDIA, "remote")
    assert edited.startswith(WITHOUT_NVIDIA.rstrip("\n"))
    assert edited.endswith('[attestation_service.verifier_config.nvidia_verifier]\ntype = "Remote"\n'
                           'verifier_url = "https://nras.attestation.nvidia.com/v4/attest"\n')
    doc = tomllib.loads(edited)
    assert doc["attestation_service"]["verifier_config"]["nvidia_verifier"] == {
        "type": "Remote", "verifier_url": "https://nras.attestation.nvidia.com/v4/attest"}
    assert doc["plugins"] == [{"name": "resource"}]


def test_an_existing_table_is_rewritten_in_place_keeping_its_comment():
    edited = t.set_nvidia_verifier(WITH_LOCAL, "remote", "https://nras.example.com/v4/attest")
    assert edited == WITH_LOCAL.replace('type = "Local"', 'type = "Remote"\n'
                                        'verifier_url = "https://nras.example.com/v4/attest"')


def test_the_edit_is_idempotent_and_reversible():
    once = t.set_nvidia_verifier(WITHOUT_NVIDIA, "remote")
    assert t.set_nvidia_verifier(once, "remote") == once
    local = t.set_nvidia_verifier(once, "local")
    assert tomllib.loads(local)["attestation_service"]["verifier_config"]["nvidia_verifier"] == {"type": "Local"}


def test_refuses_broken_toml_and_a_conflicting_inline_table():
    with pytest.raises(t.TrusteeConfigError, match="not valid TOML"):
        t.set_nvidia_verifier("[http_server\n", "remote")
    inline = '[attestation_service.verifier_config]\nnvidia_verifier = { type = "Local" }\n'
    with pytest.raises(t.TrusteeConfigError):
        t.set_nvidia_verifier(inline, "remote")
    with pytest.raises(t.TrusteeConfigError, match="valid values: remote, local"):
        t.set_nvidia_verifier(WITHOUT_NVIDIA, "nras")


def test_egress_follows_the_configuration():
    remote = t.summary(t.set_nvidia_verifier(WITHOUT_NVIDIA, "remote"))
    assert [e["url"] for e in remote["egress"]] == [
        "https://nras.attestation.nvidia.com/v4/attest",
        "https://nras.attestation.nvidia.com/.well-known/jwks.json",
        "https://api.trustedservices.intel.com/sgx/certification/v4/",
        "https://kdsintf.amd.com",
    ]
    assert remote["nvidia_verifier"] == "Remote" and remote["https"] is True
    local = t.summary(WITH_LOCAL)
    # A local PCCS replaces Intel PCS; no VCEK sources configured means the default, KDS.
    assert [e["url"] for e in local["egress"]] == ["https://pccs.example.com/sgx/certification/v4/",
                                                   "https://kdsintf.amd.com"]
    offline = t.summary('[attestation_service.verifier_config.snp_verifier]\n'
                        'vcek_sources = [{ type = "OfflineStore" }]\n')
    assert "AMD KDS" not in {e["service"] for e in offline["egress"]}
    assert offline["nvidia_verifier"] == "Local"


def test_the_intel_collateral_service_is_read_from_the_dcap_verifier_table():
    # The table the operator's kbs-config-restricted.toml names (shared/trustee/operator-templates).
    text = ('[attestation_service.verifier_config.dcap_verifier]\n'
            'collateral_service = "https://pccs.example.com/sgx/certification/v4/"\n')
    intel = [e for e in t.summary(text)["egress"] if e["service"] == "Intel PCS"]
    assert [e["url"] for e in intel] == ["https://pccs.example.com/sgx/certification/v4/"]


def test_route_state():
    assert t.route_state(None)[0] is False
    pending = {"spec": {"host": "kbs.apps.x", "tls": {"termination": "passthrough"}}}
    assert t.route_state(pending) == (False, "kbs.apps.x", "passthrough", "not admitted yet")
    admitted = dict(pending, status={"ingress": [{"host": "kbs.apps.x",
                                                  "conditions": [{"type": "Admitted", "status": "True"}]}]})
    assert t.route_state(admitted) == (True, "kbs.apps.x", "passthrough", "admitted")
    rejected = dict(pending, status={"ingress": [{"conditions": [
        {"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed", "message": "taken"}]}]})
    assert t.route_state(rejected)[3] == "not admitted: HostAlreadyClaimed taken"


def _deployment(generation=2, observed=2, updated=1, available=1, replicas=1, available_condition="True"):
    return {"metadata": {"generation": generation}, "spec": {"replicas": 1},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available,
                       "replicas": replicas, "conditions": [{"type": "Available", "status": available_condition}]}}


def test_deployment_state_needs_the_latest_generation_rolled_out():
    assert t.deployment_state(_deployment())[0] is True
    assert "not observed" in t.deployment_state(_deployment(observed=1))[1]
    # A restart in progress: the new pod is up but the old one still counts.
    assert t.deployment_state(_deployment(replicas=2, updated=1))[0] is False
    assert t.deployment_state(_deployment(available_condition="False"))[0] is False
    assert t.deployment_state(None)[0] is False


def test_trusteeconfig_state():
    assert t.trusteeconfig_state({"status": {"isReady": True, "statusDescription": "fine"}}) == (True, "fine")
    assert t.trusteeconfig_state({"status": {"isReady": False, "statusDescription": "secret x missing"}}) == (
        False, "TrusteeConfig not ready: secret x missing")


def test_parse_resolve():
    assert t.parse_resolve(["KBS.apps.x:443:127.0.0.1:31000"]) == {("kbs.apps.x", 443): ("127.0.0.1", 31000)}
    assert t.parse_resolve(["kbs.apps.x:443:[::1]:8443"]) == {("kbs.apps.x", 443): ("::1", 8443)}
    with pytest.raises(ValueError, match="host:port:address:port"):
        t.parse_resolve(["kbs.apps.x:127.0.0.1"])


def _with_versions(annotation):
    meta = {"annotations": {t.CONFIGMAP_VERSIONS: annotation}} if annotation is not None else {}
    return {"spec": {"template": {"metadata": meta}}}


def test_configmap_versions_must_name_the_current_version_of_every_mounted_configmap():
    # openshift/trustee-operator kbsconfig_controller.go getConfigMapVersionAnnotations: "name:rv" joined by ",".
    spec = {"kbsConfigMapName": "tc-kbs-config", "kbsRvpsRefValuesConfigMapName": "tc-rvps-reference-values",
            "kbsAttestationPolicyConfigMapName": "tc-attestation-policy-cpu"}
    cms = {"tc-kbs-config": {"metadata": {"resourceVersion": "10"}},
           "tc-rvps-reference-values": {"metadata": {"resourceVersion": "12"}},
           "tc-attestation-policy-cpu": None}  # absent: the operator skips it too
    ok = t.configmap_versions_state(_with_versions("tc-kbs-config:10,tc-rvps-reference-values:12"), spec, cms)[0]
    assert ok
    ok, message = t.configmap_versions_state(_with_versions("tc-kbs-config:10,tc-rvps-reference-values:11"), spec, cms)
    assert not ok and "tc-rvps-reference-values" in message
    # An operator before 1.2 has no such annotation: nothing to compare, the role restarts the KBS itself.
    assert t.configmap_versions_state(_with_versions(None), spec, cms)[0] is True


# -- the 1.2 operator's migration of what 1.1 left ------------------------------------------------------

SPEC = {"kbsConfigMapName": "tc-kbs-config", "kbsRvpsRefValuesConfigMapName": "tc-rvps-reference-values",
        "kbsAttestationPolicyConfigMapName": "tc-attestation-policy-cpu"}


def _cm(name, migrated=True):
    annotations = {t.MIGRATION_ANNOTATION: "v1.2.0"} if migrated else {}
    return {"metadata": {"name": name, "annotations": annotations}}


def _csv(name, phase):
    return {"metadata": {"name": name}, "spec": {"version": name.split(".v", 1)[1]}, "status": {"phase": phase}}


def test_the_version_is_the_succeeded_trustee_csvs():
    csvs = [_csv("gpu-operator-certified.v26.3.3", "Succeeded"), _csv("trustee-operator.v1.1.0", "Replacing"),
            _csv("trustee-operator.v1.2.1", "Succeeded")]
    assert t.operator_version(csvs) == "1.2.1"
    assert t.operator_version(csvs[:2]) is None


@pytest.mark.parametrize("version, migrates", [("1.1.0", False), ("v1.2.1", True), ("1.10.0", True),
                                               ("0.19.0", False), (None, False), ("next", False)])
def test_only_operators_from_1_2_migrate(version, migrates):
    assert t.migrates(version) is migrates


def test_migration_waits_for_each_configmap_to_be_made_again_and_marked():
    names = list(SPEC.values())
    done, message = t.migration_state("1.2.1", SPEC, {n: _cm(n) for n in names})
    assert done, message
    gone = {n: _cm(n) for n in names if n != "tc-kbs-config"}
    assert t.migration_state("1.2.1", SPEC, gone) == (
        False, "ConfigMap tc-kbs-config is gone, for the operator to make it again in the 1.2 format")
    unmarked = dict(gone, **{"tc-kbs-config": _cm("tc-kbs-config", migrated=False)})
    assert t.migration_state("1.2.1", SPEC, unmarked) == (
        False, "ConfigMap tc-kbs-config is not migrated from the 1.1 format yet")
    # an operator that does not migrate is never waited for
    assert t.migration_state("1.1.0", SPEC, {})[0] is True
