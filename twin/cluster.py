"""One twin cluster: bring it up from a profile, report on it, take it down (by PID)."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from . import build, crds, profile as profiles
from .controlplane import ControlPlane, alive, parent_death_signal
from .kube import Kube, path
from .kubelet import NodeAgent
from .paths import state_root
from .controllers import seed_all as seed_controllers
from .seed import node_object, seed
from .world import World


class Cluster:
    def __init__(self, name="default", state_dir=None, die_with_parent=True):
        """``die_with_parent``: the cluster's processes end when this process does (test sessions);
        the CLI's clusters outlive ``twin up`` and end with ``twin down``."""
        self.name = name
        self.state = Path(state_dir) if state_dir else state_root() / name
        self.cp = ControlPlane(self.state, build.bin_dir(), die_with_parent)

    @property
    def kubeconfig(self):
        return self.state / "admin.kubeconfig"

    def info(self):
        return self.cp.info() if self.cp.info_file.exists() else None

    def running(self):
        info = self.info()
        return bool(info and info.get("processes") and all(alive(p) for p in info["processes"].values()))

    def kube(self, user="admin"):
        info = self.info()
        pki = self.state / "pki"
        return Kube(info["server"], pki / "ca.crt", pki / f"{user}.crt", pki / f"{user}.key")

    # -- up ---------------------------------------------------------------------------------------

    def up(self, profile="default", conformance=None, log=None):
        log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if self.running():
            raise RuntimeError(f"twin {self.name!r} is already up (state in {self.state}); run 'twin down' first")
        spec = profile if isinstance(profile, dict) else profiles.load(profile)
        started = time.monotonic()
        build.ensure_binaries(log=log)
        for attempt in range(3):
            if self.state.exists():
                self.cp.stop()
                shutil.rmtree(self.state)
            self.state.mkdir(parents=True)
            (self.state / "profile.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
            info = self.cp.prepare()
            info["profile"] = spec["name"]
            info["conformance"] = str(conformance) if conformance else None
            self.cp._save(info)
            try:
                self.cp.start(log=log)
                break
            except RuntimeError as exc:
                # Free ports are picked before the processes bind them; on a busy machine another
                # process can take one in between. Pick new ones.
                if "address already in use" not in str(exc) or attempt == 2:
                    self.cp.stop()
                    raise
                log("twin: a port was taken meanwhile; starting again with new ports")
        bridge = threading.Event()
        try:
            kube = self.kube("twin")
            crds.install(kube, crds.definitions(conformance))
            # Kubelets heartbeat from the moment they register. The controllers' process starts only
            # once everything is seeded (the MCO twin's seed annotates the registered nodes), which
            # with a thousand nodes takes longer than the node lifecycle controller waits (40 s
            # without a Lease renewal: Ready Unknown, unreachable taints). So this process renews
            # the Leases meanwhile, until the controllers' own kubelet twin has settled the nodes.
            agent = NodeAgent(World(spec, kube), bridge)
            threading.Thread(target=agent.run, name="kubelet-leases-bring-up", daemon=True).start()
            seed(kube, spec, info["ports"]["kubelet"])
            seed_controllers(kube, spec)
            self._start_runtime()
            # Taint removals of 1000 nodes go through kube-controller-manager's client rate limit.
            self._wait_settled(kube, spec, deadline=time.monotonic() + 120 + 0.25 * len(spec["nodes"]))
        except BaseException:
            log(f"twin: bring-up failed; logs are in {self.state / 'logs'}")
            self.cp.stop()
            raise
        finally:
            bridge.set()
        log(f"twin: {self.name} up in {time.monotonic() - started:.1f}s "
            f"(profile {spec['name']}, {len(spec['nodes'])} nodes, "
            f"{'real upstream CRDs from ' + str(conformance) if conformance else 'twin CRDs'})")
        return self.kubeconfig

    def _start_runtime(self):
        info = self.cp.info()
        repo = Path(__file__).resolve().parent.parent
        argv = [sys.executable, "-m", "twin.runtime", "--state", str(self.state)]
        log = open(self.state / "logs" / "twin-controllers.log", "ab")
        proc = subprocess.Popen(argv, cwd=repo, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True,
                                preexec_fn=parent_death_signal if self.cp.die_with_parent else None)
        log.close()
        from .controlplane import _start_time
        info["processes"]["twin-controllers"] = {"pid": proc.pid, "start": _start_time(proc.pid), "argv0": argv[0]}
        self.cp._save(info)

    def _wait_settled(self, kube, spec, deadline):
        """Every node Ready and carrying only the taints it registered with (the node lifecycle
        controller's not-ready/unreachable taints gone), and the default ServiceAccount exists (KCM runs)."""
        port = self.cp.info()["ports"]["kubelet"]
        registered = {n["name"]: _taints(node_object(n, spec, port)) for n in spec["nodes"]}
        nodes_path = path("v1", "nodes")
        seen = "no nodes listed yet"
        listing = kube.list(nodes_path)
        version = listing["metadata"]["resourceVersion"]
        unsettled = set(registered)
        for node in listing["items"]:
            if _settled(node, registered):
                unsettled.discard(node["metadata"]["name"])
        while unsettled:
            self.cp.check_alive(list(self.info()["processes"]))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"twin nodes not Ready and untainted in time: {len(unsettled)} of "
                                   f"{len(registered)}, e.g. {sorted(unsettled)[:5]}; last seen: {seen}")
            for kind, node in kube.watch(nodes_path, version, timeout_seconds=max(1, min(10, int(remaining)))):
                if kind == "ERROR":
                    break
                version = node["metadata"].get("resourceVersion", version)
                if kind == "BOOKMARK":  # only a resourceVersion, no object (large lists send them)
                    continue
                name = node["metadata"]["name"]
                if name not in registered:
                    continue
                ok = _settled(node, registered)
                (unsettled.discard if ok else unsettled.add)(name)
                seen = f"{name} {'Ready' if _ready(node) else 'not Ready'}, taints {sorted(_taints(node))}"
                if not unsettled:
                    break
        sa_path = path("v1", "serviceaccounts", namespace="default")
        listing = kube.list(sa_path)
        if any(s["metadata"]["name"] == "default" for s in listing["items"]):
            return
        for kind, sa in kube.watch(sa_path, listing["metadata"]["resourceVersion"],
                                   timeout_seconds=max(1, int(deadline - time.monotonic()))):
            if kind != "BOOKMARK" and sa["metadata"].get("name") == "default":
                return
        raise RuntimeError("kube-controller-manager did not create the default ServiceAccount in time")

    # -- down and status ----------------------------------------------------------------------------

    def down(self):
        """Stop every process by PID; returns the names of any that survived (should be none)."""
        survivors = self.cp.stop()
        data = self.state / "etcd"
        if data.exists():
            shutil.rmtree(data, ignore_errors=True)
        return [name for name, still in survivors.items() if still]

    def status(self):
        info = self.info()
        if not info:
            return {"name": self.name, "state": str(self.state), "up": False, "processes": {}}
        procs = {name: {"pid": p["pid"], "running": alive(p)} for name, p in info.get("processes", {}).items()}
        result = {"name": self.name, "state": str(self.state), "server": info["server"],
                  "profile": info.get("profile"), "conformance": info.get("conformance"),
                  "kubeconfig": str(self.kubeconfig), "processes": procs,
                  "up": bool(procs) and all(p["running"] for p in procs.values())}
        if result["up"]:
            try:
                nodes = self.kube().list(path("v1", "nodes"))["items"]
                result["nodes"] = {n["metadata"]["name"]: "Ready" if _ready(n) else "NotReady" for n in nodes}
            except Exception as exc:  # report, don't crash, on a half-dead twin
                result["error"] = str(exc)
            hosts = self.state / "hosts.json"
            if hosts.exists():
                result["hosts"] = json.loads(hosts.read_text())
        return result


def _taints(node):
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or ()}


def _settled(node, registered):
    return _ready(node) and _taints(node) <= registered.get(node["metadata"]["name"], set())


def _ready(node):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def dump(obj):
    return json.dumps(obj, indent=2)
