"""Role confidential.gpu.trustee against twins: one cluster, then Trustee on a separate trusted cluster.

Each test ends with what a workload does with the role's outputs (KBS URL and CA): render initdata,
attest a simulated VM through the external route, and fetch the secret the role put in the KBS.
"""

import base64
import json
import secrets

import pytest
import yaml

from plugins.module_utils import initdata
from twin import dns, tee
from twin.kbs.client import KbsClient, KbsClientError, token_claims
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

NS = "trustee-operator-system"


def _profile(handle):
    return yaml.safe_load((handle.state / "profile.yaml").read_text())


def _route_host(handle):
    return f"kbs-{NS}.{_profile(handle)['openshift']['apps_domain']}"


def _resolve_for(handle, zone_of=None):
    """curl-style resolve entries for the route host, from the zone of ``zone_of`` (default: the same twin).

    The zone is awaited: right after a twin comes up its router twin has not published it yet."""
    host = _route_host(handle)
    addr, port = dns.resolve(host, dns.published((zone_of or handle).kube))
    return [f"{host}:443:{addr}:{port}"]


def _playbook(role_vars, extra_tasks=()):
    return yaml.safe_dump([{
        "name": "Trustee", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Trustee role", "ansible.builtin.include_role": {"name": "confidential.gpu.trustee"},
                   "vars": role_vars},
                  {"name": "Outputs", "ansible.builtin.debug": {"msg": {
                      "url": "{{ trustee_kbs_url }}", "ca": "{{ trustee_kbs_ca_cert }}",
                      "egress": "{{ trustee_egress }}"}}},
                  *extra_tasks],
    }])


def _outputs(run):
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return run.result("Outputs")["msg"]


def _reference_values_file(tmp_path, profile):
    node = next(n for n in profile["nodes"] if (n.get("tee") or {}).get("type") == "tdx")
    values = tee.reference_values(profile["openshift"]["version"], "tdx", gpu=True)
    file = tmp_path / "reference-values.json"
    file.write_text(json.dumps(values))
    return str(file), node


def _result(run, name):
    """The result of the role task called ``name`` (the callback prefixes role tasks with the role's name)."""
    for play in (run.json or {}).get("plays", []):
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ", 1)[-1] == name:
                return next(iter(task["hosts"].values()))
    raise AssertionError(f"task {name!r} did not run")


def _changed_tasks(run):
    changed = []
    for play in (run.json or {}).get("plays", []):
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("changed"):
                    changed.append(task["task"]["name"].split(" : ", 1)[-1])
    return changed


class Attested:
    """What a workload gets: the token's claims, the resource (when asked for), the client holding its session."""

    def __init__(self, url, ca, zone, node, profile, toml, resource=None):
        self.client = KbsClient(url, ca, zone=zone)
        vm = tee.launch(node, profile["openshift"]["version"], initdata_toml=toml)
        self.claims = token_claims(self.client.attest(vm, initdata_toml=toml))
        self.value = self.client.resource(resource) if resource else None


def test_role_on_one_cluster_idempotent_pinning_and_no_secret_in_output(twin, run_playbook, tmp_path):
    profile = _profile(twin)
    sources, node = _reference_values_file(tmp_path, profile)
    secret_value = "resource-" + secrets.token_hex(12)
    role_vars = {
        "trustee_resources": [{"name": "kbsres1", "data": {"key1": secret_value}}],
        "trustee_reference_values_sources": [sources],
        "trustee_tee": "tdx",
        "trustee_kbs_resolve": _resolve_for(twin),
    }
    first = run_playbook(_playbook(role_vars), env=twin.env())
    out = _outputs(first)
    host = _route_host(twin)
    assert out["url"] == f"https://{host}"
    assert out["ca"].startswith("-----BEGIN CERTIFICATE-----")
    assert {e["service"] for e in out["egress"]} >= {"NVIDIA NRAS", "Intel PCS", "AMD KDS"}
    probe = _result(first, "Check the KBS from the client's side (route, TLS against our CA, /kbs/v0/auth)")
    assert probe["tls"]["verified"] and f"DNS:{host}" in probe["tls"]["sans"]
    assert probe["auth"] == {"status": 200, "challenge": True, "cookie": True, "protocol_version": "0.4.0"}

    zone = dns.entries(twin.kube)
    toml = initdata.render(out["url"], kbs_cert=out["ca"])
    got = Attested(out["url"], out["ca"], zone, node, profile, toml, "default/kbsres1/key1")
    assert {n: s["ear.status"] for n, s in got.claims["submods"].items()} == {"cpu0": "affirming", "gpu0": "affirming"}
    assert got.value == secret_value.encode()

    # Pin the initdata pods run with: the same document still attests, any other is contraindicated.
    pinned = dict(role_vars, trustee_initdata_pinning=True, trustee_pinned_initdata=[toml])
    second = run_playbook(_playbook(pinned), env=twin.env())
    _outputs(second)
    assert "CPU attestation policy with initdata pinning" in _changed_tasks(second)
    cm = twin.kube.get(path("v1", "configmaps", "trustee-config-attestation-policy-cpu", NS))
    assert "confidential.gpu initdata pinning: begin" in cm["data"]["default_cpu.rego"]
    got = Attested(out["url"], out["ca"], zone, node, profile, toml, "default/kbsres1/key1")
    assert got.claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["configuration"] == 2
    assert got.value == secret_value.encode()
    other = initdata.render(out["url"], kbs_cert=out["ca"], policy="allow-all")
    refused = Attested(out["url"], out["ca"], zone, node, profile, other)
    assert refused.claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["configuration"] == 96
    assert refused.claims["submods"]["cpu0"]["ear.status"] == "contraindicated"
    with pytest.raises(KbsClientError) as denied:
        refused.client.resource("default/kbsres1/key1")
    assert denied.value.status == 403

    # Idempotence, under -vvv with the default callback: nothing changes and no secret is printed.
    third = run_playbook(_playbook(pinned), env=twin.env(), args=["-vvv"], callback="default")
    output = third.stdout + third.stderr
    assert third.rc == 0, output[-5000:]
    assert "changed=0" in output, output[-3000:]
    leaks = [secret_value, secret_value.encode().hex(), base64.b64encode(secret_value.encode()).decode()]
    for name in ("trustee-kbs-ca", "kbs-tls-secret", "kbs-attestation-token-secret", "trustee-config-auth-secret",
                 "trustee-config-https-key-secret", "trustee-config-attestation-key-secret"):
        data = twin.kube.get(path("v1", "secrets", name, NS))["data"]
        for key, encoded in data.items():
            if key.endswith(("key", "Key")):
                plain = base64.b64decode(encoded).decode()
                body = "".join(line for line in plain.splitlines() if "-----" not in line)
                leaks += [encoded, body, body[:40], body[-40:]]
    found = [leak[:16] + "..." for leak in leaks if leak and leak in output]
    assert not found, f"secret material in the -vvv output: {found}"


def test_role_on_a_separate_trusted_cluster(twin_factory, run_playbook, tmp_path):
    workload = twin_factory("default")
    trusted = twin_factory("default", name="trusted")
    profile = _profile(workload)
    sources, node = _reference_values_file(tmp_path, profile)
    secret_value = "remote-" + secrets.token_hex(8)
    role_vars = {
        "trustee_kubeconfig": trusted.kubeconfig,
        "trustee_resources": [{"name": "kbsres1", "data": {"key1": secret_value}}],
        "trustee_reference_values_sources": [sources],
        "trustee_tee": "tdx",
        "trustee_kbs_resolve": _resolve_for(trusted),
    }
    with workload.audit.window(user="admin") as window:
        run = run_playbook(_playbook(role_vars), env=workload.env())
    out = _outputs(run)
    assert window.writes == [], f"the role wrote to the workload cluster: {window.writes[:5]}"
    assert out["url"] == f"https://kbs-{NS}.apps.trusted.example.com"
    trusted_tc = trusted.kube.get(path("confidentialcontainers.org/v1alpha1", "trusteeconfigs", "trustee-config", NS))
    assert trusted_tc["status"]["isReady"] is True
    # Pods of the workload cluster reach the trusted cluster's route once its zone is linked (DNS between clusters).
    dns.link(trusted.kube, workload.kube)
    toml = initdata.render(out["url"], kbs_cert=out["ca"])
    got = Attested(out["url"], out["ca"], dns.entries(workload.kube), node, profile, toml, "default/kbsres1/key1")
    assert got.claims["submods"]["cpu0"]["ear.status"] == "affirming"
    assert got.value == secret_value.encode()
    again = run_playbook(_playbook(role_vars), env=workload.env())
    _outputs(again)
    assert _changed_tasks(again) == []
    # Check mode on the configured clusters predicts no change and writes nothing to either.
    with trusted.audit.window(user="admin") as trusted_window, workload.audit.window(user="admin") as workload_window:
        check = run_playbook(_playbook(role_vars), env=workload.env(), check=True)
    assert check.rc == 0 and _changed_tasks(check) == [], check.stdout[-3000:]
    # kubernetes.core predicts changes with server-side dry runs; those persist nothing.
    persisted = [w for w in trusted_window.writes + workload_window.writes if "dryRun=" not in w["requestURI"]]
    assert persisted == [], [(w["verb"], w["requestURI"]) for w in persisted]


def test_role_sets_the_nvidia_verifier_remote_on_an_operator_without_it(twin_factory, run_playbook, tmp_path):
    """Operator 1.1 generates no NVIDIA verifier table (Local): GPUs cannot affirm until the role sets Remote."""
    handle = twin_factory("default", name="older")
    profile = _profile(handle)
    sources, node = _reference_values_file(tmp_path, profile)
    role_vars = {"trustee_operator_version": "1.1.0", "trustee_reference_values_sources": [sources],
                 "trustee_tee": "tdx", "trustee_kbs_resolve": _resolve_for(handle)}
    # Check mode on a cluster without the operator: it says so, and writes nothing.
    with handle.audit.window(user="admin") as window:
        check = run_playbook(_playbook(role_vars), env=handle.env(), check=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert _result(check, "Stop here in check mode when the operator is not installed yet (its CRDs do not exist)")[
        "msg"].startswith("Check mode: trustee-operator would be installed first")
    assert [w for w in window.writes if "dryRun=" not in w["requestURI"]] == []
    run = run_playbook(_playbook(role_vars), env=handle.env())
    out = _outputs(run)
    assert _result(run, "Verify GPU evidence with NVIDIA NRAS")["changed"] is True
    cm = handle.kube.get(path("v1", "configmaps", "trustee-config-rvps-reference-values", NS))
    assert list(cm["data"]) == ["reference-values.json"]  # the 1.1 layout, kept by the reference_values module
    toml = initdata.render(out["url"], kbs_cert=out["ca"])
    got = Attested(out["url"], out["ca"], dns.entries(handle.kube), node, profile, toml,
                   "default/attestation-status/status")
    assert got.claims["submods"]["gpu0"]["ear.status"] == "affirming"
    assert got.value == b"success"


MIGRATED = "kbs.confidentialcontainers.org/migrated-from-v1.1.0"
OPERATOR_CONFIGMAPS = ("kbs-config", "rvps-reference-values", "resource-policy", "attestation-policy-cpu",
                       "attestation-policy-gpu")


def test_an_upgrade_from_1_1_waits_for_the_operators_migration_and_attests_after_it(twin_factory, run_playbook,
                                                                                    tmp_path):
    """Operator 1.2 moves what 1.1 left before it deploys (openshift/trustee-operator migration.go): the KBS
    configuration and the policies deleted and made again, the reference values rewritten as reference_value,
    a <name>.v1.1 backup of each. The role waits for that before it edits them, so its edits are not lost."""
    handle = twin_factory("default", name="migration")
    profile = _profile(handle)
    sources, node = _reference_values_file(tmp_path, profile)
    role_vars = {"trustee_operator_version": "1.1.0", "trustee_reference_values_sources": [sources],
                 "trustee_tee": "tdx", "trustee_kbs_resolve": _resolve_for(handle)}
    _outputs(run_playbook(_playbook(role_vars), env=handle.env()))
    rvps = handle.kube.get(path("v1", "configmaps", "trustee-config-rvps-reference-values", NS))
    assert list(rvps["data"]) == ["reference-values.json"] and MIGRATED not in (rvps["metadata"].get("annotations") or {})
    out = _outputs(run_playbook(_playbook(dict(role_vars, trustee_operator_version="1.2.1")), env=handle.env()))
    for short in OPERATOR_CONFIGMAPS:
        name = "trustee-config-" + short
        cm = handle.kube.get(path("v1", "configmaps", name, NS))
        assert cm["metadata"]["annotations"][MIGRATED] == "v1.2.0", name
        backup = handle.kube.get(path("v1", "configmaps", name + ".v1.1", NS))
        assert backup["metadata"]["annotations"]["kbs.confidentialcontainers.org/backup-of"] == name
    rvps = handle.kube.get(path("v1", "configmaps", "trustee-config-rvps-reference-values", NS))
    assert list(rvps["data"]) == ["reference_value"]
    records = {k: json.loads(base64.b64decode(v)) for k, v in json.loads(rvps["data"]["reference_value"]).items()}
    assert records["mr_td"]["name"] == "mr_td" and records["mr_td"]["value"], records["mr_td"]
    toml = initdata.render(out["url"], kbs_cert=out["ca"])
    got = Attested(out["url"], out["ca"], dns.entries(handle.kube), node, profile, toml,
                   "default/attestation-status/status")
    assert got.claims["submods"]["cpu0"]["ear.status"] == "affirming", got.claims["submods"]["cpu0"]
    assert got.value == b"success"


def _secret_data(handle, name):
    return (handle.kube.get_or_none(path("v1", "secrets", name, NS)) or {}).get("data") or {}


def test_a_new_pki_reaches_the_kbs_through_the_operators_split_secrets(twin, run_playbook, tmp_path):
    """The real operator copies its TLS sources into ``<N>-https-*``/``<N>-attestation-*`` once and keeps them.

    openshift/trustee-operator internal/controller/trusteeconfig_controller.go createOrUpdateHttpsKeySecret and
    friends: an existing half is "preserved"; so a new certificate reaches the KBS only when the role deletes the
    stale halves and the operator recreates them, and the KBS pods then restart with them.
    """
    profile = _profile(twin)
    sources, node = _reference_values_file(tmp_path, profile)
    secret_value = "pki-" + secrets.token_hex(8)
    role_vars = {"trustee_resources": [{"name": "kbsres1", "data": {"key1": secret_value}}],
                 "trustee_reference_values_sources": [sources], "trustee_tee": "tdx",
                 "trustee_kbs_resolve": _resolve_for(twin), "trustee_wait_timeout": 240}
    _outputs(run_playbook(_playbook(role_vars), env=twin.env()))
    # A new CA, KBS certificate and token signer: what a rotation (or a lost CA secret) does.
    for name in ("trustee-kbs-ca", "kbs-tls-secret", "kbs-attestation-token-secret"):
        twin.kube.delete(path("v1", "secrets", name, NS))
    with twin.audit.window(user="admin") as window:
        run = run_playbook(_playbook(role_vars), env=twin.env())
    out = _outputs(run)
    deleted = {w["objectRef"]["name"] for w in window.writes
               if w["verb"] == "delete" and w["objectRef"].get("resource") == "secrets"}
    halves = {"trustee-config-https-key-secret", "trustee-config-https-cert-secret",
              "trustee-config-attestation-key-secret", "trustee-config-attestation-cert-secret"}
    assert halves <= deleted, f"the role did not delete the operator's stale split secrets: {sorted(deleted)}"
    assert _secret_data(twin, "trustee-config-https-cert-secret")["certificate"] == \
        _secret_data(twin, "kbs-tls-secret")["tls.crt"]
    assert _secret_data(twin, "trustee-config-attestation-cert-secret")["token.crt"] == \
        _secret_data(twin, "kbs-attestation-token-secret")["tls.crt"]
    assert _result(run, "Check the KBS from the client's side (route, TLS against our CA, /kbs/v0/auth)")[
        "tls"]["verified"]
    template = twin.kube.get(path("apps/v1", "deployments", "trustee-deployment", NS))["spec"]["template"]
    annotations = template["metadata"].get("annotations") or {}
    if "kbs.confidentialcontainers.org/configmap-versions" in annotations:
        # An operator that rolls its pods on ConfigMap changes reverts foreign template edits: none is made.
        assert "kubectl.kubernetes.io/restartedAt" not in annotations
    toml = initdata.render(out["url"], kbs_cert=out["ca"])
    got = Attested(out["url"], out["ca"], dns.entries(twin.kube), node, profile, toml, "default/kbsres1/key1")
    assert got.value == secret_value.encode()
