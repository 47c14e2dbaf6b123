"""The twin's attestation engine (twin/engine: regorus, ear, kbs-types) behaves as upstream Trustee does.

Each test names the upstream behaviour it pins: trustee 78962cd4 ``attestation-service`` ``broker.rs``
(trust_claims only, zeros and a warning when it is missing, ``as i8``, "Trust claim value not
number"), ``deps/policy-engine/src/policy/rego.rs`` (a fresh engine, undefined rules), ``kbs``
``api_server.rs`` (``data.policy.allow``, false when undefined or not a boolean), ``backend.rs``
(kbs-types messages, protocol version ``=0.4.0``), and rust-ear's tiers.
"""

import json

import pytest

from twin import build
from twin.kbs.engine import Engine, EngineError


@pytest.fixture(scope="module")
def engine():
    notes = []
    eng = Engine(build.ensure_engine(), say=notes.append)
    eng.notes = notes
    yield eng
    eng.close()


VECTOR_POLICY = """package policy
import rego.v1
default hardware := 97
hardware := 2 if input.ok
trust_claims := {"hardware": hardware, "executables": 3}
"""


def test_only_trust_claims_is_read(engine):
    result = engine.appraise(VECTOR_POLICY, {"ok": True}, {})
    assert result["trust_vector"] == {"executables": 3, "hardware": 2}
    assert result["status"] == "affirming"
    # Rules named like the AR4SI groups but outside trust_claims are not read.
    loose = "package policy\nimport rego.v1\nhardware := 97\nexecutables := 33\n"
    engine.notes.clear()
    result = engine.appraise(loose, {}, {})
    assert set(result["trust_vector"].values()) == {0} and len(result["trust_vector"]) == 8
    assert result["status"] == "none"
    assert any("No trust claims found by enforcing policy default_cpu, set all TrustVector claims to 0" in n
               for n in engine.notes)


def test_tiers_are_the_ear_crates(engine):
    expected = {0: "none", 1: "none", -1: "none", 2: "affirming", 31: "affirming", -32: "affirming",
                32: "warning", 95: "warning", -96: "warning", 96: "contraindicated", -97: "contraindicated",
                127: "contraindicated", -128: "contraindicated"}
    for value, tier in expected.items():
        assert engine.tiers({"configuration": value})["tiers"]["configuration"] == tier, value
    assert engine.tiers({"hardware": 2, "configuration": 96})["status"] == "contraindicated"


def test_out_of_range_and_non_integer_claims(engine):
    wraps = "package policy\ntrust_claims := {\"hardware\": 200}\n"
    assert engine.appraise(wraps, {}, {})["trust_vector"] == {"hardware": -56}  # 200 as i8
    with pytest.raises(EngineError, match="Trust claim value not number"):
        engine.appraise("package policy\ntrust_claims := {\"hardware\": 2.5}\n", {}, {})
    with pytest.raises(EngineError, match="Trust claim value not number"):
        engine.appraise("package policy\ntrust_claims := {\"hardware\": \"2\"}\n", {}, {})
    with pytest.raises(EngineError, match="Trust claims is not an object"):
        engine.appraise("package policy\ntrust_claims := [2]\n", {}, {})
    with pytest.raises(EngineError, match="unknown trust claim"):
        engine.appraise("package policy\ntrust_claims := {\"firmware\": 2}\n", {}, {})
    with pytest.raises(EngineError, match="At least one policy claim must be set"):
        engine.appraise("package policy\ntrust_claims := {}\n", {}, {})
    with pytest.raises(EngineError, match="Failed to load policy"):
        engine.appraise("package policy\nimport rego.v1\nhardware := 2 if {\n", {}, {})
    # The process survives every refusal.
    assert engine.ping()["crates"] == {"regorus": "0.11.0", "ear": "0.5.0", "kbs-types": "0.18.0"}


def test_query_reference_value(engine):
    policy = """package policy
import rego.v1
default hardware := 97
hardware := 2 if input.v in query_reference_value("allowed")
trust_claims := {"hardware": hardware, "configuration": c}
c := 2 if query_reference_value("absent") == null
"""
    engine.notes.clear()
    assert engine.appraise(policy, {"v": "a"}, {"allowed": ["a", "b"]})["trust_vector"] == {
        "configuration": 2, "hardware": 2}
    assert any("No reference value found for the given id: absent, use NULL" in n for n in engine.notes)
    with pytest.raises(EngineError, match="Get Reference Value from RVPS failed: broken entry"):
        engine.appraise(policy, {"v": "a"}, {}, reference_errors={"allowed": "broken entry"})


def test_resource_decision(engine):
    claims = {"submods": {"cpu0": {"ear.status": "affirming"}}}
    assert engine.resource_allowed("package policy\nallow := data.plugin == \"resource\"\n", claims, "a/b/c")
    path_policy = "package policy\nimport rego.v1\nallow if data[\"resource-path\"] == [\"a\", \"b\", \"c\"]\n"
    assert engine.resource_allowed(path_policy, claims, "a/b/c")
    assert not engine.resource_allowed(path_policy, claims, "a/b/d")
    engine.notes.clear()
    assert not engine.resource_allowed("package policy\nx := 1\n", claims, "a/b/c")
    assert any("does not define the `data.policy.allow` rule" in n for n in engine.notes)
    assert not engine.resource_allowed("package policy\nallow := \"yes\"\n", claims, "a/b/c")
    assert engine.resource_allowed("package policy\nallow := input.submods.cpu0[\"ear.status\"] == \"affirming\"\n",
                                   claims, ["a", "b", "c"])


def test_kbs_protocol_messages(engine):
    ok = {"version": "0.4.0", "tee": "tdx", "extra-params": ""}
    assert engine.parse("Request", ok)["tee"] == "tdx"
    mismatch = "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.1.0"
    with pytest.raises(EngineError, match=mismatch):
        engine.parse("Request", dict(ok, version="0.1.0"))
    with pytest.raises(EngineError, match="deserialize Request: missing field `extra-params`"):
        engine.parse("Request", {"version": "0.4.0", "tee": "tdx"})
    with pytest.raises(EngineError, match="deserialize Request: unknown variant `amd`"):
        engine.parse("Request", dict(ok, tee="amd"))
    attestation = {"runtime-data": {"nonce": "n", "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
                                                                 "x": "x", "y": "y"}},
                   "tee-evidence": {"primary_evidence": {"quote": "q"}, "additional_evidence": ""}}
    parsed = engine.parse("Attestation", attestation)
    assert parsed["init-data"] is None and parsed["tee-evidence"]["primary_evidence"] == {"quote": "q"}
    with pytest.raises(EngineError, match="missing field `additional_evidence`"):
        engine.parse("Attestation", dict(attestation, **{"tee-evidence": {"primary_evidence": {}}}))
    no_alg = json.loads(json.dumps(attestation))
    del no_alg["runtime-data"]["tee-pubkey"]["alg"]
    with pytest.raises(EngineError, match="deserialize Attestation"):
        engine.parse("Attestation", no_alg)
    with_gpus = {"primary_evidence": {}, "additional_evidence": '{"nvidia": {"a": 1}}'}
    gpus = dict(attestation, **{"tee-evidence": with_gpus})
    assert engine.parse("Attestation", gpus)["additional_evidence_parsed"] == {"nvidia": {"a": 1}}


def test_a_dead_engine_is_restarted(engine):
    engine.ping()
    engine._proc.kill()
    engine._proc.wait()
    assert engine.ping()["engine"]
