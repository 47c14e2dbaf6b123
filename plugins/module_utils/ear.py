# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""EAR attestation tokens from Trustee: parse, verify, and explain them in words.

PRIVATE to this collection. Facts from shared/reference/attestation.md, section 4: the token is a JWS
(ES256) whose header embeds the signer's public key as ``jwk`` (or a chain as ``x5c``); its
payload has ``submods`` (``cpu0``, ``gpu0``, ...), each with an ``ear.status`` and an
``ear.trustworthiness-vector`` of eight AR4SI claims. A submod's status is its worst claim tier.

Signatures are checked with joserfc, or with cryptography when joserfc is absent; nothing here
does signature arithmetic itself. A key embedded in the token proves only that the token is
intact, so :func:`inspect` never calls a token good without the Trustee attestation certificate
(anyone can sign a token with a key of their own and embed it), and it reports ``affirming`` only
for a signature verified against that certificate: a forged payload must not read as affirming.
Trustee embeds its certificate chain as ``header.jwk.x5c``; it is checked against the given
certificate and never returned.
Malformed input raises :class:`EarError` (a ValueError); a bad signature, an expired token or a
non-affirming submod is reported in the result, not raised.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import traceback

try:
    from joserfc import jws as _jws
    from joserfc.errors import JoseError as _JoseError
    from joserfc.jwk import ECKey as _ECKey

    HAS_JOSERFC = True
    JOSERFC_IMPORT_ERROR = None
except ImportError:
    HAS_JOSERFC = False
    JOSERFC_IMPORT_ERROR = traceback.format_exc()

try:
    from cryptography import x509 as _x509
    from cryptography.exceptions import InvalidSignature as _InvalidSignature
    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives import serialization as _serialization
    from cryptography.hazmat.primitives.asymmetric import ec as _ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature as _encode_dss

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

__all__ = [
    "CLAIM_MEANINGS",
    "EarError",
    "GROUPS",
    "HAS_CRYPTOGRAPHY",
    "HAS_JOSERFC",
    "TIERS",
    "inspect",
    "parse",
    "tier",
    "verify",
]

# An EAR with verbose GPU evidence can reach a few hundred KiB; this bounds hostile input only.
MAX_TOKEN_BYTES = 4 * 1024 * 1024

GROUPS = ("instance-identity", "configuration", "executables", "file-system", "hardware",
          "runtime-opaque", "storage-opaque", "sourced-data")
TIERS = ("none", "affirming", "warning", "contraindicated")  # worst last

_COMMON = {-1: "verifier malfunction", 0: "no claim made", 1: "unexpected evidence",
           99: "cryptographic validation failed"}
# draft-ietf-rats-ar4si values, as rust-ear names them; 4 is Trustee's own (rtmr_1/rtmr_2 only).
CLAIM_MEANINGS = {
    "instance-identity": {2: "recognized instance", 96: "untrustworthy instance", 97: "unrecognized instance"},
    "configuration": {2: "approved configuration", 3: "safe configuration (no known vulnerabilities)",
                      32: "unsafe configuration", 36: "configuration elements unavailable",
                      96: "unsupportable configuration"},
    "executables": {2: "approved boot and run-time", 3: "approved boot-time",
                    4: "approved boot measurements (RTMR 1-2 only, Trustee's Grub branch)",
                    32: "known bugs or vulnerabilities", 33: "unrecognized run-time",
                    96: "contraindicated run-time"},
    "file-system": {2: "approved file system", 32: "unrecognized file-system item",
                    96: "contraindicated file system"},
    "hardware": {2: "genuine hardware", 32: "genuine but vulnerable hardware", 96: "contraindicated hardware",
                 97: "unrecognized hardware"},
    "runtime-opaque": {2: "encrypted memory", 32: "isolated memory", 96: "visible memory"},
    "storage-opaque": {2: "hardware-backed encrypted secrets", 32: "software-encrypted secrets",
                       96: "unencrypted secrets"},
    "sourced-data": {2: "trusted sources", 32: "untrusted sources", 96: "contraindicated sources"},
}

# What Trustee's default policies mean by their fallback values, per kind of submod.
_HINTS = {
    ("cpu", "executables", 33): "no reference value matched the measured guest kernel, initrd and command line "
                                "(TDX rtmr_1/rtmr_2, SNP snp_launch_measurement): regenerate them with veritas "
                                "for this OpenShift version and the exact kernel command line",
    ("cpu", "hardware", 97): "the TEE platform was not recognized: TDX mr_td missing from the reference values, "
                             "a TCB status other than UpToDate or expired collateral; SNP TCB values "
                             "(snp_bootloader, snp_microcode, snp_snp_svn, snp_tee_svn) missing",
    ("cpu", "configuration", 36): "TDX xfam missing from the reference values or a debug TD; SNP debug allowed, "
                                  "a migration agent, or configuration values that differ",
    ("gpu", "hardware", 97): "no NRAS claims for the GPU (the Trustee NVIDIA verifier is Local, or NRAS is "
                             "unreachable) or its certificate chain is not valid",
    ("gpu", "executables", 33): "the GPU driver and VBIOS RIMs were not fetched or did not match (NRAS)",
    ("gpu", "configuration", 36): "the GPU reports secure boot off or debug enabled",
}


# Trustee's submods are named ``<tee class><index>`` (attestation-service/src/token/ear_broker.rs,
# ``issue``: ``format!("{}{}", tee_claims.tee_class, tee_class_index)``). The classes its verifiers emit:
# ``cpu`` for the primary TEE (attestation-service/src/lib.rs), ``gpu`` and ``switch`` from the NVIDIA
# verifier (deps/verifier/src/nvidia/mod.rs, ``evaluate_device_remotely``: Hopper/Blackwell -> "gpu",
# LS10 NVSwitch -> "switch"), ``ppcie`` for NVIDIA protected-PCIe topologies, ``nvidia-dpu``
# (deps/verifier/src/nvidia_dpu/mod.rs ``TEE_CLASS_NVIDIA_DPU``) and ``dpu``
# (deps/verifier/src/dpu/mod.rs ``TEE_CLASS_DPU``).
SUBMOD_KINDS = ("cpu", "gpu", "switch", "ppcie", "nvidia-dpu", "dpu")
# ear_broker.rs DEFAULT_PROFILE: the profile every Trustee EAR carries unless its config renames it.
TRUSTEE_PROFILE = "tag:github.com,2024:confidential-containers/Trustee"


class EarError(ValueError):
    """A token that cannot be read at all (not a JWS, bad base64 or JSON, missing parts)."""


def tier(value) -> str:
    """AR4SI tier of one claim value (rust-ear's ranges)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EarError("trust claim {0!r} is not an integer".format(value))
    if -1 <= value <= 1:
        return "none"
    if -32 <= value < 32:
        return "affirming"
    if -96 <= value < 96:
        return "warning"
    return "contraindicated"


def submod_kind(name: str) -> str:
    """The TEE class of a submod from its name (``cpu0`` -> ``cpu``, ``nvidia-dpu1`` -> ``nvidia-dpu``)."""
    match = re.match(r"^(.*?)(\d+)$", name)
    return match.group(1) if match and match.group(1) in SUBMOD_KINDS else "unknown"


def meaning(group: str, value: int) -> str:
    return CLAIM_MEANINGS.get(group, {}).get(value) or _COMMON.get(value) or "value {0} (no name in AR4SI)".format(value)


# --------------------------------------------------------------------------------------------
# parsing


def _b64url(segment, what):
    if not re.match(r"^[A-Za-z0-9_-]*={0,2}$", segment):
        raise EarError("{0}: not base64url".format(what))
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EarError("{0}: not base64url ({1})".format(what, exc))


def _json(raw, what):
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EarError("{0}: not JSON ({1})".format(what, exc))
    if not isinstance(obj, dict):
        raise EarError("{0}: expected a JSON object".format(what))
    return obj


def _token_text(value):
    """The compact JWS out of a token, the in-pod API's JSON, or a dict of it."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise EarError("token: not UTF-8 text")
    has_keypair = False
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TOKEN_BYTES:
            raise EarError("token: {0} bytes is above the {1} accepted".format(len(text), MAX_TOKEN_BYTES))
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise EarError("token: looks like JSON but does not parse ({0})".format(exc))
        else:
            return text, has_keypair
    if isinstance(value, dict):
        if "token" not in value:
            raise EarError('token: the JSON has no "token" field (expected {"token": ..., "tee_keypair": ...})')
        has_keypair = bool(value.get("tee_keypair"))
        token = value["token"]
        if not isinstance(token, str):
            raise EarError('token: "token" must be a string')
        return token.strip(), has_keypair
    raise EarError("token: expected a JWT string or the /aa/token JSON, got {0}".format(type(value).__name__))


def parse(value) -> dict:
    """``{token, header, claims, signing_input, signature, has_tee_keypair}`` without verifying anything."""
    token, has_keypair = _token_text(value)
    parts = token.split(".")
    if len(parts) != 3:
        raise EarError("token: a JWS has 3 dot-separated parts, this has {0}".format(len(parts)))
    header = _json(_b64url(parts[0], "token header"), "token header")
    claims = _json(_b64url(parts[1], "token payload"), "token payload")
    signature = _b64url(parts[2], "token signature")
    return {"token": token, "header": header, "claims": claims, "signature": signature,
            "signing_input": (parts[0] + "." + parts[1]).encode("ascii"), "has_tee_keypair": has_keypair}


# --------------------------------------------------------------------------------------------
# verifying


def _public_key_from(key):
    """A cryptography EC public key from PEM (certificate or key), a JWK dict or its JSON."""
    if not HAS_CRYPTOGRAPHY:
        raise EarError("verifying needs the cryptography library")
    if isinstance(key, str) and key.strip().startswith("{"):
        try:
            key = json.loads(key)
        except ValueError as exc:
            raise EarError("key: looks like a JWK but is not JSON ({0})".format(exc))
    if isinstance(key, dict):
        if key.get("kty") != "EC" or key.get("crv") != "P-256":
            raise EarError("key: ES256 needs an EC P-256 JWK, got kty={0!r} crv={1!r}".format(key.get("kty"), key.get("crv")))
        try:
            x = int.from_bytes(_b64url(key["x"], "jwk x"), "big")
            y = int.from_bytes(_b64url(key["y"], "jwk y"), "big")
            return _ec.EllipticCurvePublicNumbers(x, y, _ec.SECP256R1()).public_key()
        except (KeyError, ValueError) as exc:
            raise EarError("key: invalid EC JWK ({0})".format(exc))
    if isinstance(key, str):
        data = key.strip().encode("ascii", "replace")
        try:
            if b"BEGIN CERTIFICATE" in data:
                public = _x509.load_pem_x509_certificate(data).public_key()
            else:
                public = _serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise EarError("key: not a PEM certificate or public key ({0})".format(exc))
        if not isinstance(public, _ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise EarError("key: ES256 needs an EC P-256 key")
        return public
    raise EarError("key: expected PEM text or a JWK, got {0}".format(type(key).__name__))


def _b64_any(text, what):
    """DER out of an x5c entry: RFC 7515 says standard base64, trustee's ear_broker.rs ``pubkey_jwk``
    writes URL_SAFE_NO_PAD; both are read."""
    if not isinstance(text, str) or not text:
        raise EarError("{0}: expected a base64 string".format(what))
    try:
        if re.match(r"^[A-Za-z0-9+/]*={0,2}$", text) and len(text) % 4 == 0:
            return base64.b64decode(text, validate=True)
        return _b64url(text, what)
    except (binascii.Error, ValueError):
        raise EarError("{0}: not base64".format(what))


def _header_chain(header):
    """The certificate chain the header carries (DER list): ``jwk.x5c`` as Trustee writes it, or ``x5c``."""
    jwk = header.get("jwk") if isinstance(header.get("jwk"), dict) else {}
    x5c = jwk.get("x5c", header.get("x5c"))
    if x5c is None:
        return []
    if not isinstance(x5c, list):
        raise EarError("token header: x5c must be a list of base64 certificates")
    return [_b64_any(item, "token header x5c[{0}]".format(i)) for i, item in enumerate(x5c)]


def _der_to_pem(der):
    return "-----BEGIN CERTIFICATE-----\n{0}\n-----END CERTIFICATE-----\n".format(base64.b64encode(der).decode("ascii"))


def _embedded_key(header):
    if isinstance(header.get("jwk"), dict):
        return header["jwk"], "embedded-jwk"
    chain = _header_chain(header)
    if chain:
        return _der_to_pem(chain[0]), "embedded-x5c"
    return None, None


def _same_key(a, b):
    return a.public_numbers() == b.public_numbers()


def check_chain(header, key=None) -> dict:
    """``{present, length, leaf_subject, leaf_is_given, jwk_matches_leaf, linked, error}`` for the x5c chain.

    The chain itself is never returned. ``leaf_is_given``: the leaf is the given certificate (or
    carries the given public key); None without a key. ``linked``: each certificate is signed by
    the next one.
    """
    result = {"present": False, "length": 0, "leaf_subject": None, "leaf_is_given": None,
              "jwk_matches_leaf": None, "linked": None, "error": None}
    chain = _header_chain(header)
    if not chain:
        return result
    if not HAS_CRYPTOGRAPHY:
        raise EarError("checking the x5c chain needs the cryptography library")
    result.update(present=True, length=len(chain))
    try:
        certs = [_x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        result["error"] = "x5c holds something that is not a DER certificate ({0})".format(exc)
        return result
    leaf = certs[0]
    result["leaf_subject"] = leaf.subject.rfc4514_string()
    leaf_key = leaf.public_key()
    jwk = header.get("jwk")
    if isinstance(jwk, dict):
        try:
            result["jwk_matches_leaf"] = _same_key(_public_key_from(jwk), leaf_key)
        except EarError:
            result["jwk_matches_leaf"] = False
    linked = True
    for child, parent in zip(certs, certs[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, _InvalidSignature):
            linked = False
    result["linked"] = linked
    if key is not None:
        given_der = None
        if isinstance(key, str) and "BEGIN CERTIFICATE" in key:
            try:
                given_der = _x509.load_pem_x509_certificate(key.strip().encode("ascii", "replace")).public_bytes(
                    _serialization.Encoding.DER)
            except ValueError:
                given_der = None
        if given_der is not None:
            result["leaf_is_given"] = given_der == chain[0]
        else:
            result["leaf_is_given"] = _same_key(_public_key_from(key), leaf_key)
    return result


def _verify_joserfc(token, public):
    registry = _jws.JWSRegistry(algorithms=["ES256"], strict_check_header=False)
    registry.max_header_length = MAX_TOKEN_BYTES
    registry.max_payload_length = MAX_TOKEN_BYTES
    key = _ECKey.import_key(public)
    try:
        _jws.deserialize_compact(token, key, algorithms=["ES256"], registry=registry)
    except _JoseError as exc:
        return str(exc) or exc.__class__.__name__
    return None


def _verify_cryptography(parsed, public):
    signature = parsed["signature"]
    if len(signature) != 64:
        return "ES256 signature must be 64 bytes (r || s), got {0}".format(len(signature))
    der = _encode_dss(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, parsed["signing_input"], _ec.ECDSA(_hashes.SHA256()))
    except _InvalidSignature:
        return "bad signature"
    return None


def verify(value, key=None, use_joserfc: bool | None = None) -> dict:
    """``{checked, verified, key_source, library, error, note, chain}`` for the token's ES256 signature.

    ``key`` is the Trustee attestation certificate, a PEM public key or a JWK; without it the key
    embedded in the token header is used (integrity only).
    """
    parsed = value if isinstance(value, dict) and "signing_input" in value else parse(value)
    result = {"checked": False, "verified": False, "key_source": None, "library": None, "error": None, "note": None,
              "chain": None}
    alg = parsed["header"].get("alg")
    if alg != "ES256":
        result["error"] = "token header alg is {0!r}; Trustee signs EAR tokens with ES256".format(alg)
        return result
    if key is not None:
        source = "given"
    else:
        key, source = _embedded_key(parsed["header"])
        if key is None:
            result["error"] = "no key given and the token embeds none (jwk or x5c)"
            return result
        result["note"] = ("verified against the key the token carries: this proves integrity, not origin; "
                          "pass the Trustee attestation certificate to prove who signed it")
    result["key_source"] = source
    public = _public_key_from(key)
    result["chain"] = check_chain(parsed["header"], key if source == "given" else None)
    if use_joserfc is None:
        use_joserfc = HAS_JOSERFC
    if use_joserfc and not HAS_JOSERFC:
        raise EarError("joserfc is not installed")
    result["library"] = "joserfc" if use_joserfc else "cryptography"
    error = _verify_joserfc(parsed["token"], public) if use_joserfc else _verify_cryptography(parsed, public)
    result["checked"] = True
    result["verified"] = error is None
    result["error"] = error
    return result


# --------------------------------------------------------------------------------------------
# judging


def _time(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EarError("token claim {0} must be a number of seconds, got {1!r}".format(what, value))
    try:
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        raise EarError("token claim {0} = {1!r} is not a usable time".format(what, value))


def _submod(name, body, tee_hint):
    if not isinstance(body, dict):
        raise EarError("submods.{0}: expected an object".format(name))
    kind = submod_kind(name)
    vector = body.get("ear.trustworthiness-vector") or {}
    if not isinstance(vector, dict):
        raise EarError("submods.{0}: ear.trustworthiness-vector must be an object".format(name))
    claims = {}
    worst = "none"
    not_affirming = []
    for group in GROUPS:
        value = vector.get(group, 0)
        level = tier(value)
        claims[group] = {"value": value, "tier": level, "meaning": meaning(group, value)}
        if TIERS.index(level) > TIERS.index(worst):
            worst = level
        if level in ("warning", "contraindicated"):
            text = "{0} {1} ({2}): {3}".format(group, value, level, meaning(group, value))
            hint = _HINTS.get((kind, group, value))
            if hint:
                text += "; likely cause: " + hint
            not_affirming.append(text)
    for group in sorted(set(vector) - set(GROUPS)):
        not_affirming.append("unknown trust claim {0!r} = {1!r}".format(group, vector[group]))
    evidence = body.get("ear.veraison.annotated-evidence") or {}
    if not isinstance(evidence, dict):
        raise EarError("submods.{0}: ear.veraison.annotated-evidence must be an object".format(name))
    tee = next((t for t in ("tdx", "snp", "nvidia", "az-tdx-vtpm", "az-snp-vtpm", "sample") if t in evidence), None)
    status = body.get("ear.status")
    return {
        "kind": kind,
        "status": status,
        "computed_status": worst,
        "status_consistent": status == worst,
        "policy_id": body.get("ear.appraisal-policy-id"),
        "trust_vector": claims,
        "not_affirming": not_affirming,
        "tee": tee or (tee_hint if kind == "cpu" else None),
        "init_data": evidence.get("init_data"),
    }


def _kbs_url_claim(submod_body):
    evidence = submod_body.get("ear.veraison.annotated-evidence") or {}
    claims = evidence.get("init_data_claims") or {}
    aa = claims.get("aa.toml") if isinstance(claims, dict) else None
    if isinstance(aa, dict):
        kbs = (aa.get("token_configs") or {}).get("kbs") or {}
        if isinstance(kbs, dict):
            return kbs.get("url")
    return None


def inspect(value, key=None, expected_init_data: str | None = None, expected_kbs_url: str | None = None,
            require_gpu: bool = False, verify_signature: bool = True, now: datetime.datetime | None = None,
            leeway: int = 0, expected_profile: str = TRUSTEE_PROFILE) -> dict:
    """Everything a smoke test needs to say whether a token proves a good attestation, and why not.

    ``expected_init_data`` is the hex TEE binding (TDX MRCONFIGID or SNP HOSTDATA) the pod's
    initdata should give; ``expected_kbs_url`` the KBS URL its aa.toml should name; ``key`` the
    Trustee attestation certificate (without it the result is never ``ok``).
    Returns ``{header, claims, issuer, issued_at, expires_at, expired, signature, submods,
    affirming, claims_affirming, trusted, gpus, devices, init_data, kbs_url, has_tee_keypair,
    problems, ok}``; never the keypair, never the x5c chain. ``affirming`` is true only when every
    submod is affirming AND the signature was verified against the given certificate;
    ``claims_affirming`` is what the payload says, whoever signed it.
    """
    parsed = parse(value)
    claims = parsed["claims"]
    problems = []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)

    signature = None
    trusted = False
    if verify_signature:
        signature = verify(parsed, key=key)
        if not signature["verified"]:
            problems.append("signature not verified: {0}".format(signature["error"]))
        elif signature["key_source"] != "given":
            problems.append("no Trustee attestation certificate given: the signature was checked against the key "
                            "the token carries, which anyone can make; this proves integrity, not that Trustee "
                            "signed it")
        else:
            trusted = True
        chain = signature.get("chain") or {}
        if chain.get("error"):
            problems.append("token header x5c: {0}".format(chain["error"]))
            trusted = False
        if chain.get("leaf_is_given") is False:
            problems.append("the certificate in the token header (x5c, subject {0}) is not the given Trustee "
                            "certificate".format(chain.get("leaf_subject")))
            trusted = False
        if chain.get("jwk_matches_leaf") is False:
            problems.append("the token header's jwk is not the key of its own x5c certificate")
            trusted = False
        if chain.get("linked") is False:
            problems.append("the token header's x5c chain is broken: a certificate is not signed by the next one")
            trusted = False
    else:
        problems.append("signature not checked (verify_signature is off): nothing in the token can be trusted")

    profile = claims.get("eat_profile")
    if profile != expected_profile:
        problems.append("eat_profile is {0!r}, not Trustee's {1!r}: this is not a Trustee EAR".format(
            profile, expected_profile))

    exp = _time(claims.get("exp"), "exp")
    iat = _time(claims.get("iat"), "iat")
    if iat is None:
        problems.append("the token has no iat claim")
    elif iat > now + datetime.timedelta(seconds=leeway):
        problems.append("the token was issued in the future ({0}): the signer's clock or the token is "
                        "wrong".format(iat.strftime("%Y-%m-%dT%H:%M:%SZ")))
    expired = None
    if exp is None:
        problems.append("the token has no exp claim")
    else:
        expired = now >= exp + datetime.timedelta(seconds=leeway)
        if expired:
            problems.append("the token expired at {0}".format(exp.strftime("%Y-%m-%dT%H:%M:%SZ")))

    submods_raw = claims.get("submods")
    if not isinstance(submods_raw, dict) or not submods_raw:
        raise EarError("token payload: no submods (this is not an EAR attestation token)")
    submods = {}
    cpu_tee = None
    for name in sorted(submods_raw):
        submods[name] = _submod(name, submods_raw[name], cpu_tee)
        if submods[name]["kind"] == "cpu" and submods[name]["tee"]:
            cpu_tee = submods[name]["tee"]
    for name, sub in submods.items():
        if not sub["status_consistent"]:
            problems.append("{0}: ear.status says {1!r} but its trust vector gives {2!r}".format(
                name, sub["status"], sub["computed_status"]))
        if sub["status"] != "affirming":
            detail = "; ".join(sub["not_affirming"]) or "no claim reached the affirming tier"
            problems.append("{0} is {1}, not affirming: {2}".format(name, sub["status"], detail))
    gpus = sorted(n for n, s in submods.items() if s["kind"] == "gpu")
    if require_gpu and not gpus:
        problems.append("no gpu submod: the GPU was not attested (is the GPU in CC mode and passed to the pod?)")

    init_data = None
    cpu_names = [n for n in sorted(submods) if submods[n]["kind"] == "cpu"]
    claim = submods[cpu_names[0]]["init_data"] if cpu_names else None
    if expected_init_data is not None or claim is not None:
        expected = expected_init_data.lower() if isinstance(expected_init_data, str) else None
        match = None if expected is None else (isinstance(claim, str) and claim.lower() == expected)
        init_data = {"claim": claim, "expected": expected, "match": match}
        if match is False:
            problems.append("init_data claim {0} differs from the expected binding {1}: the pod ran other "
                            "initdata than intended".format(claim, expected))
    kbs_url = None
    if cpu_names:
        url = _kbs_url_claim(submods_raw[cpu_names[0]])
        if expected_kbs_url is not None or url is not None:
            match = None if expected_kbs_url is None else url == expected_kbs_url
            kbs_url = {"claim": url, "expected": expected_kbs_url, "match": match}
            if match is False:
                problems.append("aa.toml in the token names KBS {0!r}, expected {1!r}".format(url, expected_kbs_url))

    for name, sub in submods.items():
        if sub["kind"] == "unknown":
            problems.append("{0}: not a submod name Trustee emits (<class><index>, class one of {1})".format(
                name, ", ".join(SUBMOD_KINDS)))
    claims_affirming = all(s["status"] == "affirming" for s in submods.values())
    header = {k: v for k, v in parsed["header"].items() if k != "x5c"}
    if isinstance(header.get("jwk"), dict):
        header["jwk"] = {k: v for k, v in header["jwk"].items() if k != "x5c"}
    devices = {}
    for name, sub in submods.items():
        devices.setdefault(sub["kind"], []).append(name)
    return {
        "header": header,
        "claims": claims,
        "issuer": claims.get("iss"),
        "profile": profile,
        "issued_at": iat.strftime("%Y-%m-%dT%H:%M:%SZ") if iat else None,
        "expires_at": exp.strftime("%Y-%m-%dT%H:%M:%SZ") if exp else None,
        "expired": expired,
        "signature": signature,
        "submods": submods,
        "affirming": claims_affirming and trusted,
        "claims_affirming": claims_affirming,
        "trusted": trusted,
        "gpus": gpus,
        "devices": devices,
        "init_data": init_data,
        "kbs_url": kbs_url,
        "has_tee_keypair": parsed["has_tee_keypair"],
        "problems": problems,
        "ok": not problems,
    }
