"""Reboots per node: the tee_hosts role against the manual guide's one-MachineConfig-at-a-time order.

``python -m tests.bench.reboots`` starts its own twin (3 Intel TDX workers), then in one run:

1. runs the tee_hosts role (TDX kernel arguments and vsock loopback, IOMMU) and counts each worker's
   reboots from the ``twin.confidential.gpu/boots`` node annotation;
2. removes those MachineConfigs again and waits for the pool to settle;
3. applies the very same MachineConfigs as the guides do: the TDX one, wait for the rollout, then
   the IOMMU one, wait again; and counts the reboots the same way.

Prints both, with the time each took on the twin (reboots last ``timings.reboot`` seconds), and
exits non-zero unless the role rebooted every worker exactly once.

Then the whole bring-up, host configuration and OpenShift sandboxed containers together:

4. on that same twin the manual flow goes on as the guides do: NFD, then OSC with its feature gates
   and a KataConfig, whose own rollout reboots every worker again;
5. on a second, fresh twin the collection's sequence (``tests/twin/sandboxed/bringup.yml``: nfd,
   tee_hosts for the ``kata-oc`` role before OSC creates that pool, sandboxed_containers,
   gpu_operator, sandboxed_containers again for the GPU runtime class) runs once.

Prints the reboots of the whole sequence beside the manual flow's, and exits non-zero unless the
collection's sequence rebooted every worker exactly once. During it, as soon as OSC creates ``kata-oc``, the
bench changes FeatureGate ``cluster``'s spec, so the MCO twin's kubelet-config controller writes
``97-``/``98-kata-oc-generated-kubelet`` racing the pool's first render (upstream writes them for a new pool only
at such a change or a controller restart); the worker ones and ``99-worker-generated-registries`` are in kata-oc's
render through its selector (upstream writes registries only for built-in pools). It prints kata-oc's generated
MachineConfigs and rendered configs, and what the sandboxed_containers role does with a CRI-O log level other
than ``info`` (OSC's ContainerRuntimeConfig; ``tests/twin/sandboxed/test_osc_twin.py`` measures both orders of it).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "collections"))
sys.path.insert(0, str(REPO))

from ansible_collections.confidential.gpu.plugins.module_utils.machine_config import host_machine_configs  # noqa: E402
from tests.twin.mco_helpers import boots, create, delete, wait_pool  # noqa: E402
from twin.cluster import Cluster  # noqa: E402
from twin.kube import path  # noqa: E402

PROFILE = "default"
PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: confidential.gpu.tee_hosts
"""


def workers(kube):
    return sorted(n["metadata"]["name"] for n in kube.list(path("v1", "nodes"), labelSelector="node-role.kubernetes.io/worker")["items"])


def run_role(cluster, tmp):
    playbook = Path(tmp) / "tee_hosts.yml"
    playbook.write_text(PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"),
               ANSIBLE_HOME=str(REPO / "build" / "ansible-home"), K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook)], env=env, capture_output=True, text=True, cwd=REPO, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"tee_hosts role failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return [line.strip() for line in proc.stdout.splitlines() if "nodes updated" in line and line.strip().startswith("[")]


BRINGUP = REPO / "tests" / "twin" / "sandboxed" / "bringup.yml"
# The guides' OSC step: the operator, the feature gates ConfigMap, a KataConfig, and waiting for it.
MANUAL_OSC = """
- hosts: localhost
  gather_facts: false
  tasks:
    - confidential.gpu.olm_operator:
        name: sandboxed-containers-operator
    - kubernetes.core.k8s:
        definition:
          {apiVersion: v1, kind: ConfigMap,
           metadata: {name: osc-feature-gates, namespace: openshift-sandboxed-containers-operator},
           data: {confidential: "true"}}
    - kubernetes.core.k8s:
        definition:
          {apiVersion: kataconfiguration.openshift.io/v1, kind: KataConfig,
           metadata: {name: example-kataconfig}, spec: {checkNodeEligibility: true}}
    - confidential.gpu.kata_config_wait:
        name: example-kataconfig
"""


def run_playbook(cluster, tmp, playbook, what):
    """ansible-playbook against the twin; the progress lines it printed."""
    if "\n" in str(playbook):
        file = Path(tmp) / f"{what}.yml"
        file.write_text(playbook)
        playbook = file
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"),
               ANSIBLE_HOME=str(REPO / "build" / "ansible-home"), K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook)], env=env, capture_output=True, text=True, cwd=REPO, timeout=1800, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return [line.strip() for line in proc.stdout.splitlines() if "nodes updated" in line and line.strip().startswith("[")]


MC_API = "machineconfiguration.openshift.io/v1"
FEATURE_GATE = path("config.openshift.io/v1", "featuregates", "cluster")


def touch_feature_gate_when_kata_oc_appears(kube, seen):
    """Change FeatureGate cluster's spec as soon as OSC has created kata-oc: the MCO's kubelet-config controller
    then writes 97-/98-kata-oc-generated-kubelet (it has no pool handler, so a new pool gets them only at such
    a change or a controller restart), racing kata-oc's first render."""
    pools = path(MC_API, "machineconfigpools")
    listing = kube.list(pools)
    if not any(p["metadata"]["name"] == "kata-oc" for p in listing["items"]):
        for kind, obj in kube.watch(pools, listing["metadata"]["resourceVersion"], timeout_seconds=1800):
            if kind == "ERROR":
                return
            if kind == "ADDED" and obj["metadata"]["name"] == "kata-oc":
                break
    kube.merge_patch(FEATURE_GATE, {"spec": {"customNoUpgrade": {"enabled": ["BenchGate"]}}})
    seen["touched"] = time.monotonic()


def generated_view(kube):
    """kata-oc's rendered source: the MCO-generated MachineConfigs in it, and how many rendered configs it had."""
    pool = kube.get(path(MC_API, "machineconfigpools", "kata-oc"))
    source = [s["name"] for s in pool["spec"]["configuration"]["source"]]
    rendered = sorted(m["metadata"]["name"] for m in kube.list(path(MC_API, "machineconfigs"))["items"]
                      if m["metadata"]["name"].startswith("rendered-kata-oc-"))
    return {"generated": [n for n in source if "-generated-" in n], "rendered": rendered,
            "target": pool["spec"]["configuration"]["name"]}


LOG_LEVEL_PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: confidential.gpu.sandboxed_containers
      sandboxed_containers_log_level: debug
"""


def log_level_refusal(cluster, tmp):
    """What the sandboxed_containers role does with a CRI-O log level other than info (not accepted)."""
    file = Path(tmp) / "log-level.yml"
    file.write_text(LOG_LEVEL_PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"),
               ANSIBLE_HOME=str(REPO / "build" / "ansible-home"), K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(file)], env=env, capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    line = next((ln.strip() for ln in proc.stdout.splitlines() if "sandboxed_containers_log_level is" in ln), "")
    return proc.returncode, line


def whole_bring_up(tmp):
    """The collection's whole sequence on a fresh twin: reboots per worker, seconds, progress lines, kata-oc's
    generated MachineConfigs, and what the role does with a non-info log level."""
    import threading

    cluster = Cluster("bench-reboots-whole", Path(tmp) / "twin-whole")
    cluster.up(PROFILE, log=lambda msg: None)
    try:
        kube = cluster.kube("admin")
        names = workers(kube)
        seen = {}
        toucher = threading.Thread(target=touch_feature_gate_when_kata_oc_appears, args=(cluster.kube("admin"), seen),
                                   daemon=True)
        toucher.start()
        result = measure(kube, names, lambda: run_playbook(cluster, tmp, BRINGUP, "bring-up"))
        toucher.join(timeout=5)
        view = generated_view(kube)
        view["touched"] = "touched" in seen
        view["log_level"] = log_level_refusal(cluster, tmp)
        return result + (view,)
    finally:
        cluster.down()


def measure(kube, names, action):
    before = boots(kube)
    started = time.monotonic()
    extra = action()
    seconds = time.monotonic() - started
    after = boots(kube)
    return {n: after[n] - before[n] for n in names}, seconds, extra


def main():
    definitions = host_machine_configs("worker", "tdx")
    with tempfile.TemporaryDirectory(prefix="bench-reboots-") as tmp:
        cluster = Cluster("bench-reboots", Path(tmp) / "twin")
        cluster.up(PROFILE, log=lambda msg: None)
        try:
            kube = cluster.kube("admin")
            names = workers(kube)
            role, role_s, progress = measure(kube, names, lambda: run_role(cluster, tmp))

            for definition in definitions:
                delete(kube, definition["metadata"]["name"])
            wait_pool(kube, "worker", absent=[d["metadata"]["name"] for d in definitions], timeout=300)

            def guide():
                for definition in definitions:  # as the guides list them: apply, wait for the rollout, next
                    create(kube, definition)
                    wait_pool(kube, "worker", sources=[definition["metadata"]["name"]], timeout=300)

            manual, manual_s, _lines = measure(kube, names, guide)
            # The guides go on with NFD and OSC; the KataConfig's rollout is one more reboot per worker.
            nfd_play = "- hosts: localhost\n  gather_facts: false\n  roles: [confidential.gpu.nfd]\n"
            run_playbook(cluster, tmp, nfd_play, "nfd")
            manual_osc, manual_osc_s, _lines = measure(kube, names, lambda: run_playbook(cluster, tmp, MANUAL_OSC, "osc"))
        finally:
            cluster.down()
        whole, whole_s, whole_progress, view = whole_bring_up(tmp)

    width = max(len(n) for n in names)
    print(f"reboots per node on profile {PROFILE!r} ({len(names)} TDX workers), same MachineConfigs: "
          f"{', '.join(d['metadata']['name'] for d in definitions)}")
    print(f"  {'node':<{width}}  tee_hosts role  manual guide (one MachineConfig at a time)")
    for n in names:
        print(f"  {n:<{width}}  {role[n]:>14}  {manual[n]:>12}")
    total_role, total_manual = sum(role.values()), sum(manual.values())
    print(f"  {'total':<{width}}  {total_role:>14}  {total_manual:>12}   ratio {total_manual / max(total_role, 1):.1f}x")
    print(f"  time on the twin: role {role_s:.1f}s (incl. two probes), manual {manual_s:.1f}s")
    # Nodes of a pool reboot one at a time, so on real hardware the rollout time grows with the reboots.
    print(f"  on real hosts at ~10 min per drain and reboot: role ~{total_role * 10} min, "
          f"manual ~{total_manual * 10} min of rollout")
    print("  role progress lines:")
    for line in progress:
        print("    " + line)
    manual_whole = {n: manual[n] + manual_osc[n] for n in names}
    print()
    print(f"reboots per node for the whole bring-up (host MachineConfigs and the KataConfig's rollout) on profile "
          f"{PROFILE!r}")
    print(f"  {'node':<{width}}  collection sequence  manual flow (guide's MachineConfigs, then KataConfig)")
    for n in names:
        print(f"  {n:<{width}}  {whole[n]:>19}  {manual_whole[n]:>11} ({manual[n]} + {manual_osc[n]})")
    total_whole, total_manual_whole = sum(whole.values()), sum(manual_whole.values())
    print(f"  {'total':<{width}}  {total_whole:>19}  {total_manual_whole:>11}   "
          f"ratio {total_manual_whole / max(total_whole, 1):.1f}x")
    print(f"  time on the twin: collection sequence {whole_s:.1f}s (nfd, tee_hosts, sandboxed_containers, "
          f"gpu_operator, probes), manual {manual_s + manual_osc_s:.1f}s (rollouts only)")
    print(f"  on real hosts at ~10 min per drain and reboot: collection ~{total_whole * 10} min, "
          f"manual ~{total_manual_whole * 10} min of rollout")
    print("  collection progress lines:")
    for line in whole_progress:
        print("    " + line)
    print("  kata-oc's MCO-generated MachineConfigs (worker ones through its selector, its own kubelet ones after a "
          f"FeatureGate change {'made' if view['touched'] else 'NOT made'} when the pool appeared):")
    print("    " + ", ".join(view["generated"]))
    print(f"  rendered configs of kata-oc: {len(view['rendered'])} ({', '.join(view['rendered'])}); "
          f"target {view['target']}")
    rc, line = view["log_level"]
    print(f"  sandboxed_containers with sandboxed_containers_log_level=debug: exit {rc}, "
          f"{'refused: ' + line if line else 'no refusal seen'}")
    failed = 0
    if any(v != 1 for v in role.values()):
        print(f"FAIL: the role must reboot every worker exactly once, got {role}")
        failed = 1
    if any(v != 1 for v in whole.values()):
        print(f"FAIL: the whole bring-up must reboot every worker exactly once, got {whole}")
        failed = 1
    if not {"97-kata-oc-generated-kubelet", "98-kata-oc-generated-kubelet", "99-worker-generated-registries"} <= set(
            view["generated"]):
        print(f"FAIL: kata-oc's render lacks the MCO-generated MachineConfigs it should have: {view['generated']}")
        failed = 1
    if rc == 0 or not line:
        print("FAIL: the role did not refuse a non-info log level")
        failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
