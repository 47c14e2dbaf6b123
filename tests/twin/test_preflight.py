"""Preflight over every shipped profile: the right verdicts, a JSON file, and not one write to the cluster."""

import json

import pytest

from tests.conftest import REPO, TwinHandle
from twin import profile as profiles
from twin.cluster import Cluster

pytestmark = [pytest.mark.twin, pytest.mark.slow]

# Per profile: the checks that must fail (none: the run passes, warnings allowed), the overall status, and
# whether host facts from the node probe are given (firmware is invisible to the API otherwise).
EXPECTED = {
    # TDX waits for kvm_intel.tdx=1 (role tee_hosts): a warning, not a failure. The shared twin may have it by now.
    "default": ([], ("warn", "pass"), True),
    "sno": ([], "warn", False),  # single node: reboots take the cluster down
    "snp-rtx-pro-6000": ([], "warn", False),  # ready, but firmware not checked without host facts
    "broken-ocp-4.20": (["openshift_version"], "fail", False),
    "broken-mixed-tee": (["tee_type"], "fail", False),
    "broken-tdx-bios-disabled": (["host_firmware"], "fail", True),
    "broken-unsupported-gpu": (["gpus"], "fail", False),
    "broken-vm-nodes": (["platform", "tee_gpu_nodes"], "fail", False),  # VMs: no TEE host for their GPUs
}
EGRESS = {"nras": "reachable", "intel_pcs": "offline", "amd_kds": "reachable"}
NFD = [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "confidential.gpu.nfd"}]}]
PROBE = [{"hosts": "localhost", "gather_facts": False, "tasks": [
    {"name": "probe", "confidential.gpu.node_probe": {}, "register": "probe"}]}]


# Scale profiles are for the scale bench and tests/twin/test_scale.py (CGPU_FULL=1): minutes to start.
SCALE = {"scale-1000"}


def test_every_shipped_profile_has_an_expectation():
    assert sorted(EXPECTED) == [name for name in profiles.available() if name not in SCALE]


@pytest.fixture
def profile_twin(request, twin, tmp_path, twin_crds):
    """The shared default twin, or a twin of the profile for this test alone (one extra cluster at a time)."""
    if request.param == "default":
        yield twin
        return
    cluster = Cluster(f"test-preflight-{request.param}", tmp_path / "state")
    cluster.up(request.param, conformance=twin_crds, log=lambda msg: None)
    try:
        yield TwinHandle(cluster, request.param)
    finally:
        assert cluster.down() == []


def preflight(run_playbook, handle, report, **extra):
    return run_playbook(REPO / "playbooks" / "preflight.yml", env=handle.env(),
                        extra_vars=dict({"preflight_report_path": str(report), "preflight_egress": EGRESS}, **extra))


@pytest.mark.parametrize("profile_twin", sorted(EXPECTED), indirect=True)
def test_preflight_verdicts_and_no_writes(profile_twin, run_playbook, tmp_path):
    failing, overall, probe = EXPECTED[profile_twin.profile]
    handle = profile_twin

    if handle.profile != "default":  # the shared twin may have NFD already
        before = tmp_path / "before.json"
        run = preflight(run_playbook, handle, before, preflight_fail_on="never")
        assert run.rc == 0, run.stdout[-3000:]
        verdicts = {v["name"]: v for v in json.loads(before.read_text())["verdicts"]}
        assert verdicts["nfd_labels"]["status"] == "warn"
        assert "confidential.gpu.nfd" in verdicts["nfd_labels"]["fix"]

    run_playbook(NFD, env=handle.env())  # labels the nodes; on the broken profiles the role itself may refuse
    extra = {}
    if probe:  # gathered before preflight: the probe starts pods, preflight only reads
        probed = run_playbook(PROBE, env=handle.env())
        assert probed.rc == 0, probed.stdout[-3000:]
        extra["preflight_host_facts"] = probed.result("probe")["nodes"]
    report = tmp_path / "cgpu-preflight.json"
    with handle.audit.window(user="admin") as window:
        run = preflight(run_playbook, handle, report, **extra)
    assert window.writes == [], [(e["verb"], e["requestURI"]) for e in window.writes]
    assert window.total > 0
    assert (run.rc != 0) == bool(failing), run.stdout[-4000:]
    data = json.loads(report.read_text())
    assert data["overall"] in (overall if isinstance(overall, tuple) else (overall,)), [
        v for v in data["verdicts"] if v["status"] != "pass"]
    assert sorted(v["name"] for v in data["verdicts"] if v["status"] == "fail") == failing
    assert all(v["fix"] for v in data["verdicts"] if v["status"] != "pass")
    shown = run.result("confidential.gpu.preflight : Show the verdicts")["msg"]
    assert shown[0].startswith(f"confidential GPU preflight: {data['overall'].upper()}")
    firmware = next(v for v in data["verdicts"] if v["name"] == "host_firmware")
    assert firmware["status"] == ("fail" if "host_firmware" in failing else "pass" if probe else "warn")
    if failing:
        message = run.result("confidential.gpu.preflight : Stop on a failed check")["msg"]
        assert "Nothing was changed on the cluster" in message
