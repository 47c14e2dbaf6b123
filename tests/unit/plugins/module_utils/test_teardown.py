"""teardown.plan: only the collection's objects, in the bring-up's reverse order, and the reboots it costs."""

from ansible_collections.confidential.gpu.plugins.module_utils import teardown as t

OURS = {t.MANAGED_BY: t.MANAGER}
SUB = ("operators.coreos.com/v1alpha1", "Subscription")
NS = ("v1", "Namespace")
MC = ("machineconfiguration.openshift.io/v1", "MachineConfig")
KATA = ("kataconfiguration.openshift.io/v1", "KataConfig")
POLICY = ("nvidia.com/v1", "ClusterPolicy")
NFD = ("nfd.openshift.io/v1", "NodeFeatureDiscovery")


def obj(name, namespace=None, labels=None, **extra):
    meta = {"name": name, "labels": dict(labels or {})}
    if namespace:
        meta["namespace"] = namespace
    return dict({"metadata": meta}, **extra)


def sub(package, namespace, csv, labels=None):
    return obj(package, namespace, OURS if labels is None else labels, spec={"name": package}, status={"installedCSV": csv})


def node(name, **labels):
    return obj(name, labels=dict({"node-role.kubernetes.io/worker": ""}, **labels))


POOLS = [obj("worker", spec={"nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}}}),
         obj("kata-oc", spec={"nodeSelector": {"matchLabels": {"node-role.kubernetes.io/kata-oc": ""}}})]
NODES = [node("worker-0", **{"node-role.kubernetes.io/kata-oc": "", "confidential.gpu/kata": "true"}),
         node("worker-1", **{"node-role.kubernetes.io/kata-oc": ""}), node("infra-0")]


def bring_up(mc_role="kata-oc"):
    """What site.yml leaves: four operators in namespaces it created, operands, host MachineConfigs."""
    found = {NS: [], SUB: []}
    csvs = []
    for package, namespace in (("nfd", "openshift-nfd"), ("sandboxed-containers-operator", "openshift-sc"),
                               ("gpu-operator-certified", "nvidia-gpu-operator"),
                               ("trustee-operator", "trustee-operator-system")):
        found[NS].append(obj(namespace, labels=OURS))
        found[SUB].append(sub(package, namespace, package + ".v1"))
        csvs.append(obj(package + ".v1", namespace))
    found[KATA] = [obj("cluster-kataconfig", labels=OURS, apiVersion=KATA[0], kind="KataConfig")]
    found[POLICY] = [obj("gpu-cluster-policy", labels=OURS, apiVersion=POLICY[0], kind="ClusterPolicy")]
    found[NFD] = [obj("nfd-instance", "openshift-nfd", apiVersion=NFD[0], kind="NodeFeatureDiscovery")]
    found[MC] = [obj("99-kata-oc-tdx", labels=dict(OURS, **{t.ROLE_LABEL: mc_role}), apiVersion=MC[0],
                     kind="MachineConfig"),
                 obj("50-someone-elses", labels={t.ROLE_LABEL: "worker"}, apiVersion=MC[0], kind="MachineConfig")]
    return found, csvs


def test_reverse_order_operands_before_operators_before_namespaces():
    found, csvs = bring_up()
    result = t.plan(found, [], POOLS, NODES, csvs=csvs)
    names = [s["name"] for s in result["stages"]]
    order = ["trustee", "sandboxed_containers operands", "gpu_operator", "host MachineConfigs", "nfd"]  # the issue's
    first = [min(i for i, n in enumerate(names) if n.startswith(o)) for o in order]
    assert first == sorted(first), names
    for component in ("gpu_operator", "sandboxed_containers", "nfd"):
        mine = [n for n in names if n.startswith(component)]
        assert mine == [component + " operands", component + " operator", component + " namespace"], names
    assert result["refusal"] is None


def test_only_what_the_collection_made():
    found, csvs = bring_up()
    found[SUB].append(sub("other-operator", "openshift-nfd", "other.v1", labels={}))
    found[NS].append(obj("users-own"))
    result = t.plan(found, [], POOLS, NODES, csvs=csvs)
    assert "MachineConfig 50-someone-elses" not in result["objects"]
    assert "Namespace users-own" not in result["objects"]
    assert "Subscription openshift-nfd/other-operator" not in result["objects"]
    assert "ClusterServiceVersion nvidia-gpu-operator/gpu-operator-certified.v1" in result["objects"]
    # the operand in a namespace it created goes, though unlabelled
    assert "NodeFeatureDiscovery openshift-nfd/nfd-instance" in result["objects"]


def test_an_operator_it_did_not_install_stays():
    found, csvs = bring_up()
    found[SUB] = [s for s in found[SUB] if s["spec"]["name"] != "gpu-operator-certified"]
    found[SUB].append(sub("gpu-operator-certified", "nvidia-gpu-operator", "gpu-operator-certified.v1", labels={}))
    found[NS] = [n for n in found[NS] if n["metadata"]["name"] != "nvidia-gpu-operator"] + [obj("nvidia-gpu-operator")]
    result = t.plan(found, [], POOLS, NODES, csvs=csvs)
    assert not any("nvidia-gpu-operator" in o for o in result["objects"]), result["objects"]
    assert "ClusterPolicy gpu-cluster-policy" in result["objects"]  # labelled: ours


def test_one_reboot_per_kata_node_when_the_host_configs_were_for_kata_oc():
    found, csvs = bring_up("kata-oc")
    result = t.plan(found, [], POOLS, NODES, csvs=csvs)
    assert result["reboots"] == {"worker-0": 1, "worker-1": 1}
    kata = next(s for s in result["stages"] if s["name"] == "sandboxed_containers operands")
    assert kata["pools"] == ["worker"] and kata["absent_machine_configs"] == [t.KATA_EXTENSION]
    hosts = next(s for s in result["stages"] if s["name"] == "host MachineConfigs")
    assert hosts["pools"] == []  # kata-oc is gone by then: nothing to roll out


def test_host_configs_of_worker_reboot_the_workers_once_more():
    found, csvs = bring_up("worker")
    result = t.plan(found, [], POOLS, NODES, csvs=csvs)
    assert result["reboots"] == {"infra-0": 1, "worker-0": 2, "worker-1": 2}
    hosts = next(s for s in result["stages"] if s["name"] == "host MachineConfigs")
    assert hosts["pools"] == ["worker"] and hosts["absent_machine_configs"] == ["99-kata-oc-tdx"]


def test_refuses_while_confidential_pods_run_unless_told():
    found, csvs = bring_up()
    pods = [obj("cuda", "demo", spec={"runtimeClassName": "kata-cc-nvidia-gpu"}, status={"phase": "Running"}),
            obj("done", "demo", spec={"runtimeClassName": "kata"}, status={"phase": "Succeeded"}),
            obj("plain", "demo", spec={}, status={"phase": "Running"})]
    refused = t.plan(found, pods, POOLS, NODES, csvs=csvs)
    assert refused["refusal"].startswith("1 confidential pod(s) still run: demo/cuda.")
    assert "teardown_workloads: delete" in refused["refusal"] and "Nothing was changed" in refused["refusal"]
    told = t.plan(found, pods, POOLS, NODES, delete_workloads=True, csvs=csvs)
    assert told["refusal"] is None
    assert told["stages"][0] == {"name": "confidential workloads", "pools": [], "absent_machine_configs": [],
                                 "delete": [{"api_version": "v1", "kind": "Pod", "name": "cuda", "namespace": "demo"}]}


def test_node_labels_and_annotations_of_the_collection_only():
    nodes = [obj("w", labels={"confidential.gpu/kata": "true", "feature.node.kubernetes.io/x": "true"})]
    nodes[0]["metadata"]["labels"].update({"nvidia.com/cc.mode": "on", "nvidia.com/gpu.present": "true"})
    nodes[0]["metadata"]["annotations"] = {"confidential.gpu/host-facts": "{}", "machineconfiguration.openshift.io/x": "y",
                                           t.LABELS_SET: "nvidia.com/cc.mode"}
    assert t.node_leftovers(nodes) == {"w": {"metadata": {
        "labels": {"confidential.gpu/kata": None, "nvidia.com/cc.mode": None},
        "annotations": {"confidential.gpu/host-facts": None, t.LABELS_SET: None}}}}


def test_nothing_there_says_so():
    result = t.plan({}, [], POOLS, [node("w")])
    assert result["stages"] == [] and result["reboots"] == {}
    assert t.summary(result, check_mode=False) == ["nothing of confidential.gpu's is on this cluster", "reboots: none"]


def test_summary_says_would_in_check_mode():
    found, csvs = bring_up()
    lines = t.summary(t.plan(found, [], POOLS, NODES, csvs=csvs), check_mode=True)
    assert "sandboxed_containers operands: would delete KataConfig cluster-kataconfig" in lines
    assert lines[-1] == "reboots: worker-0 ×1, worker-1 ×1"
    assert any(line.startswith("nodes: would remove") and "worker-0" in line for line in lines)
