"""The twin's attestation and resource policies, evaluated as Trustee does, on verifier-made claims.

The engine is the twin's (``twin/engine``: regorus, queried for ``data.policy.trust_claims`` only,
tiers by the ear crate). The claims come from the twin's own verifiers over simulated evidence, and the
policy input is built by the broker's ``transform_claims``, so what is tested here is what a KBS
evaluates. Expected trust-vector values are the documented ones (attestation.md §3.2-3.3, §4):
33/97/36 defaults, hardware 2 on a matched genuine platform, TDX executables 4 when the event-log
digests are compared with a list (veritas' format), configuration 96 for unpinned initdata.
"""

from pathlib import Path

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import attestation_policy, initdata
from twin import build, profile as profiles, tee
from twin.kbs import verifier
from twin.kbs.attestation import init_data_claims
from twin.kbs.engine import Engine, EngineError

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "twin" / "kbs" / "policies"
URL = "https://kbs-trustee-operator-system.apps.twin.example.com"


@pytest.fixture(scope="module")
def engine():
    """The twin's attestation engine (regorus, as upstream)."""
    eng = Engine(build.ensure_engine(log=lambda msg: None))
    yield eng
    eng.close()


def status_of(engine, vector):
    return engine.tiers(vector)["status"]


def _node(tee_type):
    profile = profiles.load("default" if tee_type == "tdx" else "snp-rtx-pro-6000")
    return profile, next(n for n in profile["nodes"] if (n.get("tee") or {}).get("type") == tee_type)


def cpu_input(tee_type, toml=None, debug=False, send_initdata=True):
    """The annotated evidence a policy sees for a VM launched with ``toml``, as the twin KBS builds it."""
    profile, node = _node(tee_type)
    vm = tee.launch(node, profile["openshift"]["version"], initdata_toml=toml, debug=debug)
    runtime = {"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}}
    sent = toml if send_initdata else None
    if tee_type == "tdx":
        claims = verifier.verify_tdx(vm.evidence(runtime), runtime, sent, lambda quote: "UpToDate")
    else:
        claims = verifier.verify_snp(vm.evidence(runtime), runtime, sent)
    return profile, node, {"tee": tee_type, "claims": claims, "init_data_claims": init_data_claims(sent),
                           "runtime_data_claims": runtime}


def reference(profile, node, tee_type, extra=None):
    entries = tee.reference_values(profile["openshift"]["version"], tee_type, host_spec=node)
    values = {e["name"]: e["value"] for e in entries}
    values.update(extra or {})
    return values


def vector(engine, policy, doc, ref):
    """The trust vector ``policy`` gives: ``doc`` is verifier claims (made into the broker's input) or an input."""
    if "claims" in doc and "tee" in doc:
        doc = engine.transform_claims(doc["tee"], doc["claims"], doc["init_data_claims"], doc["runtime_data_claims"])
    return engine.appraise(policy, doc, ref)["trust_vector"]


DEFAULT_CPU = (POLICIES / "default_cpu.rego").read_text()


@pytest.mark.parametrize("tee_type", ["tdx", "snp"])
def test_the_collections_pinning_keeps_every_other_claim(engine, tee_type):
    toml = initdata.render(URL)
    profile, node, doc = cpu_input(tee_type, toml)
    good = reference(profile, node, tee_type)
    binding = initdata.bindings(toml)["tdx_mrconfigid" if tee_type == "tdx" else "snp_hostdata"]
    pinned = attestation_policy.pin(DEFAULT_CPU)
    for ref in (good, {}, dict(good, mr_td=["00" * 48], snp_launch_measurement=["00" * 48])):
        assert vector(engine, DEFAULT_CPU, doc, ref) == vector(engine, pinned, doc, dict(ref, init_data=[binding]))


def test_tdx_values_are_the_documented_ones(engine):
    profile, node, doc = cpu_input("tdx", initdata.render(URL))
    good = reference(profile, node, "tdx")
    v = vector(engine, DEFAULT_CPU, doc, good)
    # executables 4: veritas-style lists never equal the event-log digest (attestation.md §3.4 a).
    assert (v["hardware"], v["executables"], v["configuration"]) == (2, 4, 2)
    assert status_of(engine, v) == "affirming"
    # Scalar event-log values reach the fully matched branch.
    scalar = dict(good, tdvfkernel=good["tdvfkernel"][0], tdvfkernelparams=good["tdvfkernelparams"][0])
    assert vector(engine, DEFAULT_CPU, doc, scalar)["executables"] == 3
    nothing = vector(engine, DEFAULT_CPU, doc, {})
    assert (nothing["hardware"], nothing["executables"], nothing["configuration"]) == (97, 33, 36)
    assert status_of(engine, nothing) == "contraindicated"
    without_xfam = {k: v for k, v in good.items() if k != "xfam"}
    assert vector(engine, DEFAULT_CPU, doc, without_xfam)["configuration"] == 36
    debug_doc = cpu_input("tdx", initdata.render(URL), debug=True)[2]
    assert vector(engine, DEFAULT_CPU, debug_doc, good)["configuration"] == 36


def test_snp_values_are_the_documented_ones(engine):
    profile, node, doc = cpu_input("snp", initdata.render(URL))
    good = reference(profile, node, "snp")
    assert {k: vector(engine, DEFAULT_CPU, doc, good)[k] for k in ("hardware", "executables", "configuration")} == {
        "hardware": 2, "executables": 3, "configuration": 2}
    # Without the platform values (veritas does not give them) configuration falls back to 3, still affirming.
    partial = {k: v for k, v in good.items() if k in ("snp_launch_measurement",)}
    v = vector(engine, DEFAULT_CPU, doc, partial)
    assert (v["executables"], v["configuration"], v["hardware"]) == (3, 3, 97)


@pytest.mark.parametrize("tee_type", ["tdx", "snp"])
def test_initdata_pinning_of_the_collection(engine, tee_type):
    pinned_toml = initdata.render(URL)
    other_toml = initdata.render(URL, policy="allow-all")
    profile, node, pinned_doc = cpu_input(tee_type, pinned_toml)
    binding = initdata.bindings(pinned_toml)["tdx_mrconfigid" if tee_type == "tdx" else "snp_hostdata"]
    ref = reference(profile, node, tee_type, {"init_data": [binding]})
    policy = attestation_policy.pin(DEFAULT_CPU)
    allowed = vector(engine, policy, pinned_doc, ref)
    assert allowed["configuration"] == 2 and status_of(engine, allowed) == "affirming"
    other_doc = cpu_input(tee_type, other_toml)[2]
    assert vector(engine, policy, other_doc, ref)["configuration"] == 96
    # A VM without initdata (its register holds zeros, which the verifier reports) cannot slip through either.
    bare_doc = cpu_input(tee_type, None)[2]
    assert set(bare_doc["claims"]["init_data"]) == {"0"}
    assert vector(engine, policy, bare_doc, ref)["configuration"] == 96
    # Without the init_data reference value, pinning fails closed.
    assert vector(engine, policy, pinned_doc, {k: v for k, v in ref.items() if k != "init_data"})["configuration"] == 96


NRAS_GOOD = {
    "x-nvidia-gpu-arch-check": True,
    "x-nvidia-gpu-attestation-report-cert-chain": {"x-nvidia-cert-status": "valid", "x-nvidia-cert-ocsp-status": "good"},
    "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": True,
    "x-nvidia-gpu-attestation-report-parsed": True,
    "x-nvidia-gpu-attestation-report-signature-verified": True,
    "x-nvidia-gpu-vbios-rim-cert-chain": {"x-nvidia-cert-status": "valid", "x-nvidia-cert-ocsp-status": "good"},
    "x-nvidia-gpu-vbios-version": "96.00.99.00.01",
    "x-nvidia-gpu-driver-version": "580.95.05",
    "secboot": True,
    "dbgstat": "disabled",
    "measres": "success",
    **{f"x-nvidia-gpu-{part}-rim-{check}": True for part in ("driver", "vbios")
       for check in ("fetched", "measurements-available", "schema-validated", "signature-verified", "version-match")},
}


def test_gpu_policy_on_nras_claims(engine):
    gpu = (POLICIES / "default_gpu.rego").read_text()
    v = vector(engine, gpu, {"nvidia": NRAS_GOOD}, {})
    assert (v["hardware"], v["configuration"], v["executables"]) == (2, 3, 3)  # the article's gpu0 vector
    pinned = {"allowed_vbios_versions": ["96.00.99.00.01"], "allowed_driver_versions": ["580.95.05"]}
    assert vector(engine, gpu, {"nvidia": NRAS_GOOD}, pinned)["configuration"] == 2
    revoked = dict(NRAS_GOOD, **{"x-nvidia-gpu-attestation-report-cert-chain": {
        "x-nvidia-cert-status": "valid", "x-nvidia-cert-ocsp-status": "revoked"}})
    assert vector(engine, gpu, {"nvidia": revoked}, {})["hardware"] == 97
    failed_rim = dict(NRAS_GOOD, **{"x-nvidia-gpu-driver-rim-signature-verified": False})
    assert vector(engine, gpu, {"nvidia": failed_rim}, {})["executables"] == 33
    # The local verifier's claims (no NRAS) cannot affirm with this policy.
    local = {"arch": "HOPPER", "uuid": "GPU-1", "measurements": {"0": "ab"}, "config": {}}
    assert status_of(engine, vector(engine, gpu, {"nvidia": local}, {})) == "contraindicated"


def _submod(status, **vector):
    return {"ear.status": status, "ear.trustworthiness-vector": vector}


def test_resource_policies(engine):
    """The Restricted policy reads the executables, configuration and hardware claims, not ear.status."""
    restrictive = (POLICIES / "resource-policy-restrictive.rego").read_text()
    permissive = (POLICIES / "resource-policy-permissive.rego").read_text()
    path = "default/kbsres1/key1"
    good = _submod("affirming", executables=3, configuration=2, hardware=2)
    assert engine.resource_allowed(restrictive, {"submods": {"cpu0": good, "gpu0": good}}, path)
    warned = _submod("warning", executables=33, configuration=2, hardware=2)
    assert not engine.resource_allowed(restrictive, {"submods": {"cpu0": good, "gpu0": warned}}, path)
    # A warning from a claim the policy does not read (file-system) does not refuse ...
    fs_warning = dict(good, **{"ear.status": "warning", "ear.trustworthiness-vector": dict(
        good["ear.trustworthiness-vector"], **{"file-system": 40})})
    assert engine.resource_allowed(restrictive, {"submods": {"cpu0": fs_warning}}, path)
    # ... and neither does a claim the token does not carry; zeros (no trust_claims) do.
    assert engine.resource_allowed(restrictive, {"submods": {"cpu0": _submod("affirming", hardware=2)}}, path)
    assert not engine.resource_allowed(restrictive, {"submods": {"cpu0": _submod("none", executables=0)}}, path)
    assert not engine.resource_allowed(restrictive, {"submods": {}}, path)
    assert engine.resource_allowed(permissive, {"submods": {"cpu0": {"ear.status": "contraindicated"}}}, path)
    assert not engine.resource_allowed(permissive, {"submods": {}}, path, plugin="sample")


def test_a_broken_policy_is_reported_with_the_engines_words(engine):
    with pytest.raises(EngineError, match=r"Failed to load policy"):
        engine.appraise("package policy\nimport rego.v1\nhardware := 2 if {\n", {}, {})
