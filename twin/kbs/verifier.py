"""The twin KBS's verifiers: simulated TDX/SNP/NVIDIA evidence in, Trustee-shaped claims out.

Each verifier checks provenance (the chip's certificate chains to the simulated vendor root of
``twin.tee``, the signature covers the evidence), freshness (the report data binds the runtime data
the KBS received, hence its nonce) and, when initdata was sent, its binding (MRCONFIGID / HOSTDATA
equal the register value of the digest of the initdata sent, ``twin.initdata``: upstream's rule,
not the collection's), then exports claims under the names the default policies read.

``init_data`` is exported whether or not initdata was sent, as upstream's verifiers do: TDX
``parse_claim!(claims, "init_data", quote.mr_config_id())`` (trustee ``deps/verifier/src/tdx/claims.rs``
``generate_parsed_claim``), SNP ``"init_data": hex::encode(report.host_data)`` (``deps/verifier/src/snp/mod.rs``
``parse_tee_evidence``). A VM launched without initdata reports zeros there. ``init_data_claims``
(the sent document's data) is the attestation service's, not a verifier's: upstream's EAR broker
(``attestation-service/src/ear_token/broker.rs`` ``transform_claims``) puts it next to ``init_data``
whenever the verifier exported one, as JSON null when no initdata was sent.

GPUs: Trustee's Remote verifier posts the evidence to NVIDIA's NRAS, which cannot be reached from a
twin. The stand-in checks what it can (signature, nonce) and answers with the verdict NRAS would
give the device, taken from the device's profile entry (``nras:`` overrides in the hardware
profile; otherwise a CC-capable Hopper or Blackwell GPU in CC mode passes every check), and logs
that it did so. The Local verifier is modelled too: it exports only measurements, and only for
Hopper, as Trustee's does.
"""

import base64
import binascii
import hashlib
import json
import logging

from .. import initdata
from .. import tee as hw

log = logging.getLogger("twin.kbs.verifier")

NRAS_URL = "https://nras.attestation.nvidia.com/v4/attest"
SUPPORTED_NRAS_ARCHES = ("HOPPER", "BLACKWELL")


class VerificationError(ValueError):
    """Evidence rejected; the message is the verifier's reason (it reaches the KBS error detail)."""


def _check_report_data(report_data_hex, runtime_data, tee):
    expected = hw.runtime_data_digest(runtime_data).hex()
    if report_data_hex != expected:
        raise VerificationError(f"{tee}: the report data does not bind the runtime data sent (nonce or tee-pubkey "
                                "differs from what the hardware signed)")


def _check_init_data(register_hex, init_data_toml, tee):
    """The ``init_data`` claim (hex of the register); VerificationError when initdata sent does not match it.

    Upstream compares only when the KBS received initdata (``InitDataHash::Value``; ``NotProvided``
    skips the check) and fails with its own words: TDX "MRCONFIGID is different from that in TDX
    Quote" (trustee ``deps/verifier/src/tdx/mod.rs`` ``verify_evidence``), SNP "Host Data Mismatch"
    (``deps/verifier/src/snp/mod.rs`` ``evaluate``). A body that is not initdata fails earlier, in
    the attestation service's ``parse_init_data`` ("parse init data").
    """
    if init_data_toml is not None:
        try:
            expected = initdata.binding(init_data_toml, tee).hex()
        except initdata.InitdataError as exc:
            raise VerificationError(str(exc))
        if expected != register_hex:
            log.info("%s %s... does not bind the initdata sent (its digest gives %s...)",
                     initdata.REGISTER_NAMES[tee], str(register_hex)[:16], expected[:16])
            raise VerificationError("MRCONFIGID is different from that in TDX Quote" if tee == "tdx"
                                    else "Host Data Mismatch")
    return register_hex


def verify_tdx(evidence, runtime_data, init_data_toml, collateral):
    """Claims of a TDX quote (``collateral`` stands in for Intel PCS: host TCB status by chip)."""
    if not isinstance(evidence, dict) or "quote" not in evidence:
        raise VerificationError("tdx: evidence has no quote")
    try:
        quote = hw.verify_signed("intel", evidence["quote"], "TDX quote")
    except hw.EvidenceError as exc:
        raise VerificationError(str(exc))
    body = quote.get("body") or {}
    header = quote.get("header") or {}
    if header.get("tee_type") != hw.TDX_TEE_TYPE:
        raise VerificationError(f"tdx: quote tee_type {header.get('tee_type')!r} is not TDX")
    _check_report_data(body.get("report_data"), runtime_data, "tdx")
    try:
        events = json.loads(base64.b64decode(evidence.get("cc_eventlog") or "", validate=True) or b"[]")
    except (ValueError, binascii.Error) as exc:
        raise VerificationError(f"tdx: the CC event log is not readable ({exc})")
    # The event log is only trusted once it replays to the RTMRs the hardware signed.
    for imr in (1, 2):
        register = "00" * 48
        for event in events:
            if event.get("imr") == imr:
                for d in event.get("digests") or []:
                    register = hw.extend(register, d["digest"])
        if register != body.get(f"rtmr_{imr}"):
            raise VerificationError(f"tdx: the CC event log does not replay to RTMR{imr}")
    init_data = _check_init_data(body.get("mr_config_id"), init_data_toml, "tdx")
    attributes = int.from_bytes(bytes.fromhex(body.get("td_attributes", "00" * 8)), "little")
    status = collateral(evidence["quote"])
    claims = {
        "quote": {"header": header, "body": {k: v for k, v in body.items()}},
        "td_attributes": {"debug": bool(attributes & 0x1), "septve_disable": bool(attributes & (1 << 28)),
                          "protection_keys": bool(attributes & (1 << 30)), "key_locker": bool(attributes & (1 << 31)),
                          "perfmon": bool(attributes & (1 << 63))},
        "tcb_status": status,
        "collateral_expiration_status": "0",
        "advisory_ids": [] if status == "UpToDate" else ["INTEL-SA-00000"],
        "uefi_event_logs": [{k: v for k, v in e.items() if k != "imr"} for e in events],
        "report_data": body.get("report_data"),
        "init_data": init_data,
    }
    return claims


def verify_snp(evidence, runtime_data, init_data_toml):
    if not isinstance(evidence, dict) or "attestation_report" not in evidence:
        raise VerificationError("snp: evidence has no attestation_report")
    try:
        report = hw.verify_signed("amd", evidence["attestation_report"], "SNP report")
    except hw.EvidenceError as exc:
        raise VerificationError(str(exc))
    _check_report_data(report.get("report_data"), runtime_data, "snp")
    init_data = _check_init_data(report.get("host_data"), init_data_toml, "snp")
    policy = report.get("policy") or {}
    platform = report.get("platform_info") or {}
    tcb = report.get("reported_tcb") or {}
    claims = {
        "measurement": report.get("measurement"),
        "policy_abi_major": policy.get("abi_major"),
        "policy_abi_minor": policy.get("abi_minor"),
        "policy_smt_allowed": policy.get("smt_allowed"),
        "policy_migrate_ma": policy.get("migrate_ma"),
        "policy_debug_allowed": policy.get("debug_allowed"),
        "policy_single_socket": policy.get("single_socket"),
        "platform_smt_enabled": platform.get("smt_enabled"),
        "platform_tsme_enabled": platform.get("tsme_enabled"),
        "reported_tcb_bootloader": tcb.get("bootloader"),
        "reported_tcb_microcode": tcb.get("microcode"),
        "reported_tcb_snp": tcb.get("snp"),
        "reported_tcb_tee": tcb.get("tee"),
        "chip_id": report.get("chip_id"),
        "report_data": report.get("report_data"),
        "init_data": init_data,
    }
    return claims


def _nras_claims(report, nonce_ok):
    good_arch = report.get("architecture") in SUPPORTED_NRAS_ARCHES
    ok = bool(report.get("cc_capable")) and report.get("cc_mode") == "on" and good_arch
    chain = {"x-nvidia-cert-status": "valid", "x-nvidia-cert-ocsp-status": "good",
             "x-nvidia-cert-expiration-date": "2030-01-01T00:00:00Z"}
    claims = {
        "x-nvidia-ver": "3.0",
        "x-nvidia-gpu-arch-check": good_arch,
        "x-nvidia-gpu-attestation-report-cert-chain": dict(chain),
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": True,
        "x-nvidia-gpu-attestation-report-parsed": True,
        "x-nvidia-gpu-attestation-report-nonce-match": nonce_ok,
        "x-nvidia-gpu-attestation-report-signature-verified": True,
        "x-nvidia-gpu-vbios-version": report.get("vbios_version"),
        "x-nvidia-gpu-driver-version": report.get("driver_version"),
        "x-nvidia-gpu-vbios-rim-cert-chain": dict(chain),
        "x-nvidia-gpu-driver-rim-cert-chain": dict(chain),
        "secboot": True,
        "dbgstat": "disabled",
        "measres": "success" if ok else "fail",
        "hwmodel": "GH100 A01 GSP BROM" if report.get("architecture") == "HOPPER" else report.get("model"),
        "ueid": str(int(hashlib.sha256(report.get("uuid", "").encode()).hexdigest()[:16], 16)),
        "oemid": "5703",
    }
    for part in ("driver", "vbios"):
        for check in ("fetched", "measurements-available", "schema-validated", "signature-verified",
                      "version-match"):
            claims[f"x-nvidia-gpu-{part}-rim-{check}"] = ok
    return claims


def _set_path(claims, dotted, value):
    keys = dotted.split(".")
    target = claims
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def verify_nvidia(additional_evidence, runtime_data, verifier_config, say=log.info):
    """One claims dict per GPU, from the ``additional_evidence`` JSON string (may be None)."""
    if not additional_evidence:
        return []
    try:
        doc = json.loads(additional_evidence) if isinstance(additional_evidence, str) else additional_evidence
        devices = doc["nvidia"]["evidence_list"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"additional_evidence: not the nvidia evidence list ({exc})")
    kind = str((verifier_config or {}).get("type", "Local")).lower()
    nonce = hw.gpu_nonce(runtime_data)
    results = []
    for index, device in enumerate(devices):
        try:
            report = hw.verify_signed("nvidia", device["evidence"], f"GPU {index} attestation report")
        except (hw.EvidenceError, KeyError, TypeError) as exc:
            raise VerificationError(str(exc))
        nonce_ok = report.get("nonce") == nonce
        if kind == "remote":
            url = (verifier_config or {}).get("verifier_url") or NRAS_URL
            claims = _nras_claims(report, nonce_ok)
            for dotted, value in (report.get("profile_verdict") or {}).items():
                _set_path(claims, dotted, value)
            say(f"nvidia verifier (Remote): NRAS at {url} cannot be reached from the twin; standing in with the "
                f"verdict the hardware profile gives {report.get('model')} ({report.get('architecture')}): "
                f"measres={claims['measres']} arch-check={claims['x-nvidia-gpu-arch-check']} "
                f"ocsp={claims['x-nvidia-gpu-attestation-report-cert-chain']['x-nvidia-cert-ocsp-status']}")
            if not claims.get("x-nvidia-gpu-attestation-report-nonce-match"):
                raise VerificationError(f"GPU {index}: NRAS reports x-nvidia-gpu-attestation-report-nonce-match "
                                        "false (stale or replayed GPU evidence)")
        else:
            # Trustee's local verifier: SPDM report checks and raw measurements; Hopper only.
            if report.get("architecture") != "HOPPER":
                raise VerificationError(f"GPU {index}: Device architecture not supported "
                                        f"({report.get('architecture')}) by the Local NVIDIA verifier")
            if not nonce_ok:
                raise VerificationError(f"GPU {index}: the report nonce does not match")
            say(f"nvidia verifier (Local): {report.get('model')} verified locally; no RIM or OCSP checks")
            claims = {"arch": report["architecture"], "uuid": report.get("uuid"),
                      "measurements": report.get("measurements"), "config": {"cc_mode": report.get("cc_mode")}}
        results.append(claims)
    return results
