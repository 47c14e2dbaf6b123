"""machine_config: selectors, pool membership, rendering, plans and rollout lines, on plain dicts."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as m

ROLE = m.ROLE_LABEL


def node(name, roles=("worker",), labels=None, ann=None, ready=True, unschedulable=False):
    lab = {f"node-role.kubernetes.io/{r}": "" for r in roles}
    lab.update(labels or {})
    return {"metadata": {"name": name, "labels": lab, "annotations": dict(ann or {})},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pool(name, node_selector=None, mc_selector=None, target="rendered-x", status_target=None, paused=False,
         conditions=None):
    return {"metadata": {"name": name},
            "spec": {"nodeSelector": node_selector or {"matchLabels": {f"node-role.kubernetes.io/{name}": ""}},
                     "machineConfigSelector": mc_selector or {"matchLabels": {ROLE: name}},
                     "configuration": {"name": target}, "paused": paused},
            "status": {"configuration": {"name": status_target or target},
                       "conditions": conditions or [{"type": "Updated", "status": "True"},
                                                    {"type": "Degraded", "status": "False"}]}}


def mc(name, role="worker", kargs=(), files=None, extensions=()):
    spec = {"config": {"ignition": {"version": "3.2.0"}}}
    if kargs:
        spec["kernelArguments"] = list(kargs)
    if extensions:
        spec["extensions"] = list(extensions)
    if files:
        spec["config"]["storage"] = {"files": [{"path": p, "contents": {"source": m.data_url(t)}} for p, t in files.items()]}
    return {"metadata": {"name": name, "labels": {ROLE: role}}, "spec": spec}


KATA = pool("kata-oc", node_selector={"matchLabels": {"kata": "true"}}, mc_selector=m.custom_pool_selector("kata-oc"))
POOLS = [pool("master"), pool("worker"), KATA]


# -- selectors and membership ------------------------------------------------------------------


@pytest.mark.parametrize("selector,labels,expected", [
    (None, {"a": "1"}, False),
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, {"a": "3"}, False),
])
def test_selector_matches(selector, labels, expected):
    assert m.selector_matches(selector, labels) is expected


def test_custom_pool_takes_worker_nodes_master_keeps_its_own():
    assert m.pool_of_node(node("w0"), POOLS) == ("worker", None)
    assert m.pool_of_node(node("w1", labels={"kata": "true"}), POOLS) == ("kata-oc", None)
    assert m.pool_of_node(node("sno", roles=("master", "worker"), labels={"kata": "true"}), POOLS) == ("master", None)
    assert m.pool_of_node(node("x", roles=()), POOLS) == (None, None)


def test_two_custom_pools_are_refused_like_the_mco():
    other = pool("infra", node_selector={"matchLabels": {"infra": ""}})
    name, problem = m.pool_of_node(node("w", labels={"kata": "true", "infra": ""}), POOLS + [other])
    assert name is None and "2 custom pools" in problem


def test_members_lists_every_pool():
    got = m.members(POOLS, [node("w0"), node("w1", labels={"kata": "true"}), node("m0", roles=("master",))])
    assert got == {"master": ["m0"], "worker": ["w0"], "kata-oc": ["w1"]}


def test_kata_selector_picks_worker_and_own_configs_only():
    assert m.selects(KATA, mc("99-worker-x", "worker"))
    assert m.selects(KATA, mc("99-kata-x", "kata-oc"))
    assert not m.selects(KATA, mc("99-master-x", "master"))
    assert not m.selects(pool("worker"), mc("99-kata-x", "kata-oc"))


# -- rendering -----------------------------------------------------------------------------------


def test_data_urls_round_trip_and_percent_encoding():
    assert m.decode_data_url(m.data_url("vsock-loopback\n")) == "vsock-loopback\n"
    assert m.decode_data_url("data:,hello%20world%0A") == "hello world\n"
    assert m.decode_data_url("https://example.com/x") is None
    assert m.decode_data_url("data:text/plain;base64,@@@") is None


def test_merge_sorts_by_name_keeps_repeated_kargs_later_files_win():
    merged = m.merge([
        mc("99-b", kargs=["b=1", "a=1"], files={"/etc/x": "late"}, extensions=["usbguard"]),
        mc("10-a", kargs=["a=1"], files={"/etc/x": "early", "/etc/y": "y"}, extensions=["usbguard"]),
    ])
    assert merged["kernelArguments"] == ["a=1", "b=1", "a=1"], "the MCO concatenates kernel arguments"
    assert merged["files"]["/etc/x"]["contents"] == "late" and merged["files"]["/etc/x"]["from"] == "99-b"
    assert merged["files"]["/etc/y"]["contents"] == "y"
    assert merged["extensions"] == ["usbguard", "usbguard"], "the MCO concatenates extensions"
    assert merged["sources"] == ["10-a", "99-b"]


def test_merge_puts_worker_configs_first_then_the_pools_own_and_keeps_repeats():
    # openshift/machine-config-operator release-4.21, pkg/controller/common/helpers.go MergeMachineConfigs
    merged = m.merge([
        mc("99-worker-b", "worker", kargs=["a=1", "b=1"], files={"/etc/x": "worker"}),
        mc("50-kata-oc-a", "kata-oc", kargs=["a=1"], files={"/etc/x": "kata-oc"}),
        mc("00-worker", "worker", kargs=["w=0"]),
    ])
    assert merged["sources"] == ["00-worker", "99-worker-b", "50-kata-oc-a"]
    assert merged["kernelArguments"] == ["w=0", "a=1", "b=1", "a=1"]
    assert merged["files"]["/etc/x"]["from"] == "50-kata-oc-a"


def test_plan_keeps_a_file_the_pools_own_config_overrides():
    ours = m.host_machine_configs("kata-oc", "tdx", iommu=False)[0]
    vsock = ours["spec"]["config"]["storage"]["files"][0]
    worker = mc("99-worker-vsock", "worker")
    worker["spec"]["config"]["storage"] = {"files": [vsock]}
    override = mc("50-kata-oc-vsock", "kata-oc", files={vsock["path"]: "# off"})
    planned = m.plan("kata-oc", [ours], [], [worker, override], [])
    entry = planned["machine_configs"][0]
    assert entry["action"] == "create"
    assert [f["path"] for f in entry["definition"]["spec"]["config"]["storage"]["files"]] == [vsock["path"]]


def test_render_contains():
    rendered = {"kernelArguments": ["intel_iommu=on", "kvm_intel.tdx=1", "nohibernate"],
                "config": {"storage": {"files": [{"path": m.VSOCK_FILE, "contents": {"source": m.data_url("vsock-loopback\n")}}]}}}
    tdx = m.host_machine_configs("worker", "tdx")[0]
    assert m.render_contains(rendered, tdx)
    rendered["config"]["storage"]["files"][0]["contents"]["source"] = m.data_url("other\n")
    assert not m.render_contains(rendered, tdx)
    assert not m.render_contains({"kernelArguments": ["kvm_intel.tdx=1"]}, tdx)


# -- host MachineConfigs and plans -----------------------------------------------------------------


def test_host_machine_configs_tdx_and_iommu():
    tdx, iommu = m.host_machine_configs("kata-oc", "tdx")
    assert tdx["metadata"]["name"] == "99-kata-oc-cgpu-tdx"
    assert tdx["metadata"]["labels"][ROLE] == "kata-oc"
    assert tdx["spec"]["kernelArguments"] == ["kvm_intel.tdx=1", "nohibernate"]
    files = tdx["spec"]["config"]["storage"]["files"]
    assert files[0]["path"] == "/etc/modules-load.d/vsock.conf" and files[0]["mode"] == 0o644
    assert m.decode_data_url(files[0]["contents"]["source"]) == "vsock-loopback\n"
    assert iommu["spec"]["kernelArguments"] == ["intel_iommu=on"]


def test_host_machine_configs_snp():
    assert [c["spec"]["kernelArguments"] for c in m.host_machine_configs("worker", "snp")] == [["amd_iommu=on"]]
    snp, iommu = m.host_machine_configs("worker", "snp", snp_kernel_arguments=True)
    assert snp["spec"]["kernelArguments"] == ["kvm_amd.sev=1", "kvm_amd.sev_snp=1"]
    with pytest.raises(ValueError):
        m.host_machine_configs("worker", "sev")


def workers(target="rendered-x"):
    ann = {m.CURRENT_CONFIG: target, m.DESIRED_CONFIG: target, m.STATE: "Done"}
    return [node(f"worker-{i}", ann=ann) for i in range(3)] + [node("master-0", roles=("master",), ann=ann)]


def test_plan_creates_and_reboots_the_pool_members():
    desired = m.host_machine_configs("worker", "tdx")
    got = m.plan("worker", desired, POOLS, [mc("00-worker")], workers())
    assert [e["action"] for e in got["machine_configs"]] == ["create", "create"]
    assert got["changed"] and got["affected_pools"] == ["kata-oc", "worker"]
    assert got["reboot_nodes"] == ["worker-0", "worker-1", "worker-2"]
    assert got["members"] == ["worker-0", "worker-1", "worker-2"] and got["updating_nodes"] == []


def test_plan_rerun_changes_nothing():
    desired = m.host_machine_configs("worker", "tdx")
    got = m.plan("worker", desired, POOLS, [mc("00-worker")] + desired, workers())
    assert [e["action"] for e in got["machine_configs"]] == ["unchanged", "unchanged"]
    assert not got["changed"] and got["reboot_nodes"] == []


def test_plan_leaves_out_what_the_guide_configs_already_give():
    guide_tdx = mc("99-enable-intel-tdx", kargs=["kvm_intel.tdx=1", "nohibernate"],
                   files={m.VSOCK_FILE: "vsock-loopback\n"})
    guide_iommu = mc("100-iommu-kernel-args", kargs=["amd_iommu=on", "intel_iommu=on"])
    got = m.plan("worker", m.host_machine_configs("worker", "tdx"), POOLS, [guide_tdx, guide_iommu], workers())
    assert [(e["action"], e["reason"]) for e in got["machine_configs"]] == [
        ("provided", "already given by 99-enable-intel-tdx"), ("provided", "already given by 100-iommu-kernel-args")]
    assert not got["changed"] and got["reboot_nodes"] == []


def test_plan_keeps_only_the_missing_part():
    partial = mc("99-enable-intel-tdx", kargs=["kvm_intel.tdx=1"])
    got = m.plan("worker", m.host_machine_configs("worker", "tdx", iommu=False), POOLS, [partial], workers())
    entry = got["machine_configs"][0]
    assert entry["action"] == "create"
    assert entry["definition"]["spec"]["kernelArguments"] == ["nohibernate"]
    assert entry["definition"]["spec"]["config"]["storage"]["files"][0]["path"] == m.VSOCK_FILE


def test_plan_for_a_pool_not_created_yet_reboots_nothing_now():
    desired = m.host_machine_configs("kata-oc", "tdx")
    got = m.plan("kata-oc", desired, [pool("master"), pool("worker")], [mc("00-worker")], workers())
    assert got["changed"] and not got["pool_exists"]
    assert got["affected_pools"] == [] and got["reboot_nodes"] == []


def test_plan_update_when_content_differs_and_reports_nodes_mid_update():
    desired = m.host_machine_configs("worker", "tdx", iommu=False)
    old = m.host_machine_configs("worker", "tdx", iommu=False)[0]
    old["spec"]["kernelArguments"] = ["kvm_intel.tdx=1"]
    nodes = workers()
    nodes[1]["metadata"]["annotations"][m.DESIRED_CONFIG] = "rendered-y"
    got = m.plan("worker", desired, POOLS, [old], nodes)
    assert got["machine_configs"][0]["action"] == "update"
    assert got["updating_nodes"] == ["worker-1"]


# -- rollout ----------------------------------------------------------------------------------------


def test_rollout_line_and_phases():
    target = "rendered-new"
    done = {m.CURRENT_CONFIG: target, m.DESIRED_CONFIG: target, m.STATE: "Done"}
    nodes = [
        node("worker-0", ann=done),
        node("worker-1", ann={m.CURRENT_CONFIG: "old", m.DESIRED_CONFIG: target, m.STATE: "Working"}, ready=False,
             unschedulable=True),
        node("worker-2", ann={m.CURRENT_CONFIG: "old", m.DESIRED_CONFIG: "old", m.STATE: "Done"}),
    ]
    p = pool("worker", target=target, status_target="old", conditions=[{"type": "Updated", "status": "False"}])
    got = m.rollout(p, nodes)
    assert got["line"] == "worker: 1/3 nodes updated, worker-1 rebooting, 1 waiting"
    assert got["nodes"] == {"worker-0": "updated", "worker-1": "rebooting", "worker-2": "waiting"}
    assert not got["done"] and not got["degraded"]


def test_rollout_draining_with_blocker_and_degraded():
    target = "rendered-new"
    draining = node("worker-0", unschedulable=True, ann={
        m.CURRENT_CONFIG: "old", m.DESIRED_CONFIG: target, m.STATE: "Working",
        m.DESIRED_DRAIN: "drain-" + target, m.LAST_APPLIED_DRAIN: "uncordon-old"})
    degraded = node("worker-1", ann={m.CURRENT_CONFIG: "old", m.DESIRED_CONFIG: target, m.STATE: "Degraded",
                                     m.REASON: "disk full"})
    p = pool("worker", target=target, conditions=[{"type": "Degraded", "status": "True",
                                                   "message": 'Node worker-1 is reporting: "disk full"'}])
    got = m.rollout(p, [draining, degraded], {"worker-0": "blocked by PodDisruptionBudget ns/pdb (pod ns/p)"})
    assert got["line"] == ("worker: 0/2 nodes updated, worker-0 draining (blocked by PodDisruptionBudget ns/pdb "
                           "(pod ns/p)), worker-1 degraded (disk full)")
    assert got["degraded"] and got["message"] == 'Node worker-1 is reporting: "disk full"'
    p["status"]["conditions"] = []
    assert m.rollout(p, [draining, degraded])["message"] == 'Node worker-1 is reporting: "disk full"'


def test_rollout_done_needs_pool_status_too():
    target = "rendered-new"
    done = {m.CURRENT_CONFIG: target, m.DESIRED_CONFIG: target, m.STATE: "Done"}
    nodes = [node("worker-0", ann=done)]
    assert m.rollout(pool("worker", target=target), nodes)["done"]
    assert not m.rollout(pool("worker", target=target, status_target="old"), nodes)["done"]
    paused = m.rollout(pool("worker", target=target, paused=True), [node("worker-0", ann={
        m.CURRENT_CONFIG: "old", m.DESIRED_CONFIG: "old", m.STATE: "Done"})])
    assert paused["line"] == "worker: 0/1 nodes updated, paused with 1 waiting"


def test_drain_blockers():
    pods = [{"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"}}},
            {"metadata": {"name": "ds", "namespace": "ns", "labels": {"app": "a"},
                          "ownerReferences": [{"kind": "DaemonSet"}]}},
            {"metadata": {"name": "q", "namespace": "other", "labels": {"app": "a"}}}]
    pdbs = [{"metadata": {"name": "pdb", "namespace": "ns"}, "spec": {"selector": {"matchLabels": {"app": "a"}}},
             "status": {"disruptionsAllowed": 0}},
            {"metadata": {"name": "loose", "namespace": "other"}, "spec": {"selector": {"matchLabels": {"app": "a"}}},
             "status": {"disruptionsAllowed": 1}}]
    assert m.drain_blockers(pods, pdbs) == {"ns/p": "ns/pdb"}


def test_describe_absent_pool_uses_node_selector_and_custom_selector():
    configs = [mc("00-worker"), mc("99-kata-oc-cgpu-tdx", "kata-oc"), mc("00-master", "master"),
               {"metadata": {"name": "rendered-worker-1", "labels": {}}, "spec": {}}]
    nodes = workers() + [node("worker-9", labels={"kata-cc": "true"})]
    got = m.describe("kata-oc", {"kata-cc": "true"}, [pool("master"), pool("worker")], nodes, configs)
    assert not got["exists"] and got["members"] == ["worker-9"]
    assert got["machine_configs"] == ["00-worker", "99-kata-oc-cgpu-tdx"]
    assert got["rollout"]["line"] == "kata-oc: pool does not exist yet (1 nodes would join it)"
    present = m.describe("worker", {}, POOLS, workers(), configs)
    assert present["exists"] and present["members"] == ["worker-0", "worker-1", "worker-2"]
    assert present["rollout"]["done"] and present["target"] == "rendered-x"
