"""Parts of the twin KBS that need no cluster: reference-value files, the SNI router, kbs-config TLS merge, evidence."""

import base64
import json
import socket
import ssl
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from twin import dns, profile as profiles, router, tee
from twin.kbs import config as kbs_config, verifier

VALUES = {"mr_td": {"value": ["aa" * 48], "expiration": "2099-12-31T00:00:00Z"},
          "snp_smt_enabled": {"value": True, "expiration": "2099-12-31T00:00:00Z"}}


# Reading reference values as upstream's RVPS does: tests/unit/twin/test_rvps_local_json.py.


def test_tls_lines_merge_keeps_the_users_lines():
    generated = kbs_config.render("Restricted", kbs_config.LAYOUTS["1.2"], {"profile": "intermediate"})
    edited = generated + "# mine\n"
    custom = {"profile": "custom", "minVersion": "1.3", "ciphers": ["TLS_AES_128_GCM_SHA256"]}
    merged = kbs_config.merge_tls(edited, custom)
    assert 'tls_profile = "custom"\ntls_min_version = "1.3"\ntls_ciphers = "TLS_AES_128_GCM_SHA256"' in merged
    assert 'tls_profile = "intermediate"' not in merged and merged.endswith("# mine\n")
    assert kbs_config.merge_tls(merged, custom) == merged
    permissive = kbs_config.render("Permissive", kbs_config.LAYOUTS["1.2"])
    assert kbs_config.merge_tls(permissive, {"profile": "modern"}) == permissive


def test_dns_resolution_prefers_the_most_specific_entry():
    zone = {"*.apps.a.example.com": "127.0.0.1:1000", "*.example.com": "127.0.0.1:2000",
            "kbs.apps.a.example.com": "127.0.0.1:3000"}
    assert dns.resolve("KBS.apps.a.example.com.", zone) == ("127.0.0.1", 3000)
    assert dns.resolve("x.apps.a.example.com", zone) == ("127.0.0.1", 1000)
    assert dns.resolve("y.b.example.com", zone) == ("127.0.0.1", 2000)
    assert dns.resolve("example.org", zone) is None


def test_sni_is_read_from_a_real_client_hello():
    server, client = socket.socketpair()
    context = ssl.create_default_context()

    def hello():
        try:
            with context.wrap_socket(client, server_hostname="kbs-trustee-operator-system.apps.twin.example.com"):
                pass
        except (ssl.SSLError, OSError):
            pass  # the "server" never answers; only the ClientHello matters

    thread = threading.Thread(target=hello, daemon=True)
    thread.start()
    data, name = router.read_client_hello(server)
    server.close()
    thread.join(timeout=5)
    assert name == "kbs-trustee-operator-system.apps.twin.example.com"
    assert data[0] == 0x16
    plain_server, plain_client = socket.socketpair()
    plain_client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(router.ClientHelloError, match="not a TLS handshake"):
        router.read_client_hello(plain_server)


def _tdx_vm(**kwargs):
    spec = profiles.load("default")
    node = next(n for n in spec["nodes"] if (n.get("tee") or {}).get("type") == "tdx")
    return spec, node, tee.launch(node, spec["openshift"]["version"], **kwargs)


RUNTIME = {"nonce": "n", "tee-pubkey": {"kty": "EC"}}


def test_evidence_signed_by_another_key_is_rejected():
    vm = _tdx_vm()[2]
    evidence = vm.evidence(RUNTIME)
    forged_chip = tee.Chip("intel", "worker-0")
    forged_chip.key = ec.generate_private_key(ec.SECP256R1())  # not the vendor-certified key
    quote = json.loads(base64.b64decode(evidence["quote"]["body"]))
    forged = dict(evidence, quote=forged_chip.sign(quote))
    with pytest.raises(verifier.VerificationError, match="signature does not verify"):
        verifier.verify_tdx(forged, RUNTIME, None, lambda q: "UpToDate")
    # A body changed after signing (a guest rewriting its MRCONFIGID) fails the same way.
    quote["body"]["mr_config_id"] = "11" * 48
    tampered = dict(evidence, quote=dict(evidence["quote"], body=base64.b64encode(
        json.dumps(quote, sort_keys=True, separators=(",", ":")).encode()).decode()))
    with pytest.raises(verifier.VerificationError, match="signature does not verify"):
        verifier.verify_tdx(tampered, RUNTIME, None, lambda q: "UpToDate")


def test_replayed_evidence_and_an_outdated_platform():
    vm = _tdx_vm()[2]
    evidence = vm.evidence(RUNTIME)
    with pytest.raises(verifier.VerificationError, match="does not bind the runtime data"):
        verifier.verify_tdx(evidence, dict(RUNTIME, nonce="another"), None, lambda q: "UpToDate")
    assert tee.tdx_tcb_status(tee.TDX_TCB_CURRENT) == "UpToDate"
    assert tee.tdx_tcb_status("0a" + tee.TDX_TCB_CURRENT[2:]) == "OutOfDate"


def test_gpu_verdicts_from_the_profile():
    spec = profiles.load("default")
    node = next(n for n in spec["nodes"] if n.get("gpus"))
    revoked = dict(node, gpus=[dict(node["gpus"][0], nras={
        "x-nvidia-gpu-attestation-report-cert-chain.x-nvidia-cert-ocsp-status": "revoked"})])
    vm = tee.launch(revoked, spec["openshift"]["version"])
    said = []
    (claims,) = verifier.verify_nvidia(vm.additional_evidence(RUNTIME), RUNTIME,
                                       {"type": "Remote"}, say=said.append)
    assert claims["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"] == "revoked"
    assert "cannot be reached from the twin" in said[0]
    blackwell = dict(node, gpus=[dict(node["gpus"][0], architecture="Blackwell", model="RTX PRO 6000")])
    vm = tee.launch(blackwell, spec["openshift"]["version"])
    with pytest.raises(verifier.VerificationError, match="Device architecture not supported"):
        verifier.verify_nvidia(vm.additional_evidence(RUNTIME), RUNTIME, {"type": "Local"}, say=said.append)
