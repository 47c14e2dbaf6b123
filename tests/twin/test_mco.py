"""The Machine Config Operator twin against the real API server: rendering, one-node-at-a-time
rollouts with reboots, paused pools, custom pools, degraded nodes and drains a PDB blocks.

Every test leaves the cluster as it found it (same rendered configs, nodes uncordoned), so tests
after it on the shared default twin see a fresh cluster; reboots are counted as deltas.
"""

import threading

import pytest

from twin.kube import ApiError, path

from tests.twin.mco_helpers import (
    BOOTS, CURRENT, DESIRED, MC_API, ROLE, STATE, boots, condition, create, delete, hosts, mc, nodes, pool,
    set_paused, wait, wait_pool,
)

pytestmark = [pytest.mark.twin, pytest.mark.slow]
WORKERS = ["worker-0", "worker-1", "worker-2"]


@pytest.fixture
def kube(twin):
    return twin.kube


class NodeWatch:
    """Records, from the API's node events, how many workers were down at once and who was cordoned."""

    def __init__(self, kube, names):
        self.kube = kube
        self.names = set(names)
        self.max_down = 0
        self.not_ready_seen = set()
        self.cordoned_while_not_ready = set()
        self._stop = threading.Event()
        listing = kube.list(path("v1", "nodes"))
        self.version = listing["metadata"]["resourceVersion"]
        self.state = {n["metadata"]["name"]: n for n in listing["items"]}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for kind, node in self.kube.watch(path("v1", "nodes"), self.version, timeout_seconds=120):
            if self._stop.is_set() or kind == "ERROR":
                return
            name = node["metadata"]["name"]
            self.state[name] = node
            down = [n for n in self.names if self._down(self.state[n])]
            self.max_down = max(self.max_down, len(down))
            for n in down:
                if not self._ready(self.state[n]):
                    self.not_ready_seen.add(n)
                    if self.state[n]["spec"].get("unschedulable"):
                        self.cordoned_while_not_ready.add(n)

    @staticmethod
    def _ready(node):
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def _down(self, node):
        return not self._ready(node) or node["spec"].get("unschedulable") or \
            node["metadata"]["annotations"].get(STATE) == "Working"

    def stop(self):
        self._stop.set()


def test_seeded_pools_are_rendered_and_nodes_run_them(kube):
    for name, members in (("master", 3), ("worker", 3)):
        p = pool(kube, name)
        target = p["spec"]["configuration"]["name"]
        assert target.startswith(f"rendered-{name}-") and len(target) == len(f"rendered-{name}-") + 32
        assert p["status"]["configuration"]["name"] == target
        assert {s["name"] for s in p["spec"]["configuration"]["source"]} >= {f"00-{name}", f"99-{name}-ssh"}
        assert p["status"]["machineCount"] == p["status"]["updatedMachineCount"] == members
        assert condition(p, "Updated")["status"] == "True" and condition(p, "Degraded")["status"] == "False"
        rendered = kube.get(path(MC_API, "machineconfigs", target))
        assert rendered["metadata"]["ownerReferences"][0]["kind"] == "MachineConfigPool"
        assert ROLE not in (rendered["metadata"].get("labels") or {})
    for name, node in nodes(kube).items():
        ann = node["metadata"]["annotations"]
        role = "master" if name.startswith("master") else "worker"
        assert ann[CURRENT] == ann[DESIRED] == pool(kube, role)["spec"]["configuration"]["name"]
        assert ann[STATE] == "Done" and int(ann[BOOTS]) >= 1
    assert pool(kube, "master")["spec"]["configuration"]["name"] != pool(kube, "worker")["spec"]["configuration"]["name"]


def test_machine_config_rolls_out_one_node_at_a_time_and_back(twin, kube):
    original = pool(kube, "worker")["spec"]["configuration"]["name"]
    before = boots(kube)
    watch = NodeWatch(kube, WORKERS)
    create(kube, mc("99-worker-t-rollout", "worker", ["twin.test=rollout"],
                    {"/etc/twin-test.conf": "rolled%20out%0A"}))
    try:
        p = wait_pool(kube, "worker", sources=["99-worker-t-rollout"])
        watch.stop()
        target = p["spec"]["configuration"]["name"]
        assert target != original
        rendered = kube.get(path(MC_API, "machineconfigs", target))["spec"]
        assert "twin.test=rollout" in rendered["kernelArguments"]
        assert any(f["path"] == "/etc/twin-test.conf" for f in rendered["config"]["storage"]["files"])
        after = boots(kube)
        assert {n: after[n] - before[n] for n in WORKERS} == {n: 1 for n in WORKERS}
        assert all(after[n] == before[n] for n in after if n.startswith("master"))
        assert watch.max_down == 1, "maxUnavailable 1: never two workers down at once"
        assert watch.not_ready_seen == set(WORKERS) and watch.cordoned_while_not_ready == set(WORKERS)
        state = hosts(twin)
        assert all("twin.test=rollout" in state[n]["cmdline"] for n in WORKERS)
        assert all(not n["spec"].get("unschedulable") for n in nodes(kube).values())
    finally:
        delete(kube, "99-worker-t-rollout")
    p = wait_pool(kube, "worker", absent=["99-worker-t-rollout"])
    assert p["spec"]["configuration"]["name"] == original, "same MachineConfigs render to the same name"
    assert all("twin.test=rollout" not in hosts(twin)[n]["cmdline"] for n in WORKERS)


def test_paused_pool_renders_but_defers_then_one_reboot_for_two_configs(kube):
    before = boots(kube)
    set_paused(kube, "worker", True)
    try:
        create(kube, mc("99-worker-t-paused-a", "worker", ["twin.test=a"]))
        create(kube, mc("99-worker-t-paused-b", "worker", ["twin.test=b"]))
        p = wait(kube, "machineconfigpools", lambda o: {"99-worker-t-paused-a", "99-worker-t-paused-b"} <= {
            s["name"] for s in o["worker"]["spec"]["configuration"]["source"]}
            and "paused" in condition(o["worker"], "Updating").get("message", ""), what="paused render")["worker"]
        assert condition(p, "Updating")["status"] == "False"
        assert condition(p, "Updated")["status"] == "False"
        assert all(n["metadata"]["annotations"][DESIRED] != p["spec"]["configuration"]["name"]
                   for name, n in nodes(kube).items() if name in WORKERS)
    finally:
        set_paused(kube, "worker", False)
    wait_pool(kube, "worker", sources=["99-worker-t-paused-a", "99-worker-t-paused-b"])
    after = boots(kube)
    assert {n: after[n] - before[n] for n in WORKERS} == {n: 1 for n in WORKERS}
    delete(kube, "99-worker-t-paused-a")
    delete(kube, "99-worker-t-paused-b")
    wait_pool(kube, "worker", absent=["99-worker-t-paused-a", "99-worker-t-paused-b"])


def custom_pool(kube, name, label):
    kube.create(path(MC_API, "machineconfigpools"), {
        "apiVersion": MC_API, "kind": "MachineConfigPool",
        "metadata": {"name": name, "labels": {f"pools.operator.machineconfiguration.openshift.io/{name}": ""}},
        "spec": {"machineConfigSelector": {"matchExpressions": [{"key": ROLE, "operator": "In", "values": [name, "worker"]}]},
                 "nodeSelector": {"matchLabels": {label: ""}}, "maxUnavailable": 1}})


def label(kube, node, key, value=""):
    kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {key: value}}})


def join(kube, name, node, key):
    """Label the node into the custom pool and wait until it runs the pool's config (one reboot)."""
    from tests.twin.mco_helpers import settled

    label(kube, node, key)
    wait(kube, "machineconfigpools", lambda o: name in o and (o[name].get("status") or {}).get("machineCount") == 1
         and settled(o[name]), what=f"{node} in pool {name}")


def remove_custom_pool(kube, name, node, key, configs=()):
    label(kube, node, key, None)
    wait(kube, "machineconfigpools", lambda o: (o[name].get("status") or {}).get("machineCount") == 0
         and o["worker"]["status"].get("machineCount") == 3, what=f"{node} back in worker")
    wait_pool(kube, "worker")
    kube.delete(path(MC_API, "machineconfigpools", name))
    for config in configs:
        delete(kube, config)


def test_custom_pool_takes_its_node_out_of_worker(twin, kube):
    before = boots(kube)
    custom_pool(kube, "t-custom", "twin.test/custom")
    create(kube, mc("99-t-custom-only", "t-custom", ["twin.test=custom"]))
    label(kube, "worker-2", "twin.test/custom")
    try:
        p = wait_pool(kube, "t-custom", sources=["99-t-custom-only", "00-worker"])
        assert p["status"]["machineCount"] == 1
        assert p["spec"]["configuration"]["name"].startswith("rendered-t-custom-")
        worker = wait(kube, "machineconfigpools", lambda o: o["worker"]["status"].get("machineCount") == 2,
                      what="worker without worker-2")["worker"]
        assert worker["status"]["updatedMachineCount"] == 2
        assert nodes(kube)["worker-2"]["metadata"]["annotations"][CURRENT] == p["spec"]["configuration"]["name"]
        state = hosts(twin)
        assert "twin.test=custom" in state["worker-2"]["cmdline"]
        assert "twin.test=custom" not in state["worker-1"]["cmdline"]
        after = boots(kube)
        assert after["worker-2"] - before["worker-2"] == 1 and after["worker-1"] == before["worker-1"]
    finally:
        remove_custom_pool(kube, "t-custom", "worker-2", "twin.test/custom", ["99-t-custom-only"])


def test_reboot_degrades_fault_degrades_the_pool_until_lifted(twin, kube):
    custom_pool(kube, "t-degraded", "twin.test/degraded")
    join(kube, "t-degraded", "worker-1", "twin.test/degraded")
    twin.set_faults([{"kind": "reboot-degrades", "node": "worker-1"}])
    try:
        create(kube, mc("99-t-degraded", "t-degraded", ["twin.test=degraded"]))
        p = wait(kube, "machineconfigpools", lambda o: condition(o["t-degraded"], "Degraded").get("status") == "True",
                 what="degraded pool")["t-degraded"]
        assert p["status"]["degradedMachineCount"] == 1
        assert "Node worker-1 is reporting" in condition(p, "NodeDegraded")["message"]
        assert condition(p, "NodeDegraded")["reason"] == "1 nodes are reporting degraded status on sync"
        ann = nodes(kube)["worker-1"]["metadata"]["annotations"]
        assert ann[STATE] == "Degraded" and ann["machineconfiguration.openshift.io/reason"]
        assert ann[CURRENT] != ann[DESIRED]
        assert "twin.test=degraded" not in hosts(twin)["worker-1"]["cmdline"]
    finally:
        twin.set_faults([])
    wait_pool(kube, "t-degraded", sources=["99-t-degraded"])
    assert "twin.test=degraded" in hosts(twin)["worker-1"]["cmdline"]
    remove_custom_pool(kube, "t-degraded", "worker-1", "twin.test/degraded", ["99-t-degraded"])


def test_pod_disruption_budget_blocks_the_drain_until_removed(twin, kube, namespace):
    custom_pool(kube, "t-drain", "twin.test/drain")
    join(kube, "t-drain", "worker-0", "twin.test/drain")
    kube.create(path("v1", "pods", namespace=namespace), {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guarded", "labels": {"app": "guarded"}},
        "spec": {"nodeName": "worker-0", "containers": [{"name": "c", "image": "registry.example.com/app:1"}]}})
    kube.create(path("policy/v1", "poddisruptionbudgets", namespace=namespace), {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    wait(kube, "poddisruptionbudgets", lambda o: "guard" in o and o["guard"].get("status", {}).get("currentHealthy") == 1,
         api_version="policy/v1", namespace=namespace, what="PDB status")
    before = boots(kube)["worker-0"]
    try:
        create(kube, mc("99-t-drain", "t-drain", ["twin.test=drain"]))
        wait(kube, "nodes", lambda o: o["worker-0"]["metadata"]["annotations"].get(STATE) == "Working", api_version="v1",
             what="worker-0 working")
        # The drain retries every few seconds; after two retries the pod is still there and the node up.
        with pytest.raises(AssertionError):
            wait(kube, "pods", lambda o: "guarded" not in o, timeout=12, api_version="v1", namespace=namespace)
        node = nodes(kube)["worker-0"]
        assert node["spec"].get("unschedulable") is True
        assert boots(kube)["worker-0"] == before
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        with pytest.raises(ApiError) as refused:
            kube.create(path("v1", "pods", "guarded", namespace, "eviction"), {
                "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "guarded", "namespace": namespace}})
        assert refused.value.status == 429
    finally:
        kube.delete(path("policy/v1", "poddisruptionbudgets", "guard", namespace))
    wait_pool(kube, "t-drain", sources=["99-t-drain"])
    assert boots(kube)["worker-0"] == before + 1
    remove_custom_pool(kube, "t-drain", "worker-0", "twin.test/drain", ["99-t-drain"])


def test_drain_blocked_fault_holds_the_node_until_lifted(twin, kube):
    custom_pool(kube, "t-fault-drain", "twin.test/fault-drain")
    join(kube, "t-fault-drain", "worker-1", "twin.test/fault-drain")
    before = boots(kube)["worker-1"]
    twin.set_faults([{"kind": "drain-blocked", "node": "worker-1"}])
    try:
        create(kube, mc("99-t-fault-drain", "t-fault-drain", ["twin.test=fault-drain"]))
        wait(kube, "nodes", lambda o: o["worker-1"]["metadata"]["annotations"].get(STATE) == "Working", api_version="v1",
             what="worker-1 working")
        with pytest.raises(AssertionError):  # two drain retries: still cordoned and up, not rebooted
            wait(kube, "nodes", lambda o: not o["worker-1"]["spec"].get("unschedulable"), timeout=11, api_version="v1")
        assert boots(kube)["worker-1"] == before
        assert pool(kube, "t-fault-drain")["status"]["unavailableMachineCount"] == 1
    finally:
        twin.set_faults([])
    wait_pool(kube, "t-fault-drain", sources=["99-t-fault-drain"])
    assert boots(kube)["worker-1"] == before + 1
    remove_custom_pool(kube, "t-fault-drain", "worker-1", "twin.test/fault-drain", ["99-t-fault-drain"])


# -- upstream's merge order, repeats and rebootless updates (issue 13) ---------------------------------


def _rendered(kube, name):
    return kube.get(path(MC_API, "machineconfigs", pool(kube, name)["spec"]["configuration"]["name"]))["spec"]


def _file(spec, file_path):
    from twin.controllers.mco import decode

    entry = next((f for f in spec["config"]["storage"]["files"] if f["path"] == file_path), None)
    return decode(entry["contents"]["source"]) if entry else None


def test_custom_pool_configs_merge_after_worker_ones_and_repeated_kargs_stay(kube):
    """MergeMachineConfigs: worker-role MachineConfigs first, then the pool's own, each by name; kargs
    concatenated. A nodeless custom pool and a paused worker pool: nothing reboots."""
    set_paused(kube, "worker", True)
    custom_pool(kube, "t-order", "twin.test/order")
    names = ["99-worker-t-order", "50-t-order-first"]
    try:
        create(kube, mc("99-worker-t-order", "worker", ["twin.dup", "twin.order=w"], {"/etc/twin-order.conf": "worker"}))
        create(kube, mc("50-t-order-first", "t-order", ["twin.dup"], {"/etc/twin-order.conf": "custom"}))
        p = wait(kube, "machineconfigpools", lambda o: "t-order" in o and set(names) <= {
            s["name"] for s in (o["t-order"]["spec"].get("configuration") or {}).get("source") or []},
            what="t-order render")["t-order"]
        order = [s["name"] for s in p["spec"]["configuration"]["source"]]
        assert order.index("99-worker-t-order") < order.index("50-t-order-first")
        # (97-/98-t-order-generated-kubelet are there too when the controllers started after the pool was made.)
        own = [n for n in order if "t-order" in n and not n.startswith("99-worker")]
        assert order == sorted(n for n in order if n not in own) + sorted(own) and "50-t-order-first" in own
        spec = _rendered(kube, "t-order")
        assert _file(spec, "/etc/twin-order.conf") == "custom", "the custom pool's MachineConfig wins"
        assert spec["kernelArguments"][-3:] == ["twin.dup", "twin.order=w", "twin.dup"]
    finally:
        for name in names:
            delete(kube, name)
        kube.delete(path(MC_API, "machineconfigpools", "t-order"))
        set_paused(kube, "worker", False)
    wait_pool(kube, "worker", absent=names)


def test_disruption_follows_the_default_node_disruption_policies():
    from twin.controllers.mco import disruption

    def spec(files=(), kargs=(), units=()):
        return {"kernelArguments": list(kargs), "osImageURL": "x", "extensions": [], "config": {
            "storage": {"files": [{"path": p, "contents": {"source": "data:," + t}} for p, t in files]},
            "systemd": {"units": [{"name": u} for u in units]}}}

    base = spec()
    assert disruption(base, spec(files=[("/etc/containers/registries.d/t.yaml", "a")])) == (
        ["Reload crio.service"], False)
    assert disruption(base, spec(files=[("/var/lib/kubelet/config.json", "a")])) == (["None"], False)
    assert disruption(base, spec(files=[("/etc/containers/registries.conf", "a")]))[1] is True
    assert disruption(base, spec(files=[("/etc/crio/crio.conf.d/01-ctrcfg-logLevel", "a")])) == (["Reboot"], True)
    assert disruption(base, spec(kargs=["a"])) == (["Reboot"], True)
    assert disruption(base, spec(units=["t.service"])) == (["Reboot"], True)
    assert disruption(spec(kargs=["a"]), spec(kargs=["a"])) == (["None"], False)
    assert disruption(None, base) == (["Reboot"], True)


def test_file_only_change_under_a_policy_applies_without_reboot_or_drain(twin, kube):
    before = boots(kube)
    watch = NodeWatch(kube, WORKERS)
    target = "/etc/containers/registries.d/twin-test.yaml"
    create(kube, mc("99-worker-t-rebootless", "worker", files={target: "docker%3A%20%7B%7D%0A"}))
    try:
        p = wait_pool(kube, "worker", sources=["99-worker-t-rebootless"])
        watch.stop()
        assert boots(kube) == before, "no reboot"
        assert not watch.not_ready_seen and not watch.cordoned_while_not_ready
        assert all(not n["spec"].get("unschedulable") for n in nodes(kube).values())
        assert all(nodes(kube)[n]["metadata"]["annotations"][CURRENT] == p["spec"]["configuration"]["name"]
                   for n in WORKERS)
    finally:
        delete(kube, "99-worker-t-rebootless")
    wait_pool(kube, "worker", absent=["99-worker-t-rebootless"])
    assert boots(kube) == before


def test_machine_configs_keeps_a_file_a_custom_pool_config_overrides(twin, kube, run_playbook):
    """A worker MachineConfig has our vsock file, a kata-oc-style one overrides it: upstream merges the pool's own
    after the worker ones, so ours must still carry the file (the module must not call it 'provided')."""
    from plugins.module_utils.machine_config import host_machine_configs

    ours = host_machine_configs("t-vsock", "tdx", iommu=False)[0]
    vsock = ours["spec"]["config"]["storage"]["files"][0]
    worker = mc("99-worker-t-vsock", "worker")
    worker["spec"]["config"]["storage"] = {"files": [vsock]}
    override = mc("50-t-vsock-override", "t-vsock", files={vsock["path"]: "%23%20off%0A"})
    names = ["99-worker-t-vsock", "50-t-vsock-override", ours["metadata"]["name"]]
    set_paused(kube, "worker", True)
    custom_pool(kube, "t-vsock", "twin.test/vsock")
    try:
        create(kube, worker)
        create(kube, override)
        run = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [{
            "confidential.gpu.machine_configs": {"pool": "t-vsock", "machine_configs": [ours], "render_timeout": 60}}]}],
            env=twin.env())
        assert run.rc == 0, run.stdout[-2000:]
        spec = _rendered(kube, "t-vsock")
        assert _file(spec, vsock["path"]) == "vsock-loopback\n"
    finally:
        for name in names:
            try:
                delete(kube, name)
            except ApiError:
                pass
        kube.delete(path(MC_API, "machineconfigpools", "t-vsock"))
        set_paused(kube, "worker", False)
    wait_pool(kube, "worker", absent=names)


GENERATED_BY = "machineconfiguration.openshift.io/generated-by-controller-version"
CGROUP_V2_KARGS = ["systemd.unified_cgroup_hierarchy=1", 'cgroup_no_v1="all"']


def _generated(name):
    return [f"97-{name}-generated-kubelet", f"98-{name}-generated-kubelet"]


def test_generated_machine_configs_as_the_mco_writes_them(twin, kube):
    """openshift/machine-config-operator release-4.21: the kubelet-config controller writes
    97-/98-<pool>-generated-kubelet for every pool (cgroup v2 kernel arguments only for master and worker), the
    container-runtime-config controller 99-<pool>-generated-registries for the built-in pools only. Neither
    watches pools: a new custom pool gets its kubelet ones at the next FeatureGate change (or MCC restart), and
    as they say what the worker ones say, its rendered config stays the same and nothing reboots (a node moving
    into a pool whose config equals worker's does not reboot either: the daemon finds no difference)."""
    for name in ("master", "worker"):
        p = pool(kube, name)
        assert "machineconfiguration.openshift.io/mco-built-in" in p["metadata"]["labels"]
        wanted = set(_generated(name) + [f"99-{name}-generated-registries"])
        assert wanted <= {s["name"] for s in p["spec"]["configuration"]["source"]}
        for mc_name in wanted:
            generated = kube.get(path(MC_API, "machineconfigs", mc_name))
            assert generated["metadata"]["labels"][ROLE] == name
            assert GENERATED_BY in generated["metadata"]["annotations"]
        assert kube.get(path(MC_API, "machineconfigs", f"97-{name}-generated-kubelet"))["spec"][
            "kernelArguments"] == CGROUP_V2_KARGS
        assert _rendered(kube, name)["kernelArguments"][:2] == CGROUP_V2_KARGS
    assert "/etc/containers/registries.conf" in {
        f["path"] for f in _rendered(kube, "worker")["config"]["storage"]["files"]}
    # The MCO twin's controllers are running (only they write RenderDegraded): a pool made before they start
    # would get its kubelet MachineConfigs at their start, as at a machine-config-controller restart.
    wait(kube, "machineconfigpools", lambda o: condition(o["worker"], "RenderDegraded"), what="MCO controllers")
    before = boots(kube)
    custom_pool(kube, "t-gen", "twin.test/gen")
    gate = path("config.openshift.io/v1", "featuregates", "cluster")
    try:
        join(kube, "t-gen", "worker-2", "twin.test/gen")
        first = pool(kube, "t-gen")["spec"]["configuration"]
        assert set(_generated("worker") + ["99-worker-generated-registries"]) <= {s["name"] for s in first["source"]}
        configs = {m["metadata"]["name"] for m in kube.list(path(MC_API, "machineconfigs"))["items"]}
        assert not configs & set(_generated("t-gen") + ["99-t-gen-generated-registries"]), "no pool handler"
        # Any spec change of FeatureGate cluster makes the controller write them for every pool there is.
        kube.merge_patch(gate, {"spec": {"customNoUpgrade": {"enabled": ["TwinTestGate"]}}})
        p = wait_pool(kube, "t-gen", sources=_generated("t-gen"))
        assert p["spec"]["configuration"]["name"] == first["name"], "same content, same rendered config"
        mine = kube.get(path(MC_API, "machineconfigs", "97-t-gen-generated-kubelet"))
        assert mine["metadata"]["labels"][ROLE] == "t-gen" and not mine["spec"].get("kernelArguments")
        assert kube.get_or_none(path(MC_API, "machineconfigs", "99-t-gen-generated-registries")) is None
        # worker-2 moved into a pool whose config says what worker's says: no reboot then, none now.
        assert nodes(kube)["worker-2"]["metadata"]["annotations"][CURRENT] == first["name"]
        assert boots(kube) == before
    finally:
        kube.merge_patch(gate, {"spec": {"customNoUpgrade": None}})
        remove_custom_pool(kube, "t-gen", "worker-2", "twin.test/gen", _generated("t-gen"))
