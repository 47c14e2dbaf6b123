"""The twin KBS's built-in attestation service: verify evidence, then appraise and issue as Trustee does.

For one ``/kbs/v0/attest`` request (trustee 78962cd4 ``kbs/src/attestation/backend.rs`` ``attest``,
``kbs/src/attestation/coco/builtin.rs``, ``attestation-service/src/lib.rs`` ``evaluate``): the body
is parsed as a kbs-types ``Attestation``; the primary evidence (TDX or SNP) and each GPU's evidence
go to the twin's verifiers (``verifier.py``: simulated hardware); what they return goes, as
``TeeClaims``, to the EAR broker. The broker is upstream's own code path run by the engine
(``engine.py``, ``twin/engine``): each device appraised with the policy ``default_<class>`` by
regorus (only ``data.policy.trust_claims`` and ``data.policy.extensions`` are read), trust vectors,
tiers and status by the ``ear`` crate, the token built and signed ES256 by the ``ear`` crate with
the broker's header (its JWK, and x5c when a certificate is configured).

Configuration, read in the schema the real operator writes (``kbs-config-*.toml``), with the fields
upstream's structs deserialize (unknown fields ignored, as serde does there):

* ``[attestation_service.attestation_token_broker]`` is ``EarTokenConfiguration``
  (``attestation-service/src/config.rs`` ``Config.attestation_token_broker``): ``duration_min``
  (default 5), ``issuer_name``, ``developer_name``, ``build_name``, ``profile_name``,
  ``verbose_token`` and ``signer`` (``key_path``, ``cert_path``, ``cert_url``). The Restricted
  template's ``[attestation_service.attestation_token_config] duration_min`` is a field no upstream
  struct has: it is ignored and the default (5) applies.
* Attestation policies: the AS keeps them in its storage, namespace ``attestation_service_policy``
  (``attestation-service/src/lib.rs`` ``AS_POLICY_STORAGE_NAMESPACE``) of the KBS's unified
  storage backend (``kbs/src/attestation/coco/builtin.rs`` ``Config::to_as_config``), a LocalFs
  directory ``<dir_path>/attestation_service_policy/<id>.rego``; the operator mounts its ConfigMaps
  at ``/opt/confidential-containers/storage/attestation_service_policy/default_cpu.rego`` and
  ``default_gpu.rego`` (trustee-operator ``internal/controller/kbsconfig_controller.go``,
  ``common.go`` ``attestationPolicyPath``). The path comes from ``twin.kbs.config``
  ``attestation_policy_path``. Where no file is there, the broker installs its built-in default
  (``EarAttestationTokenBroker::new``: ``set_policy(.., overwrite=false)``); the twin's built-in
  defaults are its own policies in ``twin/kbs/policies``.
* Reference values: ``twin.kbs.rvps.load`` (upstream's LocalJson reading rules); an entry that
  cannot be read fails the evaluation that queries it, an unreadable store every query.
"""

import json
import threading
import tomllib
from pathlib import Path

from . import config as kbs_config
from . import engine as engine_mod
from . import rvps, verifier

# attestation-service/src/lib.rs AS_POLICY_STORAGE_NAMESPACE; ear_token/broker.rs policy ids.
AS_POLICY_NAMESPACE = "attestation_service_policy"
DEFAULT_POLICY_ID = "default"
TEE_CLASSES = ("cpu", "gpu")
# The pod paths the operator mounts the CPU and GPU policies at (for the default LocalFs layout).
CPU_POLICY_PATH = f"/opt/confidential-containers/storage/{AS_POLICY_NAMESPACE}/default_cpu.rego"
GPU_POLICY_PATH = f"/opt/confidential-containers/storage/{AS_POLICY_NAMESPACE}/default_gpu.rego"
BUILTIN_POLICIES = Path(__file__).resolve().parent / "policies"

AR4SI_GROUPS = ("instance-identity", "configuration", "executables", "file-system", "hardware", "runtime-opaque",
                "storage-opaque", "sourced-data")
TIERS = engine_mod.TIERS


class AttestationError(Exception):
    """Attestation refused; the message is the reason given to the attester (and logged)."""


def _engine():
    return engine_mod.shared()


def tier(value):
    """The AR4SI tier of one claim value, as the ear crate computes it (``TrustClaim::tier``)."""
    return _engine().tiers({"hardware": value})["tiers"]["hardware"]


def status_of(vector):
    """The appraisal status of a trust vector: its worst tier (``Appraisal::update_status_from_trust_vector``)."""
    return _engine().tiers(dict(vector))["status"]


def init_data_claims(toml_text):
    """The initdata as claims: attestation-service/src/lib.rs ``parse_init_data``.

    The ``data`` table as JSON; ``aa.toml`` and ``cdh.toml`` replaced by their parsed TOML when they
    parse (kept as text when not); a ``policy.rego`` whose ``policy_data := {...}`` JSON is found is
    replaced by ``agent_policy_claims`` (``extract_policy_data``). A body that is not TOML fails.
    """
    if toml_text is None:
        return None
    try:
        doc = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise AttestationError(f"parse init data: parse TOML structured data: {exc}")
    claims = dict(doc.get("data") or {})
    for key in ("cdh.toml", "aa.toml"):
        if isinstance(claims.get(key), str):
            try:
                claims[key] = tomllib.loads(claims[key])
            except tomllib.TOMLDecodeError:
                pass
    if isinstance(claims.get("policy.rego"), str):
        policy_data = _extract_policy_data(claims["policy.rego"])
        if policy_data is not None:
            del claims["policy.rego"]
            claims["agent_policy_claims"] = policy_data
    return claims


def _extract_policy_data(rego_text):
    """lib.rs ``extract_policy_data``: the JSON object from ``policy_data := {`` to the end of the file."""
    start = rego_text.find("policy_data := {")
    if start < 0:
        return None
    try:
        return json.loads(rego_text[start + len("policy_data := "):])
    except ValueError:
        return None


def token_config(conf):
    """``EarTokenConfiguration`` fields of ``[attestation_service.attestation_token_broker]``, for the engine."""
    broker = ((conf or {}).get("attestation_service") or {}).get("attestation_token_broker") or {}
    fields = ("duration_min", "issuer_name", "developer_name", "build_name", "profile_name", "verbose_token")
    return {name: broker[name] for name in fields if name in broker}


class AttestationService:
    def __init__(self, root, conf, say, collateral, engine=None):
        self.root = Path(root)
        self.conf = conf
        self.say = say
        self.collateral = collateral
        self.engine = engine or engine_mod.shared(say=say)
        service = conf.get("attestation_service") or {}
        self.verifiers = service.get("verifier_config") or {}
        self.token_config = token_config(conf)
        if "attestation_token_config" in service:
            say("attestation_service.attestation_token_config: not a field of the attestation service's config "
                "(upstream reads attestation_token_broker); ignored, token duration "
                f"{self.token_config.get('duration_min', 5)} min")
        broker = service.get("attestation_token_broker") or {}
        signer = broker.get("signer") or {}
        self.signer = None
        if signer.get("key_path"):
            try:
                cert = signer.get("cert_path")
                self.signer = {"key_pem": self._read(signer["key_path"]).decode(),
                               "cert_pem": self._read(cert).decode() if cert else None,
                               "cert_url": signer.get("cert_url")}
            except OSError as exc:
                raise AttestationError(f"Read Token Signer private key failed: {exc}")
        else:
            say("attestation token signer: none configured; tokens are signed with an ephemeral key")
        self.policies = {}
        for tee_class in TEE_CLASSES:
            policy_id = f"{DEFAULT_POLICY_ID}_{tee_class}"
            path = kbs_config.attestation_policy_path(conf, policy_id)
            try:
                self.policies[policy_id] = self._read(path).decode()
                source = path
            except OSError:
                self.policies[policy_id] = (BUILTIN_POLICIES / f"{policy_id}.rego").read_text()
                source = "the built-in default"
            try:
                self.engine.check_policy(self.policies[policy_id])
            except engine_mod.EngineError as exc:
                say(f"attestation policy {policy_id} ({source}): {exc}; attestation of that class will fail")
            else:
                say(f"attestation policy {policy_id}: {source}")
        self._lock = threading.Lock()

    def _read(self, path):
        return (self.root / str(path).lstrip("/")).read_bytes()

    def reference_store(self):
        """``{reference_values, reference_errors, reference_failure}`` for the engine, from the RVPS."""
        try:
            values = rvps.load(self._read, self.conf, say=self.say)
        except rvps.ReferenceValueFileError as exc:
            return {"reference_values": {}, "reference_errors": None, "reference_failure": str(exc)}
        return {"reference_values": dict(values), "reference_errors": dict(getattr(values, "unreadable", {}) or {}),
                "reference_failure": None}

    def parse_request(self, body):
        """A ``/kbs/v0/auth`` body as the KBS reads it (kbs-types ``Request`` and the version check)."""
        try:
            return self.engine.parse("Request", body)
        except engine_mod.EngineError as exc:
            raise AttestationError(str(exc))

    def attest(self, tee, request):
        """(token, claims) for a KBS Attestation payload; AttestationError when refused."""
        try:
            parsed = self.engine.parse("Attestation", request)
        except engine_mod.EngineUnavailable:
            raise
        except engine_mod.EngineError as exc:
            raise AttestationError(str(exc))
        runtime_data = request["runtime-data"] if isinstance(request, dict) else parsed["runtime-data"]
        init = parsed.get("init-data")
        init_toml = None
        if init is not None:
            # coco/builtin.rs verify: only the "toml" format.
            if init.get("format") != "toml":
                raise AttestationError(f"Unsupported initdata format: {init.get('format')}")
            init_toml = init["body"]
        evidence = parsed["tee-evidence"]
        try:
            if tee == "tdx":
                claims = verifier.verify_tdx(evidence["primary_evidence"], runtime_data, init_toml, self.collateral)
            elif tee == "snp":
                claims = verifier.verify_snp(evidence["primary_evidence"], runtime_data, init_toml)
            else:
                raise verifier.VerificationError(f"TEE {tee!r} has no verifier in the twin (tdx, snp)")
            gpus = verifier.verify_nvidia(evidence.get("additional_evidence"), runtime_data,
                                          self.verifiers.get("nvidia_verifier"), say=self.say)
        except verifier.VerificationError as exc:
            raise AttestationError(f"Verifier evaluate failed: {exc}")
        # backend.rs attest: the primary device's runtime data carries the additional evidence string.
        kbs_runtime = {"tee-pubkey": runtime_data.get("tee-pubkey"), "nonce": runtime_data.get("nonce")}
        primary_runtime = dict(kbs_runtime, **{"additional-evidence": evidence.get("additional_evidence", "")})
        tee_claims = [{"tee": tee, "tee_class": "cpu", "claims": claims,
                       "init_data_claims": init_data_claims(init_toml), "runtime_data_claims": primary_runtime}]
        tee_claims += [{"tee": "nvidia", "tee_class": "gpu", "claims": gpu, "init_data_claims": None,
                        "runtime_data_claims": kbs_runtime} for gpu in gpus]
        try:
            issued = self.engine.issue(tee_claims, self.policies, config=self.token_config, signer=self.signer,
                                       policy_ids=[DEFAULT_POLICY_ID], **self.reference_store())
        except engine_mod.EngineUnavailable:
            raise
        except engine_mod.EngineError as exc:
            raise AttestationError(f"verify TEE evidence failed: {exc}")
        payload = issued["claims"]
        for name, submod in payload["submods"].items():
            vector = submod.get("ear.trustworthiness-vector") or {}
            self.say(f"attestation: {name} {submod.get('ear.status')} "
                     + " ".join(f"{k}={v}" for k, v in vector.items() if v))
        return issued["token"], payload


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
