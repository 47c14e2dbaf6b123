"""The OSC twin: KataConfig → pool and MachineConfig rolled out by the MCO twin, status, runtime classes."""

import pytest

from twin.kube import path

from .conftest import OSC_NAMESPACE, cluster_policy, create_pod, ensure_namespace, prepare, wait_for

pytestmark = pytest.mark.twin

KC = path("kataconfiguration.openshift.io/v1", "kataconfigs")
RC = path("node.k8s.io/v1", "runtimeclasses")
NODES = path("v1", "nodes")
CP = path("nvidia.com/v1", "clusterpolicies")
POOLS = path("machineconfiguration.openshift.io/v1", "machineconfigpools")
TDX = "intel.feature.node.kubernetes.io/tdx"
SNP = "amd.feature.node.kubernetes.io/snp"
ELIGIBLE = "feature.node.kubernetes.io/runtime.kata"
BOOTS = "twin.confidential.gpu/boots"


def feature_gates(kube, confidential="true"):
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "osc-feature-gates", "namespace": OSC_NAMESPACE},
            "data": {"confidential": confidential}}
    if kube.get_or_none(path("v1", "configmaps", "osc-feature-gates", OSC_NAMESPACE)) is None:
        kube.create(path("v1", "configmaps", namespace=OSC_NAMESPACE), body)
    else:
        kube.merge_patch(path("v1", "configmaps", "osc-feature-gates", OSC_NAMESPACE), {"data": body["data"]})


def kataconfig(name="example-kataconfig", selector=None, eligibility=False):
    spec = {"checkNodeEligibility": eligibility, "enablePeerPods": False, "logLevel": "info"}
    if selector:
        spec["kataConfigPoolSelector"] = {"matchLabels": selector}
    return {"apiVersion": "kataconfiguration.openshift.io/v1", "kind": "KataConfig", "metadata": {"name": name},
            "spec": spec}


def label(kube, node, labels):
    kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": labels}})


def in_progress(kc):
    return next((c for c in (kc.get("status") or {}).get("conditions") or [] if c["type"] == "InProgress"), {})


def done(kc):
    status = kc.get("status") or {}
    nodes = status.get("kataNodes") or {}
    cond = in_progress(kc)
    return cond.get("status") == "False" and not cond.get("reason") and nodes.get("nodeCount") \
        and nodes.get("readyNodeCount") == nodes.get("nodeCount")


def bump(kube, name, value):
    kube.merge_patch(f"{KC}/{name}", {"metadata": {"annotations": {"confidential.gpu/reconcile": value}}})


def boots(kube):
    return {n["metadata"]["name"]: int((n["metadata"].get("annotations") or {}).get(BOOTS, "1"))
            for n in kube.list(NODES)["items"]}


def test_kataconfig_on_workers_one_reboot_each_and_confidential_classes(gpu_twin):
    kube = gpu_twin.kube
    workers = ["worker-0", "worker-1", "worker-2"]
    if kube.get_or_none(f"{CP}/gpu-cluster-policy") is None:
        kube.create(CP, cluster_policy())
    for node in workers:
        label(kube, node, {TDX: "true", ELIGIBLE: "true"})
    label(kube, "worker-2", {ELIGIBLE: None})  # not eligible: stays out
    feature_gates(kube)
    before = boots(kube)
    kube.create(KC, kataconfig(eligibility=True))
    items = wait_for(kube, KC, lambda i: done(i.get("example-kataconfig", {})), timeout=120, what="KataConfig done")
    kc = items["example-kataconfig"]
    assert kc["status"]["kataNodes"]["installed"] == ["worker-0", "worker-1"]
    assert kc["status"]["kataNodes"]["nodeCount"] == 2
    assert kc["status"]["runtimeClasses"] == ["kata", "kata-cc", "kata-cc-nvidia-gpu"]
    assert "kataconfiguration.openshift.io/finalizer" in kc["metadata"]["finalizers"]
    after = boots(kube)
    assert {n: after[n] - before[n] for n in workers} == {"worker-0": 1, "worker-1": 1, "worker-2": 0}
    nodes = {n["metadata"]["name"]: n for n in kube.list(NODES)["items"]}
    assert "node-role.kubernetes.io/kata-oc" in nodes["worker-0"]["metadata"]["labels"]
    assert "node-role.kubernetes.io/kata-oc" not in nodes["worker-2"]["metadata"]["labels"]
    pool = kube.get(f"{POOLS}/kata-oc")
    assert pool["spec"]["machineConfigSelector"]["matchExpressions"][0]["values"] == ["kata-oc", "worker"]
    assert "50-enable-sandboxed-containers-extension" in {s["name"] for s in pool["spec"]["configuration"]["source"]}
    classes = {rc["metadata"]["name"]: rc for rc in kube.list(RC)["items"]}
    assert classes["kata"]["handler"] == "kata"
    assert classes["kata-cc"]["handler"] == "kata-tdx"
    assert classes["kata-cc"]["overhead"]["podFixed"] == {"cpu": "250m", "memory": "350Mi", "tdx.intel.com/keys": "1"}
    assert classes["kata-cc"]["scheduling"]["nodeSelector"] == {TDX: "true"}
    gpu = classes["kata-cc-nvidia-gpu"]
    assert gpu["handler"] == "kata-tdx-nvidia-gpu"
    assert gpu["scheduling"]["nodeSelector"] == {
        "nvidia.com/gpu.present": "true", "nvidia.com/gpu.deploy.vfio-manager": "true",
        "nvidia.com/gpu.deploy.kata-sandbox-device-plugin": "true", "nvidia.com/cc.mode.state": "on",
        "nvidia.com/cc.ready.state": "true", TDX: "true"}

    # TEE label counting: two types, then none, each the operator's own words; fixed, it recovers
    label(kube, "worker-1", {SNP: "true"})
    bump(kube, "example-kataconfig", "1")
    kc = wait_for(kube, KC, lambda i: in_progress(i["example-kataconfig"]).get("reason") == "Failed",
                  timeout=30)["example-kataconfig"]
    assert in_progress(kc)["message"] == "multiple TEE platforms detected; only one per cluster supported"
    label(kube, "worker-1", {SNP: None})
    for node in workers:
        label(kube, node, {TDX: None})
    bump(kube, "example-kataconfig", "2")
    kc = wait_for(kube, KC, lambda i: in_progress(i["example-kataconfig"]).get("message", "").startswith(
        "no TEE platform labels found"), timeout=30)["example-kataconfig"]
    assert "intel.feature.node.kubernetes.io/tdx" in in_progress(kc)["message"]
    for node in workers:
        label(kube, node, {TDX: "true"})
    wait_for(kube, KC, lambda i: done(i["example-kataconfig"]), timeout=90, what="recovered after the TEE fix")


def test_sno_uses_master_gates_old_openshift_and_misses_late_gpus_until_reconciled(cgpu_twin_factory, twin_crds):
    handle = cgpu_twin_factory("sno")
    prepare(handle, twin_crds is not None)
    kube = handle.kube
    label(kube, "sno-0", {TDX: "true"})
    feature_gates(kube)
    cv = path("config.openshift.io/v1", "clusterversions", "version", subresource="status")
    kube.merge_patch(cv, {"status": {"desired": {"version": "4.20.5"}}})
    try:
        kube.create(KC, kataconfig())
        kc = wait_for(kube, KC, lambda i: in_progress(i.get("example-kataconfig", {})).get("reason")
                      == "UnsupportedOCPVersion", timeout=30)["example-kataconfig"]
        assert "4.20.5" in in_progress(kc)["message"] and "4.20.6" in in_progress(kc)["message"]
        assert kube.get_or_none(path("machineconfiguration.openshift.io/v1", "machineconfigs",
                                     "50-enable-sandboxed-containers-extension")) is None
    finally:
        kube.merge_patch(cv, {"status": {"desired": {"version": "4.21.10"}}})
    bump(kube, "example-kataconfig", "1")
    kc = wait_for(kube, KC, lambda i: done(i["example-kataconfig"]), timeout=120)["example-kataconfig"]
    mc = kube.get(path("machineconfiguration.openshift.io/v1", "machineconfigs", "50-enable-sandboxed-containers-extension"))
    assert mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"] == "master"
    assert kube.get_or_none(f"{POOLS}/kata-oc") is None
    assert kc["status"]["runtimeClasses"] == ["kata", "kata-cc"]

    # The GPU operator comes after: its labels alone do not reconcile the KataConfig
    kube.create(CP, cluster_policy())
    wait_for(kube, NODES, lambda i: i["sno-0"]["metadata"]["labels"].get("nvidia.com/gpu.present") == "true",
             timeout=30)
    assert kube.get_or_none(f"{RC}/kata-cc-nvidia-gpu") is None
    bump(kube, "example-kataconfig", "2")
    wait_for(kube, KC, lambda i: i["example-kataconfig"]["status"].get("runtimeClasses")
             == ["kata", "kata-cc", "kata-cc-nvidia-gpu"], timeout=30, what="GPU runtime class after a reconcile")
    assert kube.get(f"{RC}/kata-cc-nvidia-gpu")["handler"] == "kata-tdx-nvidia-gpu"

    # Uninstall: a pod still running kata blocks it (OSC's BlockedByExistingKataPods); once it is gone, the
    # KataConfig takes its runtime classes and MachineConfig with it. A plain kata pod: this SNO host never had
    # TDX switched on, so a kata-cc sandbox would (rightly) not start there.
    ensure_namespace(kube, "kata-workload")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cc"},
           "spec": {"runtimeClassName": "kata", "containers": [{"name": "c", "image": "registry.example/app:1"}]}}
    create_pod(kube, "kata-workload", pod)
    pods = path("v1", "pods", namespace="kata-workload")
    wait_for(kube, pods, lambda i: (i.get("cc", {}).get("status") or {}).get("phase") == "Running", timeout=30)
    kube.delete(f"{KC}/example-kataconfig")
    kc = wait_for(kube, KC, lambda i: in_progress(i.get("example-kataconfig", {})).get("reason")
                  == "BlockedByExistingKataPods", timeout=30)["example-kataconfig"]
    assert "delete the pods" in in_progress(kc)["message"]
    kube.delete(path("v1", "pods", "cc", "kata-workload"), gracePeriodSeconds=0)
    wait_for(kube, KC, lambda i: "example-kataconfig" not in i, timeout=60, what="KataConfig deleted")
    assert not {"kata", "kata-cc", "kata-cc-nvidia-gpu"} & {rc["metadata"]["name"] for rc in kube.list(RC)["items"]}
    assert kube.get_or_none(path("machineconfiguration.openshift.io/v1", "machineconfigs",
                                 "50-enable-sandboxed-containers-extension")) is None


MC = path("machineconfiguration.openshift.io/v1", "machineconfigs")
CRC = path("machineconfiguration.openshift.io/v1", "containerruntimeconfigs")


@pytest.mark.parametrize("late", [False, True], ids=["crc-first", "crc-late"])
def test_log_level_brings_a_containerruntimeconfig_and_its_generated_machine_config(
        cgpu_twin_factory, tmp_path_factory, late):
    """logLevel debug: OSC's kata-crio-config, MCO's 99-kata-oc-generated-containerruntime in kata-oc's render.
    Landing before the first render: one rendered config, one reboot per node; after it (the fault): a second
    rendered config and a second update of the node already on the first."""
    import yaml
    from twin import profile as profiles

    data = yaml.safe_load((profiles.PROFILES_DIR / "default.yaml").read_text())
    data["name"] = "default-crio-late" if late else "default-crio"
    if late:
        data["faults"] = [{"kind": "osc-crc-late"}]
    file = tmp_path_factory.mktemp("profiles") / f"{data['name']}.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    handle = cgpu_twin_factory(str(file))
    prepare(handle, False, operand_crds_too=True)
    kube = handle.kube
    workers = ["worker-0", "worker-1", "worker-2"]
    feature_gates(kube, confidential="false")
    before = boots(kube)
    body = kataconfig()
    body["spec"]["logLevel"] = "debug"
    kube.create(KC, body)

    def finished(items):
        pool = kube.get_or_none(f"{POOLS}/kata-oc") or {}
        return done(items.get("example-kataconfig", {})) and "99-kata-oc-generated-containerruntime" in {
            s["name"] for s in (pool.get("spec", {}).get("configuration") or {}).get("source") or []}

    wait_for(kube, KC, finished, timeout=180, what="kata-oc rendered with the CRI-O log level, KataConfig done")
    crc = kube.get(f"{CRC}/kata-crio-config")
    assert crc["spec"] == {"machineConfigPoolSelector": {"matchLabels": {
        "pools.operator.machineconfiguration.openshift.io/kata-oc": ""}}, "containerRuntimeConfig": {"logLevel": "debug"}}
    assert crc["status"]["conditions"][-1]["type"] == "Success"
    generated = kube.get(f"{MC}/99-kata-oc-generated-containerruntime")
    assert generated["metadata"]["labels"]["machineconfiguration.openshift.io/role"] == "kata-oc"
    assert generated["metadata"]["ownerReferences"][0]["kind"] == "ContainerRuntimeConfig"
    assert generated["spec"]["config"]["storage"]["files"][0]["path"] == "/etc/crio/crio.conf.d/01-ctrcfg-logLevel"
    rendered = {mc["metadata"]["name"] for mc in kube.list(MC)["items"]
                if mc["metadata"]["name"].startswith("rendered-kata-oc-")}
    after = boots(kube)
    reboots = {n: after[n] - before[n] for n in workers}
    if not late:
        assert len(rendered) == 1 and reboots == {n: 1 for n in workers}
    else:
        assert len(rendered) == 2, "a second rendered config"
        assert sorted(reboots.values()) == [1, 1, 2], "the node on the first render updates again"


def test_role_refuses_a_log_level_that_may_cost_a_second_rollout(twin, run_playbook):
    play = [{"hosts": "localhost", "gather_facts": False,
             "roles": [{"role": "confidential.gpu.sandboxed_containers", "sandboxed_containers_log_level": "debug"}]}]
    with twin.audit.window(user="admin") as audit:
        run = run_playbook(play, env=twin.env())
    assert run.rc != 0
    text = run.stdout
    assert "sandboxed_containers_log_level" in text and "kata-crio-config" in text
    assert "sandboxed_containers_log_level_second_rollout" in text
    assert not audit.writes, "refused before anything changed"


KC_CRD = "kataconfigs.kataconfiguration.openshift.io"
CRDS = path("apiextensions.k8s.io/v1", "customresourcedefinitions")


def newer_kataconfig_crd():
    """The KataConfig CRD as a newer OSC would serve it: the one in ../shared/crds (OSC 1.8, which has no
    ``unifiedKataCCHandler``) with that boolean added, as openshift/sandboxed-containers-operator's
    controllers/confidential_handler.go (handleConfidentialBaremetal: ``r.kataConfig.Spec.UnifiedKataCCHandler``)
    reads it."""
    from twin import crds
    from tests.conftest import shared_path

    crd = next(d for d in crds.real_crds(shared_path("crds", "osc")) if d["spec"]["names"]["kind"] == "KataConfig")
    for version in crd["spec"]["versions"]:
        props = version["schema"]["openAPIV3Schema"]["properties"]["spec"].setdefault("properties", {})
        assert "unifiedKataCCHandler" not in props, "the shared CRD has it now: let the twin model it"
        props["unifiedKataCCHandler"] = {"type": "boolean"}
    return crd


def test_role_refuses_an_existing_unified_kata_cc_handler_and_pins_it_off(twin, run_playbook):
    """unifiedKataCCHandler true makes a newer OSC create a CRI-O drop-in MachineConfig and a MachineConfigPool per TEE
    (handleConfidentialBaremetalUnified, createOrUpdateTEEPool): the kata nodes move pool again and reboot again,
    outside the one-reboot plan. The role refuses a KataConfig that has it on, before any change, and the
    KataConfig it writes says false wherever the served schema has the field."""
    from twin import crds
    from plugins.module_utils import kata_config

    kube = twin.kube
    crd = newer_kataconfig_crd()
    assert kata_config.unified_handler_field(crd) is True
    from tests.conftest import shared_path

    shared = next(d for d in crds.real_crds(shared_path("crds", "osc")) if d["spec"]["names"]["kind"] == "KataConfig")
    assert kata_config.unified_handler_field(shared) is False
    crds.install(kube, [crd])
    body = kataconfig()
    body["spec"]["unifiedKataCCHandler"] = True
    kube.create(KC, body)
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "confidential.gpu.sandboxed_containers"}]}]
    try:
        with twin.audit.window(user="admin") as audit:
            run = run_playbook(play, env=twin.env())
        assert run.rc != 0, run.stdout[-3000:]
        assert "unifiedKataCCHandler" in run.stdout and "example-kataconfig" in run.stdout
        assert "MachineConfigPool per TEE" in run.stdout
        assert not audit.writes, "refused before anything changed"
    finally:
        kube.delete(f"{KC}/example-kataconfig")
        kube.delete(f"{CRDS}/{KC_CRD}")
