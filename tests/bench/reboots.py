"""Reboots per node: the tee_hosts role against the manual guide's one-MachineConfig-at-a-time order.

``python -m tests.bench.reboots`` starts its own twin (3 Intel TDX workers), then in one run:

1. runs the tee_hosts role (TDX kernel arguments and vsock loopback, IOMMU) and counts each worker's
   reboots from the ``twin.confidential.gpu/boots`` node annotation;
2. removes those MachineConfigs again and waits for the pool to settle;
3. applies the very same MachineConfigs as the guides do: the TDX one, wait for the rollout, then
   the IOMMU one, wait again; and counts the reboots the same way.

Prints both, with the time each took on the twin (reboots last ``timings.reboot`` seconds), and
exits non-zero unless the role rebooted every worker exactly once.
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
                           str(playbook)], env=env, capture_output=True, text=True, cwd=REPO, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"tee_hosts role failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return [line.strip() for line in proc.stdout.splitlines() if "nodes updated" in line and line.strip().startswith("[")]


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

            manual, manual_s, _ = measure(kube, names, guide)
        finally:
            cluster.down()

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
    if any(v != 1 for v in role.values()):
        print(f"FAIL: the role must reboot every worker exactly once, got {role}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
