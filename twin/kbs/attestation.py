"""The twin KBS's built-in attestation service: verify evidence, appraise with policies, issue an EAR.

For one ``/kbs/v0/attest`` request: the primary evidence (TDX or SNP) and each GPU's evidence go to
their verifiers; the CPU claims are appraised by the CPU policy (``default_cpu``), every GPU's by the
GPU policy (``default_gpu``), both reading the reference values; each appraisal becomes a submod
(``cpu0``, ``gpu0``...) whose status is the worst AR4SI tier among its claims; the token is an EAR,
signed ES256 with the public key (and certificate chain, when configured) in its header's JWK.
"""

import datetime
import json
import tomllib
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from . import rego, rvps, verifier

EAT_PROFILE = "tag:github.com,2024:confidential-containers/Trustee"
VERIFIER_ID = {"developer": "https://confidentialcontainers.org", "build": "attestation-service 0.1.0 (twin)"}
ISSUER = "CoCo-Attestation-Service"
AR4SI_GROUPS = ("instance-identity", "configuration", "executables", "file-system", "hardware", "runtime-opaque",
                "storage-opaque", "sourced-data")
TIERS = ("none", "affirming", "warning", "contraindicated")


class AttestationError(Exception):
    """Attestation refused; the message is the reason given to the attester (and logged)."""


def tier(value):
    if -1 <= value <= 1:
        return "none"
    if -32 < value < 32:
        return "affirming"
    if -96 < value < 96:
        return "warning"
    return "contraindicated"


def status_of(vector):
    worst = "none"
    for value in vector.values():
        if TIERS.index(tier(value)) > TIERS.index(worst):
            worst = tier(value)
    return worst


def init_data_claims(toml_text):
    """The initdata as claims: its data entries, with aa.toml and cdh.toml read as TOML."""
    try:
        doc = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise AttestationError(f"init-data is not TOML: {exc}")
    claims = {}
    for key, value in (doc.get("data") or {}).items():
        if key in ("aa.toml", "cdh.toml") and isinstance(value, str):
            try:
                claims[key] = tomllib.loads(value)
            except tomllib.TOMLDecodeError as exc:
                raise AttestationError(f"init-data {key} is not TOML: {exc}")
        else:
            claims[key] = value
    return claims


class TokenSigner:
    """The attestation-token key: the configured one (with its certificate chain), or an ephemeral key."""

    def __init__(self, key_pem=None, cert_pem=None):
        if key_pem:
            key = serialization.load_pem_private_key(key_pem, None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError("the attestation token key must be an EC P-256 key (tokens are ES256)")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        self.key = ECKey.import_key(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        self.chain = []
        if cert_pem:
            import base64

            for cert in x509.load_pem_x509_certificates(cert_pem):
                self.chain.append(base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode())

    def jwk(self):
        jwk = dict(self.key.as_dict(private=False), alg="ES256")
        if self.chain:
            jwk["x5c"] = list(self.chain)
        return jwk

    def sign(self, claims):
        return jwt.encode({"alg": "ES256", "typ": "JWT", "jwk": self.jwk()}, claims, self.key)


class AttestationService:
    def __init__(self, root, conf, opa, say, collateral):
        self.root = root
        self.conf = conf
        self.opa = opa
        self.say = say
        self.collateral = collateral
        service = conf.get("attestation_service") or {}
        self.policy_dir = service.get("policy_dir", "/opt/confidential-containers/attestation-service/policies")
        broker = service.get("attestation_token_broker") or {}
        self.duration = int(broker.get("duration_min", 5))
        signer = broker.get("signer") or {}
        key = self._read(signer["key_path"]) if signer.get("key_path") else None
        cert = self._read(signer["cert_path"]) if signer.get("cert_path") else None
        self.signer = TokenSigner(key, cert)
        if not key:
            say("attestation token signer: none configured; tokens are signed with an ephemeral key")
        storage = ((service.get("rvps_config") or {}).get("storage") or {})
        self.rvps_path = storage.get("file_path")
        self.verifiers = service.get("verifier_config") or {}
        self.policies = {}
        for policy_id in ("default_cpu", "default_gpu"):
            path = f"{self.policy_dir}/opa/{policy_id}.rego"
            try:
                self.policies[policy_id] = self._read(path).decode()
            except OSError:
                say(f"attestation policy {policy_id}: {path} is missing; attestation of that class will fail")

    def _read(self, path):
        return (self.root / str(path).lstrip("/")).read_bytes()

    def reference_values(self):
        if not self.rvps_path:
            return {}
        try:
            text = self._read(self.rvps_path).decode()
        except OSError:
            self.say(f"RVPS: {self.rvps_path} is missing; no reference values")
            return {}
        try:
            return rvps.parse(text, say=self.say)
        except rvps.ReferenceValueFileError as exc:
            raise AttestationError(f"RVPS: {self.rvps_path}: {exc}")

    def _appraise(self, policy_id, claims, reference):
        policy = self.policies.get(policy_id)
        if policy is None:
            raise AttestationError(f"attestation policy {policy_id} is not loaded")
        try:
            vector = rego.trust_vector(self.opa, policy, claims, reference)
        except rego.PolicyError as exc:
            raise AttestationError(f"attestation policy {policy_id}: {exc}")
        full = {group: vector.get(group, 0) for group in AR4SI_GROUPS}
        return {"ear.status": status_of(full), "ear.trustworthiness-vector": full,
                "ear.appraisal-policy-id": "default", "ear.veraison.annotated-evidence": claims}

    def attest(self, tee, request):
        """(token, payload) for a KBS Attestation payload; AttestationError when refused."""
        runtime_data = request.get("runtime-data")
        if not isinstance(runtime_data, dict) or "nonce" not in runtime_data or "tee-pubkey" not in runtime_data:
            raise AttestationError("runtime-data must carry nonce and tee-pubkey")
        init = request.get("init-data")
        init_toml = None
        if init is not None:
            if not isinstance(init, dict) or init.get("format") != "toml":
                raise AttestationError(f"Unsupported initdata format: {(init or {}).get('format')!r}")
            init_toml = init.get("body")
            if not isinstance(init_toml, str):
                raise AttestationError("init-data.body must be the initdata TOML text")
        evidence = request.get("tee-evidence") or {}
        primary = evidence.get("primary_evidence")
        try:
            if tee == "tdx":
                claims = verifier.verify_tdx(primary, runtime_data, init_toml, self.collateral)
            elif tee == "snp":
                claims = verifier.verify_snp(primary, runtime_data, init_toml)
            else:
                raise verifier.VerificationError(f"TEE {tee!r} has no verifier in the twin (tdx, snp)")
            gpus = verifier.verify_nvidia(evidence.get("additional_evidence"), runtime_data,
                                          self.verifiers.get("nvidia_verifier"), say=self.say)
        except verifier.VerificationError as exc:
            raise AttestationError(f"Verifier evaluate failed: {exc}")
        annotated = {}
        if "init_data" in claims:
            annotated["init_data"] = claims.pop("init_data")
            annotated["init_data_claims"] = init_data_claims(init_toml)
        if "report_data" in claims:
            annotated["report_data"] = claims.pop("report_data")
            annotated["runtime_data_claims"] = runtime_data
        annotated[tee] = claims
        reference = self.reference_values()
        submods = {"cpu0": self._appraise("default_cpu", annotated, reference)}
        for index, gpu in enumerate(gpus):
            submods[f"gpu{index}"] = self._appraise("default_gpu", {"nvidia": gpu}, reference)
        now = datetime.datetime.now(datetime.timezone.utc)
        payload = {
            "eat_profile": EAT_PROFILE,
            "iat": int(now.timestamp()),
            "exp": int((now + datetime.timedelta(minutes=self.duration)).timestamp()),
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "ear.verifier-id": VERIFIER_ID,
            "submods": submods,
        }
        for name, submod in submods.items():
            vector = submod["ear.trustworthiness-vector"]
            self.say(f"attestation {payload['jti']}: {name} {submod['ear.status']} "
                     + " ".join(f"{k}={v}" for k, v in vector.items() if v))
        return self.signer.sign(payload), payload


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
