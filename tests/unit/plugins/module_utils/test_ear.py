# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""EAR tokens. Tokens are signed here with joserfc as test setup; the trust vectors are the Red
Hat article's (attestation.md §4 / articles/rh-confidential-gpu-osc.txt) and Trustee's defaults;
expected tiers and meanings come from the AR4SI table, not from the code under test."""

from __future__ import annotations

import base64
import copy
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey

from ansible_collections.confidential.gpu.plugins.module_utils import ear
from ansible_collections.confidential.gpu.plugins.module_utils.ear import EarError

# 2026-04-25T05:00:00Z, inside the article token's 5-minute lifetime below.
NOW = datetime.datetime(2026, 4, 25, 5, 0, 0, tzinfo=datetime.timezone.utc)
ARTICLE_INIT_DATA = "3e6191191bd85c162fdbec63c0153801a1129e565d6cfe3e851e51b0ddee080f00000000000000000000000000000000"

ARTICLE_CLAIMS = {
    "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
    "iat": 1777093176,
    "exp": 1777093476,
    "iss": "CoCo-Attestation-Service",
    "ear.verifier-id": {"developer": "https://confidentialcontainers.org", "build": "attestation-service 0.1.0"},
    "submods": {
        "cpu0": {
            "ear.status": "affirming",
            "ear.trustworthiness-vector": {"instance-identity": 0, "configuration": 2, "executables": 4,
                                           "file-system": 0, "hardware": 2, "runtime-opaque": 0,
                                           "storage-opaque": 0, "sourced-data": 0},
            "ear.appraisal-policy-id": "default",
            "ear.veraison.annotated-evidence": {
                "init_data": ARTICLE_INIT_DATA,
                "init_data_claims": {"aa.toml": {"token_configs": {"kbs": {"url": "https://kbs.example.com"}}}},
                "tdx": {"quote": {"body": {"mr_config_id": ARTICLE_INIT_DATA}}},
            },
        },
        "gpu0": {
            "ear.status": "affirming",
            "ear.trustworthiness-vector": {"instance-identity": 0, "configuration": 3, "executables": 3,
                                           "file-system": 0, "hardware": 2, "runtime-opaque": 0,
                                           "storage-opaque": 0, "sourced-data": 0},
            "ear.appraisal-policy-id": "default_gpu",
            "ear.veraison.annotated-evidence": {"nvidia": {"secboot": True, "dbgstat": "disabled"}},
        },
    },
}
TEE_KEYPAIR = "-----BEGIN PRIVATE KEY-----\nTEE-PRIVATE-KEY-MUST-NOT-LEAK\n-----END PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def key():
    return ECKey.generate_key("P-256")


def sign(claims, key, header=None):
    hdr = {"alg": "ES256", "typ": "JWT", "jwk": key.as_dict(private=False)} if header is None else header
    return jws.serialize_compact(hdr, json.dumps(claims), key)


def self_signed_cert(private_key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustee attestation")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private_key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1))
            .not_valid_after(datetime.datetime(2027, 1, 1)).sign(private_key, hashes.SHA256()))


# -- tiers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    (-128, "contraindicated"), (-97, "contraindicated"), (-96, "warning"), (-33, "warning"), (-32, "affirming"),
    (-2, "affirming"), (-1, "none"), (0, "none"), (1, "none"), (2, "affirming"), (4, "affirming"),
    (31, "affirming"), (32, "warning"), (33, "warning"), (36, "warning"), (95, "warning"),
    (96, "contraindicated"), (97, "contraindicated"), (99, "contraindicated"), (127, "contraindicated"),
])
def test_ar4si_tier_boundaries(value, expected):
    assert ear.tier(value) == expected


@given(st.integers(min_value=-128, max_value=127))
def test_tier_partitions_the_claim_range(value):
    expected = ("none" if value in (-1, 0, 1) else "affirming" if -32 <= value <= 31
                else "warning" if -96 <= value <= 95 else "contraindicated")
    assert ear.tier(value) == expected


@pytest.mark.parametrize("value", ["2", 2.0, None, True])
def test_tier_rejects_non_integers(value):
    with pytest.raises(EarError):
        ear.tier(value)


# -- the article's token ----------------------------------------------------------------------


def test_article_token_is_affirming_and_intact(key):
    result = ear.inspect(sign(ARTICLE_CLAIMS, key), key=key.as_pem(private=False).decode(), now=NOW,
                         expected_init_data=ARTICLE_INIT_DATA, expected_kbs_url="https://kbs.example.com",
                         require_gpu=True)
    assert result["ok"] is True, result["problems"]
    assert result["affirming"] is True and result["trusted"] is True
    assert result["gpus"] == ["gpu0"]
    assert result["devices"] == {"cpu": ["cpu0"], "gpu": ["gpu0"]}
    assert result["signature"]["verified"] is True
    assert result["signature"]["key_source"] == "given"
    assert result["expires_at"] == "2026-04-25T05:04:36Z"
    assert result["issued_at"] == "2026-04-25T04:59:36Z"
    assert result["expired"] is False
    assert result["init_data"] == {"claim": ARTICLE_INIT_DATA, "expected": ARTICLE_INIT_DATA, "match": True}
    assert result["kbs_url"]["match"] is True
    cpu = result["submods"]["cpu0"]
    assert cpu["tee"] == "tdx" and cpu["computed_status"] == "affirming"
    assert cpu["trust_vector"]["executables"] == {"value": 4, "tier": "affirming",
                                                  "meaning": "approved boot measurements (RTMR 1-2 only, Trustee's Grub branch)"}
    assert result["submods"]["gpu0"]["trust_vector"]["configuration"]["meaning"] == \
        "safe configuration (no known vulnerabilities)"


def test_the_in_pod_api_json_is_accepted_and_its_keypair_never_returned(key):
    body = json.dumps({"token": sign(ARTICLE_CLAIMS, key), "tee_keypair": TEE_KEYPAIR})
    result = ear.inspect(body, now=NOW)
    assert result["has_tee_keypair"] is True
    assert "TEE-PRIVATE-KEY" not in json.dumps(result)
    assert ear.inspect(json.loads(body), key=key.as_pem(private=False).decode(), now=NOW)["ok"] is True


def test_trustee_defaults_are_explained_in_words(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"]["cpu0"]["ear.status"] = "contraindicated"
    claims["submods"]["cpu0"]["ear.trustworthiness-vector"].update(executables=33, hardware=97, configuration=36)
    result = ear.inspect(sign(claims, key), now=NOW)
    assert result["affirming"] is False and result["ok"] is False
    texts = result["submods"]["cpu0"]["not_affirming"]
    assert texts[0].startswith("configuration 36 (warning): configuration elements unavailable")
    assert texts[1].startswith("executables 33 (warning): unrecognized run-time")
    assert texts[2].startswith("hardware 97 (contraindicated): unrecognized hardware")
    assert "veritas" in texts[1] and "mr_td" in texts[2]
    assert any(p.startswith("cpu0 is contraindicated, not affirming") for p in result["problems"])


def test_gpu_defaults_point_at_the_nras_verifier(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"]["gpu0"]["ear.status"] = "contraindicated"
    claims["submods"]["gpu0"]["ear.trustworthiness-vector"].update(hardware=97)
    texts = ear.inspect(sign(claims, key), now=NOW)["submods"]["gpu0"]["not_affirming"]
    assert texts == [texts[0]] and "NRAS" in texts[0] and "Local" in texts[0]


def test_a_status_that_contradicts_its_vector_is_flagged(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["hardware"] = 97
    result = ear.inspect(sign(claims, key), now=NOW)
    assert "cpu0: ear.status says 'affirming' but its trust vector gives 'contraindicated'" in result["problems"]


def test_an_all_zero_vector_is_status_none_and_not_affirming(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"] = {"cpu0": {"ear.status": "none", "ear.trustworthiness-vector": {}}}
    result = ear.inspect(sign(claims, key), now=NOW)
    assert result["submods"]["cpu0"]["computed_status"] == "none"
    assert result["affirming"] is False


def test_init_data_mismatch_is_reported(key):
    other = "00" * 48
    result = ear.inspect(sign(ARTICLE_CLAIMS, key), now=NOW, expected_init_data=other.upper())
    assert result["init_data"]["match"] is False
    assert any("ran other initdata" in p for p in result["problems"])


def test_kbs_url_mismatch_and_missing_gpu_are_reported(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    del claims["submods"]["gpu0"]
    result = ear.inspect(sign(claims, key), now=NOW, expected_kbs_url="https://other", require_gpu=True)
    assert any("names KBS 'https://kbs.example.com'" in p for p in result["problems"])
    assert any("no gpu submod" in p for p in result["problems"])


def test_expiry(key):
    later = NOW + datetime.timedelta(minutes=10)
    result = ear.inspect(sign(ARTICLE_CLAIMS, key), now=later)
    assert result["expired"] is True
    assert "the token expired at 2026-04-25T05:04:36Z" in result["problems"]
    assert ear.inspect(sign(ARTICLE_CLAIMS, key), now=later, leeway=3600)["expired"] is False
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    del claims["exp"]
    assert "the token has no exp claim" in ear.inspect(sign(claims, key), now=NOW)["problems"]


# -- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("use_joserfc", [True, False])
def test_a_tampered_payload_fails_verification(key, use_joserfc):
    token = sign(ARTICLE_CLAIMS, key)
    head, dummy, sig = token.split(".")
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["init_data"] = "00" * 48
    forged = head + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=") + "." + sig
    result = ear.verify(forged, use_joserfc=use_joserfc)
    assert result["checked"] is True and result["verified"] is False
    assert result["library"] == ("joserfc" if use_joserfc else "cryptography")
    assert ear.verify(token, use_joserfc=use_joserfc)["verified"] is True


@pytest.mark.parametrize("use_joserfc", [True, False])
def test_verification_against_the_trustee_certificate(use_joserfc):
    private = ec.generate_private_key(ec.SECP256R1())
    signer = ECKey.import_key(private)
    token = sign(ARTICLE_CLAIMS, signer, header={"alg": "ES256"})
    cert = self_signed_cert(private).public_bytes(serialization.Encoding.PEM).decode()
    result = ear.verify(token, key=cert, use_joserfc=use_joserfc)
    assert (result["verified"], result["key_source"], result["note"]) == (True, "given", None)
    stranger = self_signed_cert(ec.generate_private_key(ec.SECP256R1())).public_bytes(serialization.Encoding.PEM).decode()
    assert ear.verify(token, key=stranger, use_joserfc=use_joserfc)["verified"] is False


def test_a_forged_embedded_key_does_not_pass_a_given_certificate(key):
    trustee = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_cert(trustee).public_bytes(serialization.Encoding.PEM).decode()
    result = ear.inspect(sign(ARTICLE_CLAIMS, key), key=cert, now=NOW)
    assert result["signature"]["verified"] is False and result["ok"] is False


def test_embedded_x5c_and_pem_public_key_and_jwk_json_work():
    private = ec.generate_private_key(ec.SECP256R1())
    signer = ECKey.import_key(private)
    der = self_signed_cert(private).public_bytes(serialization.Encoding.DER)
    token = sign(ARTICLE_CLAIMS, signer, header={"alg": "ES256", "x5c": [base64.b64encode(der).decode()]})
    assert ear.verify(token)["key_source"] == "embedded-x5c"
    assert ear.verify(token)["verified"] is True
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert ear.verify(token, key=pem)["verified"] is True
    assert ear.verify(token, key=json.dumps(signer.as_dict(private=False)))["verified"] is True


def test_other_algorithms_and_missing_keys_are_refused(key):
    token = sign(ARTICLE_CLAIMS, key)
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
    unsigned = head + "." + token.split(".")[1] + "."
    assert "ES256" in ear.verify(unsigned)["error"]
    no_key = sign(ARTICLE_CLAIMS, key, header={"alg": "ES256"})
    assert "embeds none" in ear.verify(no_key)["error"]


def test_wrong_key_types_are_explained(key):
    token = sign(ARTICLE_CLAIMS, key)
    with pytest.raises(EarError, match="EC P-256"):
        ear.verify(token, key={"kty": "RSA", "n": "x", "e": "AQAB"})
    with pytest.raises(EarError, match="not a PEM"):
        ear.verify(token, key="-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")


# -- malformed tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("value,match", [
    ("abc", "3 dot-separated parts"),
    ("a.b", "3 dot-separated parts"),
    ("a*.b.c", "not base64url"),
    ("e30.W10.", "expected a JSON object"),  # payload is []
    ("bm90IGpzb24.e30.", "not JSON"),
    ("e30.e30.", "no submods"),
    ('{"token": 5}', '"token" must be a string'),
    ('{"tee_keypair": "x"}', 'no "token" field'),
    ('{"token": ', "does not parse"),
    (b"\xff\xfe", "not UTF-8"),
    (42, "expected a JWT string"),
    ("x" * (5 * 1024 * 1024), "above the"),
])
def test_malformed_tokens_raise_a_clear_error(value, match):
    with pytest.raises(EarError, match=match):
        ear.inspect(value, verify_signature=False, now=NOW)


def test_a_non_integer_trust_claim_is_a_clear_error(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["hardware"] = "2"
    with pytest.raises(EarError, match="not an integer"):
        ear.inspect(sign(claims, key), now=NOW)


@pytest.mark.parametrize("exp", [1e300, float("nan"), "soon", -1e20])
def test_an_unusable_exp_is_a_clear_error(key, exp):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["exp"] = exp
    with pytest.raises(EarError, match="exp"):
        ear.inspect(sign(claims, key), now=NOW)


@given(st.text(max_size=300))
def test_any_text_is_a_result_or_a_clear_error(text):
    try:
        ear.inspect(text, now=NOW)
    except EarError:
        pass


# -- the reader holds up on its own (issue 12) -------------------------------------------------


def test_without_a_key_a_token_signed_by_anyone_is_never_ok(key):
    # Anyone can make a key, sign the article's affirming claims and embed the key.
    result = ear.inspect(sign(ARTICLE_CLAIMS, key), now=NOW)
    assert result["signature"]["verified"] is True and result["signature"]["key_source"] == "embedded-jwk"
    assert result["ok"] is False and result["trusted"] is False
    assert result["affirming"] is False and result["claims_affirming"] is True
    assert any("no Trustee attestation certificate given" in p for p in result["problems"])


def test_a_forged_payload_never_reads_as_affirming(key):
    genuine = sign(ARTICLE_CLAIMS, key)
    head, signature = genuine.split(".")[::2]
    payload = base64.urlsafe_b64encode(json.dumps(ARTICLE_CLAIMS).encode() + b" ").decode().rstrip("=")
    result = ear.inspect(".".join([head, payload, signature]), key=key.as_pem(private=False).decode(), now=NOW)
    assert result["signature"]["verified"] is False
    assert result["affirming"] is False and result["claims_affirming"] is True and result["ok"] is False


def test_signature_off_is_never_affirming(key):
    result = ear.inspect(sign(ARTICLE_CLAIMS, key), verify_signature=False, now=NOW)
    assert result["affirming"] is False and result["ok"] is False
    assert any("signature not checked" in p for p in result["problems"])


@pytest.mark.parametrize("name,kind", [
    ("cpu0", "cpu"), ("gpu0", "gpu"), ("gpu7", "gpu"), ("switch0", "switch"), ("switch12", "switch"),
    ("ppcie0", "ppcie"), ("nvidia-dpu0", "nvidia-dpu"), ("dpu1", "dpu"), ("tpm0", "unknown"), ("cpu", "unknown"),
])
def test_submods_are_typed_by_their_prefix(name, kind):
    assert ear.submod_kind(name) == kind


def test_a_switch_is_not_read_as_a_cpu(key):
    claims = copy.deepcopy(ARTICLE_CLAIMS)
    claims["submods"]["switch0"] = copy.deepcopy(claims["submods"]["gpu0"])
    claims["submods"]["switch0"]["ear.veraison.annotated-evidence"] = {"init_data": "ff" * 48}
    claims["submods"]["tpm0"] = copy.deepcopy(claims["submods"]["gpu0"])
    result = ear.inspect(sign(claims, key), key=key.as_pem(private=False).decode(), now=NOW,
                         expected_init_data=ARTICLE_INIT_DATA)
    assert result["submods"]["switch0"]["kind"] == "switch" and result["submods"]["switch0"]["tee"] is None
    assert result["devices"]["switch"] == ["switch0"] and result["gpus"] == ["gpu0"]
    # the init_data claim is the CPU's, never a switch's
    assert result["init_data"]["match"] is True
    assert result["submods"]["tpm0"]["kind"] == "unknown"
    assert any("tpm0: not a submod name Trustee emits" in p for p in result["problems"])


def test_iat_in_the_future_is_refused(key):
    claims = dict(ARTICLE_CLAIMS, iat=int(NOW.timestamp()) + 3600, exp=int(NOW.timestamp()) + 3900)
    result = ear.inspect(sign(claims, key), key=key.as_pem(private=False).decode(), now=NOW)
    assert result["ok"] is False and any("issued in the future" in p for p in result["problems"])
    assert ear.inspect(sign(claims, key), key=key.as_pem(private=False).decode(), now=NOW, leeway=3600)["ok"]


def test_a_foreign_eat_profile_is_refused(key):
    claims = dict(ARTICLE_CLAIMS, eat_profile="tag:github.com,2023:veraison/ear")
    result = ear.inspect(sign(claims, key), key=key.as_pem(private=False).decode(), now=NOW)
    assert result["ok"] is False and any("eat_profile" in p for p in result["problems"])
    assert ear.inspect(sign(claims, key), key=key.as_pem(private=False).decode(), now=NOW,
                       expected_profile="tag:github.com,2023:veraison/ear")["ok"]


def _x5c_header(signing_key, cert, urlsafe=False):
    der = cert.public_bytes(serialization.Encoding.DER)
    text = base64.urlsafe_b64encode(der).decode().rstrip("=") if urlsafe else base64.b64encode(der).decode()
    return {"alg": "ES256", "typ": "JWT", "jwk": dict(signing_key.as_dict(private=False), x5c=[text])}


@pytest.mark.parametrize("urlsafe", [False, True])
def test_the_x5c_chain_is_checked_against_the_given_certificate_and_never_echoed(urlsafe):
    private = ec.generate_private_key(ec.SECP256R1())
    signer = ECKey.import_key(private)
    cert = self_signed_cert(private)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    token = sign(ARTICLE_CLAIMS, signer, header=_x5c_header(signer, cert, urlsafe))
    result = ear.inspect(token, key=cert_pem, now=NOW)
    assert result["ok"] is True, result["problems"]
    chain = result["signature"]["chain"]
    assert chain["present"] and chain["length"] == 1 and chain["leaf_is_given"] and chain["jwk_matches_leaf"]
    assert "x5c" not in result["header"] and "x5c" not in result["header"]["jwk"]
    der_text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    assert der_text[:40] not in json.dumps(result)

    # Same key, but another certificate for it given: the chain is not the one Trustee was given.
    other_cert_pem = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                      .public_key(private.public_key()).serial_number(2)
                      .not_valid_before(datetime.datetime(2026, 1, 1)).not_valid_after(datetime.datetime(2027, 1, 1))
                      .sign(private, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    result = ear.inspect(token, key=other_cert_pem, now=NOW)
    assert result["signature"]["verified"] is True
    assert result["ok"] is False and result["affirming"] is False
    assert any("is not the given Trustee certificate" in p for p in result["problems"])


def test_a_jwk_that_is_not_its_own_x5c_leaf_is_refused():
    private = ec.generate_private_key(ec.SECP256R1())
    signer = ECKey.import_key(private)
    stranger = self_signed_cert(ec.generate_private_key(ec.SECP256R1()))
    token = sign(ARTICLE_CLAIMS, signer, header=_x5c_header(signer, stranger))
    result = ear.inspect(token, key=signer.as_pem(private=False).decode(), now=NOW)
    assert result["signature"]["chain"]["jwk_matches_leaf"] is False
    assert result["ok"] is False and result["affirming"] is False


# -- tokens made by the ear crate (the twin's engine: ear 0.5.0 through trustee's broker path) ----------


SIMPLE_POLICY = """package policy
import rego.v1
default hardware := 97
hardware := 2 if input.sample
trust_claims := {"hardware": hardware, "executables": 3, "configuration": 2}
"""
DEVICE_POLICY = """package policy
import rego.v1
trust_claims := {"hardware": 2, "executables": 3, "configuration": 2}
"""


@pytest.fixture(scope="module")
def engine():
    from twin import build
    from twin.kbs.engine import Engine

    eng = Engine(build.ensure_engine())
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def trustee_signer():
    private = ec.generate_private_key(ec.SECP256R1())
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
    return key_pem, self_signed_cert(private).public_bytes(serialization.Encoding.PEM).decode()


def _engine_token(engine, signer, classes=("cpu", "gpu", "switch"), now=None):
    tee_claims = []
    for tee_class in classes:
        tee = "sample" if tee_class == "cpu" else "nvidia"
        tee_claims.append({"tee": tee, "tee_class": tee_class, "claims": {"svn": "1"}, "init_data_claims": None,
                           "runtime_data_claims": None})
    policies = {"default_" + c: (SIMPLE_POLICY if c == "cpu" else DEVICE_POLICY) for c in classes}
    return engine.issue(tee_claims, policies, signer={"key_pem": signer[0], "cert_pem": signer[1]},
                        config={"duration_min": 5}, now=now)


def test_an_ear_crate_token_reads_with_its_devices_and_chain(engine, trustee_signer):
    issued = _engine_token(engine, trustee_signer)
    result = ear.inspect(issued["token"], key=trustee_signer[1])
    assert result["ok"] is True, result["problems"]
    assert result["affirming"] is True
    assert result["devices"] == {"cpu": ["cpu0"], "gpu": ["gpu0"], "switch": ["switch0"]}
    assert result["submods"]["switch0"]["kind"] == "switch"
    assert result["signature"]["chain"]["leaf_is_given"] is True
    assert result["profile"] == ear.TRUSTEE_PROFILE
    assert "x5c" not in json.dumps(result["header"])


def test_an_ear_crate_token_without_the_certificate_is_not_ok(engine, trustee_signer):
    result = ear.inspect(_engine_token(engine, trustee_signer)["token"])
    assert result["signature"]["key_source"] == "embedded-jwk" and result["signature"]["verified"] is True
    assert result["ok"] is False and result["affirming"] is False and result["claims_affirming"] is True


def test_an_ear_crate_token_from_another_signer_or_the_future_is_refused(engine, trustee_signer):
    other = ec.generate_private_key(ec.SECP256R1())
    other_pem = self_signed_cert(other).public_bytes(serialization.Encoding.PEM).decode()
    result = ear.inspect(_engine_token(engine, trustee_signer)["token"], key=other_pem)
    assert result["ok"] is False and result["affirming"] is False
    future = int(datetime.datetime.now(datetime.timezone.utc).timestamp()) + 3600
    result = ear.inspect(_engine_token(engine, trustee_signer, now=future)["token"], key=trustee_signer[1])
    assert result["ok"] is False and any("issued in the future" in p for p in result["problems"])


def test_an_ear_crate_token_forged_after_signing_is_not_affirming(engine, trustee_signer):
    token = _engine_token(engine, trustee_signer, classes=("cpu",))["token"]
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["submods"]["cpu0"]["ear.status"] == "affirming"
    claims["iat"] -= 1
    forged = ".".join([head, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), signature])
    result = ear.inspect(forged, key=trustee_signer[1])
    assert result["signature"]["verified"] is False
    assert result["affirming"] is False and result["claims_affirming"] is True
