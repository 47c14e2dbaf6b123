"""Role nfd: installs, applies the vendor's TEE rule, waits for the labels, refuses contradictions."""

import pytest
from olm_helpers import wait_for

from twin.cluster import Cluster
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

PLAY = [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "confidential.gpu.nfd"}]}]
RULES = ("nfd.openshift.io/v1alpha1", "nodefeaturerules")


def task(run, name):
    return run.result(f"confidential.gpu.nfd : {name}")


def test_installs_labels_and_is_idempotent(twin, run_playbook):
    first = run_playbook(PLAY, env=twin.env())
    assert first.rc == 0, first.stdout[-4000:]
    nodes = task(first, "Wait for NFD to apply this rule on every target node")["nodes"]
    assert [n["name"] for n in nodes] == ["worker-0", "worker-1", "worker-2"]
    assert all(n["vendor"] == "Intel" and n["gpu"] and n["kata"] for n in nodes)
    rule = twin.kube.get(path(*RULES, "tdx-features", "openshift-nfd"))
    assert rule["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "confidential.gpu"
    assert [r["name"] for r in rule["spec"]["rules"]] == ["runtime.kata", "intel.tdx", "cgpu.tee-rule"]
    objects = [path("nfd.openshift.io/v1", "nodefeaturediscoveries", "nfd-instance", "openshift-nfd"),
               path(*RULES, "tdx-features", "openshift-nfd")]
    versions = [twin.kube.get(p)["metadata"]["resourceVersion"] for p in objects]
    with twin.audit.window(user="admin") as second:
        again = run_playbook(PLAY, env=twin.env())
    assert again.rc == 0, again.stdout[-4000:]
    assert again.stats["localhost"]["changed"] == 0
    # kubernetes.core.k8s sends its patch even when nothing differs; the objects must stay as they were.
    assert {e["verb"] for e in second.writes} <= {"patch"}, [(e["verb"], e["requestURI"]) for e in second.writes]
    assert [twin.kube.get(p)["metadata"]["resourceVersion"] for p in objects] == versions
    checked = run_playbook(PLAY, env=twin.env(), check=True)
    assert checked.rc == 0 and checked.stats["localhost"]["changed"] == 0, checked.stdout[-4000:]


def test_refuses_a_rule_that_labels_every_node(twin, run_playbook):
    """A misspelled matcher (matchAll) is ignored by NFD: the rule labels Intel nodes with IBM SE."""
    kube = twin.kube
    run_playbook(PLAY, env=twin.env())  # NFD installed (no-op when the first test ran)
    kube.create(path(*RULES, namespace="openshift-nfd"), {
        "apiVersion": "nfd.openshift.io/v1alpha1", "kind": "NodeFeatureRule",
        "metadata": {"name": "ibm-se-features"},
        "spec": {"rules": [{"name": "ibm.se", "labels": {"ibm.feature.node.kubernetes.io/se": "true"},
                            "matchAll": [{"feature": "cpu.cpuid", "matchExpressions": {"S390": {"op": "Exists"}}}]}]}})
    try:
        wait_for(kube, "v1", "nodes", None, lambda items: all(
            "ibm.feature.node.kubernetes.io/se" in n["metadata"]["labels"] for n in items))
        run = run_playbook(PLAY, env=twin.env())
        assert run.rc != 0
        message = task(run, "Wait for NFD to label the target nodes with their CPU vendor")["msg"]
        assert "worker-0 has an Intel CPU but carries SE (ibm.feature.node.kubernetes.io/se)" in message
        assert "master-0 has an Intel CPU but carries SE" in message  # any node, not only the targets
    finally:
        kube.delete(path(*RULES, "ibm-se-features", "openshift-nfd"))
        wait_for(kube, "v1", "nodes", None, lambda items: not any(
            "ibm.feature.node.kubernetes.io/se" in n["metadata"]["labels"] for n in items))


@pytest.fixture
def mixed_twin(tmp_path, twin_crds):
    from tests.conftest import TwinHandle

    cluster = Cluster("test-nfd-role-mixed", tmp_path / "state")
    cluster.up("broken-mixed-tee", conformance=twin_crds, log=lambda msg: None)
    try:
        yield TwinHandle(cluster, "broken-mixed-tee")
    finally:
        assert cluster.down() == []


def test_mixed_vendors_and_two_tee_types_fail_before_any_rule(mixed_twin, run_playbook):
    kube = mixed_twin.kube
    vendors = run_playbook(PLAY, env=mixed_twin.env())
    assert vendors.rc != 0
    assert "have CPUs of AMD and Intel (worker-snp-0: AMD, worker-tdx-0: Intel)" in task(
        vendors, "Refuse target nodes with CPUs of two vendors (one TEE type per cluster)")["msg"]
    assert kube.list(path(*RULES, namespace="openshift-nfd"))["items"] == []
    # With TDX enabled on the Intel worker (kernel argument, reboot), the nodes show two TEE types.
    kube.create(path("machineconfiguration.openshift.io/v1", "machineconfigs"), {
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": "99-test-tdx", "labels": {"machineconfiguration.openshift.io/role": "worker"}},
        "spec": {"kernelArguments": ["kvm_intel.tdx=1"]}})
    wait_for(kube, "v1", "nodes", None, lambda items: any(
        n["metadata"]["labels"].get("feature.node.kubernetes.io/cpu-security.tdx.enabled") == "true" for n in items),
        timeout=120)
    tee = run_playbook(PLAY, env=mixed_twin.env())
    assert tee.rc != 0
    assert "target nodes show 2 TEE types (SNP: worker-snp-0; TDX: worker-tdx-0)" in task(
        tee, "Wait for NFD to label the target nodes with their CPU vendor")["msg"]


NOKEYS = {
    "name": "nfd-tdx-nokeys",
    "description": "an Intel TDX worker whose kernel reports no TDX keys (no misc cgroup 'tdx' capacity)",
    "openshift": {"version": "4.21.9", "platform": "BareMetal"},
    "nodes": [
        {"name": "master-0", "roles": ["control-plane", "master"], "cpu": {"vendor": "intel"}},
        {"name": "worker-0", "cpu": {"vendor": "intel"}, "tee": {"type": "tdx", "total_keys": None},
         "kernel_cmdline": "BOOT_IMAGE=(hd0,gpt3)/ostree/rhcos/vmlinuz rw kvm_intel.tdx=1 intel_iommu=on root=UUID=twin"},
    ],
    "timings": {"nfd_relabel": 0.2},
}


@pytest.fixture
def nokeys_twin(tmp_path, twin_crds):
    from tests.conftest import TwinHandle
    from twin import profile as profiles

    cluster = Cluster("test-nfd-role-nokeys", tmp_path / "state")
    cluster.up(profiles.expand(NOKEYS), conformance=twin_crds, log=lambda msg: None)
    try:
        yield TwinHandle(cluster, "nfd-tdx-nokeys")
    finally:
        assert cluster.down() == []


def test_tdx_node_without_keys_is_refused(nokeys_twin, run_playbook):
    """NFD gives the TDX labels but no tdx.intel.com/keys when the kernel reports no tdx.total_keys
    (source/cpu/security_amd64.go discoverSecurity; nfd-master drops an extended resource whose @ value is
    missing); OSC's TDX RuntimeClass asks every pod VM for one key, so such a node can never run one."""
    run = run_playbook(PLAY, env=nokeys_twin.env(), extra_vars={"nfd_require_tee": True, "nfd_timeout": 120})
    node = nokeys_twin.kube.get(path("v1", "nodes", "worker-0"))
    assert node["metadata"]["labels"]["intel.feature.node.kubernetes.io/tdx"] == "true"
    assert "tdx.intel.com/keys" not in node["status"]["capacity"]
    assert run.rc != 0
    message = task(run, "Refuse TEE nodes without the extended resource a pod VM takes")["msg"]
    assert "worker-0: TDX is enabled but the node has no tdx.intel.com/keys" in message
