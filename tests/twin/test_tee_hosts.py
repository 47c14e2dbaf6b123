"""The tee_hosts role end to end on twins: probe, plan, one rollout with one reboot per node, progress,
verification per node, idempotence, check mode, the BIOS stop, kata-oc before it exists, and failures.

Tests on the shared default twin undo what they did (MachineConfigs deleted, pool rolled back), so
the next test starts from unconfigured TDX hosts.
"""

import pytest

from twin.kube import path
from tests.twin.mco_helpers import (
    MC_API, boots, condition, delete, hosts, nodes, pool, wait, wait_pool,
)

pytestmark = [pytest.mark.twin, pytest.mark.slow]
WORKERS = ["worker-0", "worker-1", "worker-2"]
OURS = ("99-worker-cgpu-tdx", "99-worker-cgpu-iommu")

PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: confidential.gpu.tee_hosts
"""


def task(run, prefix):
    """Per-host result of the first task whose (templated) name starts with prefix, or None when absent."""
    for play in (run.json or {}).get("plays", []):
        for t in play.get("tasks", []):
            if t["task"]["name"].split(" : ", 1)[-1].startswith(prefix):
                return next(iter(t["hosts"].values()))
    return None


def role(run_playbook, twin, check=False, **variables):
    return run_playbook(PLAY, env=twin.env(), extra_vars=variables, check=check)


def undo(kube, names=OURS, pool_name="worker"):
    for name in names:
        delete(kube, name)
    wait_pool(kube, pool_name, absent=names)


def machine_configs(kube):
    return {m["metadata"]["name"]: m for m in kube.list(path(MC_API, "machineconfigs"))["items"]}


def test_check_mode_says_which_nodes_would_reboot_and_changes_nothing(twin, run_playbook):
    before = boots(twin.kube)
    run = role(run_playbook, twin, check=True)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    applied = task(run, "Write the host MachineConfigs")
    assert applied["changed"] and applied["reboot_nodes"] == WORKERS
    said = task(run, "Say what changes")["msg"]
    assert "Check mode: would write 99-worker-cgpu-tdx (create), 99-worker-cgpu-iommu (create)" in said
    assert "Would reboot once each, one at a time: worker-0, worker-1, worker-2." in said
    assert not set(OURS) & set(machine_configs(twin.kube))
    assert boots(twin.kube) == before
    assert pool(twin.kube, "worker")["spec"].get("paused") is False
    assert task(run, "Watch the nodes")["skipped"]


def test_tdx_hosts_get_one_reboot_each_then_rerun_changes_nothing(twin, run_playbook):
    kube = twin.kube
    before = boots(kube)
    try:
        run = role(run_playbook, twin)
        assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
        after = boots(kube)
        assert {n: after[n] - before[n] for n in after} == {n: 1 if n in WORKERS else 0 for n in after}
        ours = machine_configs(kube)
        assert ours["99-worker-cgpu-tdx"]["spec"]["kernelArguments"] == ["kvm_intel.tdx=1", "nohibernate"]
        assert ours["99-worker-cgpu-iommu"]["spec"]["kernelArguments"] == ["intel_iommu=on"]
        p = pool(kube, "worker")
        assert p["spec"]["paused"] is False and "confidential.gpu/paused" not in (p["metadata"].get("annotations") or {})
        rollout = task(run, "Watch the nodes")
        assert rollout["done"] and rollout["line"] == "worker: 3/3 nodes updated"
        assert rollout["progress"][-1].endswith("s worker: 3/3 nodes updated")
        report = task(run, "Check every host")["ansible_facts"]["tee_hosts_report"]
        assert all(r["ok"] for r in report.values()), report
        assert "TDX module initialized" in {c["check"] for c in report["worker-0"]["checks"]}
        state = hosts(twin)
        assert all({"kvm_intel.tdx=1", "nohibernate", "intel_iommu=on"} <= set(state[n]["cmdline"].split())
                   for n in WORKERS)
        assert all(state[n]["module_params"]["kvm_intel.tdx"] == "Y" for n in WORKERS)

        again = role(run_playbook, twin)
        assert again.rc == 0, again.stdout[-3000:]
        assert task(again, "Write the host MachineConfigs")["changed"] is False
        assert "no change needed; no node reboots" in task(again, "Say what changes")["msg"]
        assert task(again, "Watch the nodes")["skipped"] and task(again, "Probe the hosts again")["skipped"]
        assert all(r["ok"] for r in task(again, "Check every host")["ansible_facts"]["tee_hosts_report"].values())
        assert boots(kube) == after
        check = role(run_playbook, twin, check=True)
        assert check.rc == 0 and task(check, "Write the host MachineConfigs")["changed"] is False
    finally:
        undo(kube)


@pytest.fixture(scope="module")
def slow_twin(tmp_path_factory):
    """The default hardware with 6-second reboots: slower than the playbook's own steps on a small
    machine, so the progress lines of a rollout can be seen (the shared twin reboots in 2 s)."""
    from tests.conftest import TwinHandle
    from twin.cluster import Cluster
    from twin.profile import load

    spec = load("default")
    spec["name"] = "default-slow-reboots"
    spec["timings"]["reboot"] = 6.0
    cluster = Cluster("test-slow-reboots", tmp_path_factory.mktemp("twin-slow-reboots"))
    cluster.up(spec, log=lambda msg: None)
    yield TwinHandle(cluster, "default-slow-reboots")
    cluster.down()


def test_progress_lines_are_printed_while_nodes_drain_and_reboot(slow_twin, run_playbook):
    run = run_playbook(PLAY, env=slow_twin.env(), callback="ansible.builtin.default")
    assert run.rc == 0, run.stdout[-4000:]
    out = run.stdout[run.stdout.index("Watch the nodes"):]
    printed = [line.strip() for line in out.splitlines() if line.strip().startswith("[localhost]")]
    assert len(printed) >= 3, out[:2000]
    assert any("rebooting" in line for line in printed), printed
    assert printed[-1].endswith("s worker: 3/3 nodes updated")
    assert out.index(printed[0]) < out.index("ok: [localhost]"), "lines are printed under the waiting task"
    counts = [int(line.split("nodes updated")[0].split(": ")[-1].split("/")[0]) for line in printed]
    assert counts == sorted(counts), "updated counts only grow"


def test_manual_guide_configs_are_not_duplicated(twin, run_playbook):
    """A cluster configured by hand (guide names) is configured: no MachineConfig of ours, no reboot."""
    from tests.twin.mco_helpers import create, mc

    kube = twin.kube
    create(kube, mc("99-enable-intel-tdx", "worker", ["kvm_intel.tdx=1", "nohibernate"],
                    {"/etc/modules-load.d/vsock.conf": "vsock-loopback%0A"}))
    create(kube, mc("100-iommu-kernel-args", "worker", ["amd_iommu=on", "intel_iommu=on"]))
    try:
        wait_pool(kube, "worker", sources=["99-enable-intel-tdx", "100-iommu-kernel-args"])
        before = boots(kube)
        run = role(run_playbook, twin)
        assert run.rc == 0, run.stdout[-3000:]
        assert task(run, "Write the host MachineConfigs")["changed"] is False
        assert not set(OURS) & set(machine_configs(kube))
        assert boots(kube) == before
    finally:
        undo(kube, ["99-enable-intel-tdx", "100-iommu-kernel-args"])


def test_firmware_with_tdx_off_stops_before_any_change(twin_factory, run_playbook):
    twin = twin_factory("broken-tdx-bios-disabled")
    before = boots(twin.kube)
    run = role(run_playbook, twin)
    assert run.rc != 0
    stop = task(run, "Stop before any change")
    assert stop["failed"]
    msg = stop["msg"]
    assert msg.startswith("Nothing was changed and no node rebooted")
    assert "worker-1: TDX is disabled in the firmware" in msg and "SEAM Loader" in msg
    assert "Ready for configuration once the others are fixed: worker-0, worker-2." in msg
    assert task(run, "Write the host MachineConfigs") is None
    assert not [m for m in machine_configs(twin.kube) if "cgpu" in m]
    assert boots(twin.kube) == before and pool(twin.kube, "worker")["spec"]["paused"] is False


def test_snp_hosts_with_snp_and_iommu_on_need_no_reboot(twin_factory, run_playbook):
    twin = twin_factory("snp-rtx-pro-6000")
    before = boots(twin.kube)
    run = role(run_playbook, twin)
    assert run.rc == 0, run.stdout[-3000:]
    assert task(run, "Write the host MachineConfigs")["changed"] is False
    report = task(run, "Check every host")["ansible_facts"]["tee_hosts_report"]
    assert {n: r["ok"] for n, r in report.items()} == {"worker-0": True, "worker-1": True}
    assert "SEV-SNP enabled" in {c["check"] for c in report["worker-0"]["checks"]}
    assert boots(twin.kube) == before


def test_kata_oc_configs_wait_for_the_pool_then_render_with_it(twin, run_playbook):
    """The next step's order: host MachineConfigs for kata-oc first, the pool (OSC's) later, one reboot."""
    kube = twin.kube
    names = ["99-kata-oc-cgpu-tdx", "99-kata-oc-cgpu-iommu"]
    for node in ("worker-0", "worker-1"):
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"kata-cc": "true"}}})
    before = boots(kube)
    try:
        run = role(run_playbook, twin, tee_hosts_pool="kata-oc", tee_hosts_node_selector={"kata-cc": "true"})
        assert run.rc == 0, run.stdout[-3000:]
        applied = task(run, "Write the host MachineConfigs")
        assert applied["changed"] and applied["reboot_nodes"] == [] and "does not exist yet" in applied["pending"]
        assert task(run, "Probe the hosts,")["nodes"].keys() == {"worker-0", "worker-1"}
        assert set(names) <= set(machine_configs(kube)) and boots(kube) == before
        # What OSC does when the KataConfig is created: the pool, with its own MachineConfig.
        kube.create(path(MC_API, "machineconfigs"), {
            "apiVersion": MC_API, "kind": "MachineConfig",
            "metadata": {"name": "50-enable-sandboxed-containers-extension",
                         "labels": {"machineconfiguration.openshift.io/role": "kata-oc"}},
            "spec": {"extensions": ["sandboxed-containers"]}})
        kube.create(path(MC_API, "machineconfigpools"), {
            "apiVersion": MC_API, "kind": "MachineConfigPool",
            "metadata": {"name": "kata-oc", "labels": {"pools.operator.machineconfiguration.openshift.io/kata-oc": ""}},
            "spec": {"machineConfigSelector": {"matchExpressions": [{
                "key": "machineconfiguration.openshift.io/role", "operator": "In", "values": ["kata-oc", "worker"]}]},
                "nodeSelector": {"matchLabels": {"kata-cc": "true"}}}})
        wait_pool(kube, "kata-oc", sources=names + ["50-enable-sandboxed-containers-extension"])
        after = boots(kube)
        assert {n: after[n] - before[n] for n in WORKERS} == {"worker-0": 1, "worker-1": 1, "worker-2": 0}
        assert "kvm_intel.tdx=1" in hosts(twin)["worker-0"]["cmdline"]
        again = role(run_playbook, twin, tee_hosts_pool="kata-oc", tee_hosts_node_selector={"kata-cc": "true"})
        assert again.rc == 0 and task(again, "Write the host MachineConfigs")["changed"] is False
        assert all(r["ok"] for r in task(again, "Check every host")["ansible_facts"]["tee_hosts_report"].values())
    finally:
        for node in ("worker-0", "worker-1"):
            kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"kata-cc": None}}})
        wait(kube, "machineconfigpools", lambda o: o["worker"]["status"].get("machineCount") == 3
             and o.get("kata-oc", {}).get("status", {}).get("machineCount", 0) == 0, what="nodes back in worker")
        wait_pool(kube, "worker")
        kube.delete(path(MC_API, "machineconfigpools", "kata-oc"))
        for name in names + ["50-enable-sandboxed-containers-extension"]:
            delete(kube, name)


def test_degraded_node_stops_the_rollout_and_the_role_says_why(twin, run_playbook):
    kube = twin.kube
    twin.set_faults([{"kind": "reboot-degrades", "node": "worker-1",
                      "reason": "failed to update OS: error running rpm-ostree kargs: exit status 1"}])
    try:
        run = role(run_playbook, twin)
        assert run.rc != 0
        failed = task(run, "Watch the nodes")
        assert failed["failed"]
        assert "MachineConfigPool worker is degraded" in failed["msg"]
        assert "Node worker-1 is reporting" in failed["msg"] and "rpm-ostree kargs" in failed["msg"]
        assert pool(kube, "worker")["spec"]["paused"] is False
        assert wait(kube, "machineconfigpools", lambda o: condition(o["worker"], "Degraded").get("status") == "True",
                    what="worker degraded")
    finally:
        twin.set_faults([])
        wait_pool(kube, "worker", sources=OURS)
        undo(kube)


def test_created_pool_with_a_drain_blocked_by_a_pdb_times_out_naming_it(twin, run_playbook, namespace):
    kube = twin.kube
    kube.merge_patch(path("v1", "nodes", "worker-2"), {"metadata": {"labels": {"twin.test/tee": ""}}})
    kube.create(path("v1", "pods", namespace=namespace), {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db", "labels": {"app": "db"}},
        "spec": {"nodeName": "worker-2", "containers": [{"name": "c", "image": "registry.example.com/db:1"}]}})
    kube.create(path("policy/v1", "poddisruptionbudgets", namespace=namespace), {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    wait(kube, "poddisruptionbudgets", lambda o: o.get("db", {}).get("status", {}).get("currentHealthy") == 1,
         api_version="policy/v1", namespace=namespace, what="PDB status")
    names = ["99-t-tee-cgpu-tdx", "99-t-tee-cgpu-iommu"]
    try:
        run = role(run_playbook, twin, tee_hosts_pool="t-tee", tee_hosts_create_pool=True,
                   tee_hosts_node_selector={"twin.test/tee": ""}, tee_hosts_timeout=20)
        assert run.rc != 0
        assert task(run, "Write the host MachineConfigs")["pool_created"]
        failed = task(run, "Watch the nodes")
        assert "Timed out after 20s" in failed["msg"]
        assert "worker-2 draining (blocked by PodDisruptionBudget {0}/db (pod {0}/db))".format(namespace) in failed["msg"]
        assert nodes(kube)["worker-2"]["spec"].get("unschedulable") is True
    finally:
        kube.delete(path("policy/v1", "poddisruptionbudgets", "db", namespace))
        wait_pool(kube, "t-tee", sources=names)
        kube.merge_patch(path("v1", "nodes", "worker-2"), {"metadata": {"labels": {"twin.test/tee": None}}})
        wait(kube, "machineconfigpools", lambda o: o["worker"]["status"].get("machineCount") == 3,
             what="worker-2 back")
        wait_pool(kube, "worker")
        kube.delete(path(MC_API, "machineconfigpools", "t-tee"))
        for name in names:
            delete(kube, name)


def test_pool_paused_by_someone_else_stays_paused_and_nothing_reboots(twin, run_playbook):
    from tests.twin.mco_helpers import set_paused

    kube = twin.kube
    before = boots(kube)
    set_paused(kube, "worker", True)
    try:
        run = role(run_playbook, twin)
        assert run.rc == 0, run.stdout[-3000:]
        applied = task(run, "Write the host MachineConfigs")
        assert applied["changed"] and applied["paused_by_others"] == ["worker"]
        assert "paused by someone else" in task(run, "Warn that a pool paused")["msg"]
        assert task(run, "Watch the nodes")["skipped"] and task(run, "Check every host")["skipped"]
        p = wait(kube, "machineconfigpools", lambda o: set(OURS) <= {
            s["name"] for s in o["worker"]["spec"]["configuration"]["source"]}, what="render while paused")["worker"]
        assert p["spec"]["paused"] is True and boots(kube) == before
    finally:
        for name in OURS:
            delete(kube, name)
        set_paused(kube, "worker", False)
        wait_pool(kube, "worker", absent=OURS)
    assert boots(kube) == before, "the paused pool never moved its nodes to the config that was removed again"
