"""Differential conformance: the twin's own policies decide exactly as the real operator's files do.

The judge is what the real Trustee operator writes (``../shared/trustee/operator-templates``, read in
place through ``shared_path``), evaluated the way upstream Trustee evaluates it: by the twin's
attestation engine (``twin/engine``: regorus, ear and kbs-types at trustee's versions, running the
broker's code path). The corpus is evidence the twin's simulated hardware signs and the twin's
verifiers check (so the claims have the shape upstream's verifiers emit and its policies read:
``input.tdx.quote.body.mr_td``, ``input.snp.measurement``, ``input.init_data``, NRAS claims under
``input.nvidia``), each case appraised twice, once with the twin's policies and once with upstream's,
through the same ``issue`` path the twin KBS uses. Trust vectors, statuses and the resource
policies' decisions must be identical; a few cases also pin the expected outcome, so an engine that
affirmed everything would not pass.

``pytest -s`` prints the corpus table; it is also written to ``tests/output/attestation-corpus.md``.
"""

import base64
import copy
import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.confidential.gpu.plugins.module_utils import ear as collection_ear
from tests.conftest import shared_path
from twin import build, initdata, profile as profiles, tee
from twin.kbs import verifier
from twin.kbs.attestation import init_data_claims
from twin.kbs.engine import Engine

REPO = Path(__file__).resolve().parents[2]
OWN = REPO / "twin" / "kbs" / "policies"
OUTPUT = REPO / "tests" / "output" / "attestation-corpus.md"
URL = "https://kbs-trustee-operator-system.apps.twin.example.com"
RUNTIME = {"nonce": "bm9uY2U=",
           "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "eA", "y": "eQ"}}
SHORT = {"instance-identity": "ii", "configuration": "cf", "executables": "ex", "file-system": "fs",
         "hardware": "hw", "runtime-opaque": "ro", "storage-opaque": "so", "sourced-data": "sd"}


def upstream(name):
    return shared_path("trustee", "operator-templates", name).read_text()


@pytest.fixture(scope="module")
def engine():
    eng = Engine(build.ensure_engine())
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def policies():
    return {
        "own": {"default_cpu": (OWN / "default_cpu.rego").read_text(),
                "default_gpu": (OWN / "default_gpu.rego").read_text(),
                "restrictive": (OWN / "resource-policy-restrictive.rego").read_text(),
                "permissive": (OWN / "resource-policy-permissive.rego").read_text()},
        "upstream": {"default_cpu": upstream("ear_default_attestation_policy_cpu.rego"),
                     "default_gpu": upstream("ear_default_attestation_policy_gpu.rego"),
                     "restrictive": upstream("resource-policy-restrictive.rego"),
                     "permissive": upstream("resource-policy-permissive.rego")},
    }


# -- the corpus -------------------------------------------------------------------------------------

def _node(profile_name, tee_type):
    spec = profiles.load(profile_name)
    return spec, next(n for n in spec["nodes"] if (n.get("tee") or {}).get("type") == tee_type)


def _reference(spec, node, tee_type, **changes):
    entries = tee.reference_values(spec["openshift"]["version"], tee_type, host_spec=node)
    values = {e["name"]: e["value"] for e in entries}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def _cpu_claims(tee_type, node, spec, toml, debug=False, tcb_status="UpToDate"):
    vm = tee.launch(node, spec["openshift"]["version"], initdata_toml=toml, debug=debug)
    if tee_type == "tdx":
        claims = verifier.verify_tdx(vm.evidence(RUNTIME), RUNTIME, toml, lambda quote: tcb_status)
    else:
        claims = verifier.verify_snp(vm.evidence(RUNTIME), RUNTIME, toml)
    return {"tee": tee_type, "tee_class": "cpu", "claims": claims, "init_data_claims": init_data_claims(toml),
            "runtime_data_claims": dict(RUNTIME, **{"additional-evidence": ""})}


def _gpu_claims(spec, node, **gpu_changes):
    nras = gpu_changes.pop("nras", None)
    gpu = dict(node["gpus"][0], **gpu_changes)
    if nras:
        gpu["nras"] = nras
    vm = tee.launch(dict(node, gpus=[gpu]), spec["openshift"]["version"])
    (claims,) = verifier.verify_nvidia(vm.additional_evidence(RUNTIME), RUNTIME, {"type": "Remote"},
                                       say=lambda message: None)
    return {"tee": "nvidia", "tee_class": "gpu", "claims": claims, "init_data_claims": None,
            "runtime_data_claims": RUNTIME}


ALLOWED_GPU = {"allowed_vbios_versions": ["96.00.99.00.01"], "allowed_driver_versions": ["580.95.05"]}


def corpus():
    """``[(case, [tee_claims...], reference values, expected {submod: status} or None)]``."""
    toml, other = initdata.document(URL), initdata.document("https://kbs.elsewhere.example.com")
    tdx_spec, tdx_node = _node("default", "tdx")
    snp_spec, snp_node = _node("snp-rtx-pro-6000", "snp")
    tdx_rv = _reference(tdx_spec, tdx_node, "tdx")
    snp_rv = _reference(snp_spec, snp_node, "snp")
    tdx = _cpu_claims("tdx", tdx_node, tdx_spec, toml)
    snp = _cpu_claims("snp", snp_node, snp_spec, toml)
    gpu = _gpu_claims(tdx_spec, tdx_node)
    old_fw = copy.deepcopy(snp_node)
    old_fw.setdefault("tee", {})["tcb"] = {"microcode": 58}
    hopper_file = shared_path("trustee", "test-data", "nvidia-hopper-local-verifier-claims.json")
    hopper_local = json.loads(hopper_file.read_text())
    return [
        ("tdx: correct guest", [tdx], tdx_rv, {"cpu0": "affirming"}),
        ("tdx: event-log digests as scalars", [tdx],
         dict(tdx_rv, tdvfkernel=tdx_rv["tdvfkernel"][0], tdvfkernelparams=tdx_rv["tdvfkernelparams"][0]), None),
        ("tdx: another initdata", [_cpu_claims("tdx", tdx_node, tdx_spec, other)], tdx_rv, {"cpu0": "affirming"}),
        ("tdx: no initdata", [_cpu_claims("tdx", tdx_node, tdx_spec, None)], tdx_rv, None),
        ("tdx: MRTD wrong", [tdx], dict(tdx_rv, mr_td=["00" * 48]), {"cpu0": "contraindicated"}),
        ("tdx: RTMR1 wrong", [tdx], dict(tdx_rv, rtmr_1=["00" * 48]), {"cpu0": "warning"}),
        ("tdx: RTMR2 wrong", [tdx], dict(tdx_rv, rtmr_2=["00" * 48]), None),
        ("tdx: XFAM wrong", [tdx], dict(tdx_rv, xfam=["0000000000000000"]), None),
        ("tdx: debug on", [_cpu_claims("tdx", tdx_node, tdx_spec, toml, debug=True)], tdx_rv, {"cpu0": "warning"}),
        ("tdx: TCB out of date", [_cpu_claims("tdx", tdx_node, tdx_spec, toml, tcb_status="OutOfDate")], tdx_rv,
         {"cpu0": "contraindicated"}),
        ("tdx: no reference values", [tdx], {}, {"cpu0": "contraindicated"}),
        ("snp: correct guest", [snp], snp_rv, {"cpu0": "affirming"}),
        ("snp: another initdata", [_cpu_claims("snp", snp_node, snp_spec, other)], snp_rv, {"cpu0": "affirming"}),
        ("snp: measurement wrong", [snp], dict(snp_rv, snp_launch_measurement=["00" * 48]), {"cpu0": "warning"}),
        ("snp: debug on", [_cpu_claims("snp", snp_node, snp_spec, toml, debug=True)], snp_rv, None),
        ("snp: TCB out of date", [_cpu_claims("snp", old_fw, snp_spec, toml)], snp_rv, {"cpu0": "contraindicated"}),
        ("snp: platform values not given", [snp], {"snp_launch_measurement": snp_rv["snp_launch_measurement"]}, None),
        ("gpu: correct, versions allowed", [tdx, gpu], dict(tdx_rv, **ALLOWED_GPU),
         {"cpu0": "affirming", "gpu0": "affirming"}),
        ("gpu: no version lists", [tdx, gpu], tdx_rv, {"gpu0": "affirming"}),
        ("gpu: driver outside allowed_driver_versions",
         [tdx, _gpu_claims(tdx_spec, tdx_node, driver_version="535.54.03")], dict(tdx_rv, **ALLOWED_GPU),
         {"gpu0": "affirming"}),
        ("gpu: VBIOS outside allowed_vbios_versions", [tdx, _gpu_claims(tdx_spec, tdx_node, vbios="96.00.10.00.01")],
         dict(tdx_rv, **ALLOWED_GPU), None),
        ("gpu: not in CC mode", [tdx, _gpu_claims(tdx_spec, tdx_node, cc_capable=False)], dict(tdx_rv, **ALLOWED_GPU),
         {"gpu0": "warning"}),
        ("gpu: debug on (dbgstat enabled)", [tdx, _gpu_claims(tdx_spec, tdx_node, nras={"dbgstat": "enabled"})],
         dict(tdx_rv, **ALLOWED_GPU), None),
        ("gpu: NRAS OCSP revoked", [tdx, _gpu_claims(tdx_spec, tdx_node, nras={
            "x-nvidia-gpu-attestation-report-cert-chain.x-nvidia-cert-ocsp-status": "revoked"})],
         dict(tdx_rv, **ALLOWED_GPU), {"gpu0": "contraindicated"}),
        ("gpu: NRAS measurements fail", [tdx, _gpu_claims(tdx_spec, tdx_node, nras={"measres": "fail"})],
         dict(tdx_rv, **ALLOWED_GPU), {"gpu0": "warning"}),
        ("gpu: local verifier claims (Hopper)", [tdx, {"tee": "nvidia", "tee_class": "gpu", "claims": hopper_local,
                                                       "init_data_claims": None, "runtime_data_claims": RUNTIME}],
         tdx_rv, {"gpu0": "contraindicated"}),
    ]


# -- evaluation -------------------------------------------------------------------------------------

def _vector_text(vector):
    return " ".join(f"{SHORT[k]}{vector.get(k, '-')}" for k in SHORT)


def _judge(engine, side, tee_claims, reference):
    issued = engine.issue(tee_claims, {"default_cpu": side["default_cpu"], "default_gpu": side["default_gpu"]},
                          reference_values=reference, now=1_800_000_000)
    claims = issued["claims"]
    decisions = {name: engine.resource_allowed(side[name], claims, ["default", "kbsres1", "key1"])
                 for name in ("restrictive", "permissive")}
    submods = {name: (s["ear.trustworthiness-vector"], s["ear.status"]) for name, s in claims["submods"].items()}
    return submods, decisions, claims["submods"]


def test_own_policies_decide_as_upstreams(engine, policies):
    rows, mismatches, unexpected = [], [], []
    for case, tee_claims, reference, expected in corpus():
        own, own_decisions, own_submods = _judge(engine, policies["own"], tee_claims, reference)
        up, up_decisions, up_submods = _judge(engine, policies["upstream"], tee_claims, reference)
        # Whole submods too: the extensions (ear.trustee.identifiers) must match as well.
        if own != up or own_decisions != up_decisions or own_submods != up_submods:
            mismatches.append(case)
        for name, status in (expected or {}).items():
            if up[name][1] != status:
                unexpected.append(f"{case}: {name} is {up[name][1]}, expected {status}")
        for name in up:
            rows.append((case, name, f"{_vector_text(own[name][0])} **{own[name][1]}**",
                         f"{_vector_text(up[name][0])} **{up[name][1]}**",
                         "/".join("allow" if own_decisions[p] else "deny" for p in ("restrictive", "permissive")),
                         "/".join("allow" if up_decisions[p] else "deny" for p in ("restrictive", "permissive"))))
    table = ["# Attestation corpus: the twin's own policies against the operator's (upstream) files",
             "",
             "Evaluated by twin/engine (regorus 0.11.0, ear 0.5.0, kbs-types 0.18.0) through the EAR broker's "
             "path. Vector: ii instance-identity, cf configuration, ex executables, fs file-system, hw hardware, "
             "ro runtime-opaque, so storage-opaque, sd sourced-data. Resource policy: Restricted/Permissive.",
             "",
             "| case | submod | own vector, status | upstream vector, status | own resource | upstream resource |",
             "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(table) + "\n"
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print("\n" + text)
    assert not mismatches, f"the twin's policies disagree with upstream's on: {mismatches} (table in {OUTPUT})"
    assert not unexpected, unexpected


def test_a_policy_without_trust_claims_gives_zeros_and_status_none(engine, policies):
    spec, node = _node("default", "tdx")
    tdx = _cpu_claims("tdx", node, spec, initdata.document(URL))
    lacking = ("package policy\nimport rego.v1\n"
               "default hardware := 2\ndefault executables := 3\ndefault configuration := 2\n")
    notes = []
    engine.say = notes.append
    try:
        issued = engine.issue([tdx], {"default_cpu": lacking}, reference_values=_reference(spec, node, "tdx"))
    finally:
        engine.say = lambda message: None
    cpu0 = issued["claims"]["submods"]["cpu0"]
    assert set(cpu0["ear.trustworthiness-vector"].values()) == {0}
    assert len(cpu0["ear.trustworthiness-vector"]) == 8
    assert cpu0["ear.status"] == "none"
    assert any("No trust claims found by enforcing policy default_cpu" in n for n in notes)
    # ... and the Restricted resource policy (upstream's) then refuses: zeros are not affirming.
    assert not engine.resource_allowed(policies["upstream"]["restrictive"], issued["claims"], "default/kbsres1/key1")


def _token_pki():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kbs-token-signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_the_collections_reader_verifies_an_engine_token_and_refuses_a_tampered_one(engine, policies):
    spec, node = _node("default", "tdx")
    tdx = _cpu_claims("tdx", node, spec, initdata.document(URL))
    key_pem, cert_pem = _token_pki()
    issued = engine.issue([tdx], {"default_cpu": policies["upstream"]["default_cpu"]},
                          reference_values=_reference(spec, node, "tdx"), config={"duration_min": 5},
                          signer={"key_pem": key_pem, "cert_pem": cert_pem})
    token = issued["token"]
    parsed = collection_ear.parse(token)
    header, claims = parsed["header"], parsed["claims"]
    # broker.rs: ES256, typ JWT, the key as a JWK with alg ES256 and the certificate chain.
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert header["jwk"]["kty"] == "EC" and header["jwk"]["crv"] == "P-256" and header["jwk"]["alg"] == "ES256"
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert header["jwk"]["x5c"] == [base64.b64encode(der).decode()]
    assert claims["eat_profile"] == "tag:github.com,2024:confidential-containers/Trustee"
    assert claims["iss"] == "CoCo-Attestation-Service" and claims["exp"] - claims["iat"] == 300
    assert claims["ear.verifier-id"] == {"build": "attestation-service 0.1.0",
                                         "developer": "https://confidentialcontainers.org"}
    assert claims["submods"]["cpu0"]["ear.status"] == "affirming"
    assert claims["submods"]["cpu0"]["ear.appraisal-policy-id"] == "default"
    assert "init_data_claims" in claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    verdict = collection_ear.verify(token, key=cert_pem)
    assert verdict["verified"], verdict
    head, payload, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["submods"]["cpu0"]["ear.status"] = "affirming"
    forged["submods"]["cpu0"]["ear.trustworthiness-vector"]["hardware"] = 2
    forged["iat"] += 1
    tampered = ".".join([head, base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("="), signature])
    assert not collection_ear.verify(tampered, key=cert_pem)["verified"]
    # Another signer's certificate does not verify the genuine token either.
    assert not collection_ear.verify(token, key=_token_pki()[1])["verified"]
