"""The kubelet twin keeps every node's health signals as a thousand kubelets would.

kube-controller-manager's node lifecycle controller (kubernetes@v1.34
pkg/controller/nodelifecycle/node_lifecycle_controller.go, ``tryUpdateNodeHealth``) sets a node's
Ready condition to Unknown, and taints it ``node.kubernetes.io/unreachable``, when neither its Lease
nor its Ready heartbeat moved for ``nodeMonitorGracePeriod`` (40 s by default), or when a new node
has posted no Ready condition within ``nodeStartupGracePeriod`` (60 s). These tests hold the twin
to what real kubelets do about that, with a fake API whose requests are slow, not a real cluster.
"""

import threading
import time

from twin import kubelet, seed
from twin.kube import ApiError


class _Host:
    def __init__(self, name, ready=True):
        self.name = name
        self.ready = ready


class _World:
    def __init__(self, kube, names):
        self.kube = kube
        self.hosts = {n: _Host(n) for n in names}
        self.timings = {}

    def host(self, name):
        return self.hosts.get(name)

    def subscribe(self, fn):
        pass


class _SlowKube:
    """Every request takes ``latency`` seconds of waiting (an API server under load), no CPU."""

    def __init__(self, latency):
        self.latency = latency
        self.lock = threading.Lock()
        self.renewals = {}  # lease name -> monotonic times it was renewed
        self.status_writes = []

    def _wait(self):
        threading.Event().wait(self.latency)

    def merge_patch(self, p, body):
        self._wait()
        if "/leases/" in p:
            with self.lock:
                self.renewals.setdefault(p.rsplit("/", 1)[1], []).append(time.monotonic())
        return {}

    def replace(self, p, body):
        return self.merge_patch(p, body)

    def create(self, p, body, **params):
        self._wait()
        return body

    def get(self, p, **params):
        self._wait()
        raise ApiError(404, "{}", "GET", p)

    def request(self, method, p, body=None, **kwargs):
        self._wait()
        with self.lock:
            self.status_writes.append((p, body))
        return {}


def test_a_thousand_leases_are_each_renewed_every_interval_although_every_request_is_slow():
    # 1000 nodes, 40 ms a request: one after the other that is 40 s a round, as long as the lease
    # lasts; a real cluster's kubelets renew in parallel, each every 10 s (a quarter of the lease).
    names = [f"node-{i}" for i in range(1000)]
    kube = _SlowKube(latency=0.04)
    stop = threading.Event()
    agent = kubelet.NodeAgent(_World(kube, names), stop, renew_every=2.0)
    thread = threading.Thread(target=agent.run, daemon=True)
    started = time.monotonic()
    thread.start()
    stop.wait(5.0)
    stop.set()
    thread.join(5)
    late = {}
    for name in names:
        times = [started] + kube.renewals.get(name, [])
        gaps = [b - a for a, b in zip(times, times[1:])] + [started + 5.0 - times[-1]]
        if max(gaps) > 3.0:  # the interval and half again: what a lease of 4 intervals tolerates easily
            late[name] = round(max(gaps), 1)
    assert not late, f"{len(late)} of {len(names)} leases went longer than 3 s unrenewed, e.g. {list(late.items())[:3]}"


def _node(name, ready_status, reason="KubeletReady"):
    pressure = "Unknown" if ready_status == "Unknown" else "False"  # the controller marks all four
    return {"metadata": {"name": name}, "status": {"conditions": [
        {"type": kind, "status": status, "reason": reason,
         "lastHeartbeatTime": "2026-12-02T00:00:00Z", "lastTransitionTime": "2026-12-02T00:00:00Z"}
        for kind, status in (("MemoryPressure", pressure), ("DiskPressure", pressure), ("PIDPressure", pressure),
                             ("Ready", ready_status))]}}


class _Cache:
    def __init__(self, nodes):
        self.nodes = {n["metadata"]["name"]: n for n in nodes}

    def get(self, name, namespace=None):
        return self.nodes.get(name)

    def items(self):
        return list(self.nodes.values())


class _Manager:
    def __init__(self, nodes):
        self.cache = _Cache(nodes)

    def informer(self, api_version, plural):
        assert (api_version, plural) == ("v1", "nodes")
        return self.cache


def test_a_node_the_node_lifecycle_controller_marked_unknown_is_reported_ready_again():
    # The kubelet posts its status whenever what it would post differs from the Node's
    # (tryUpdateNodeStatus / nodeStatusHasChanged in kubernetes@v1.34 pkg/kubelet/kubelet_node_status.go),
    # so a node that lagged once does not stay Unknown, and tainted, for good.
    kube = _SlowKube(latency=0)
    world = _World(kube, ["a", "b", "c"])
    world.hosts["c"].ready = False
    reporter = kubelet.NodeStatusReporter(world)
    reporter.manager = _Manager([
        _node("a", "Unknown", reason="NodeStatusUnknown"),
        _node("b", "True"),
        _node("c", "False", reason="KubeletNotReady"),
    ])
    for name in ("a", "b", "c"):
        reporter.reconcile((None, name))
    written = [p.split("/")[-2] for p, _body in kube.status_writes]
    assert written == ["a"], f"status written for {written}; only node a differs from its host"
    ready = [c for c in kube.status_writes[0][1]["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"


def test_a_registered_node_carries_its_ready_condition_from_the_start():
    # A kubelet posts its first status right after registering (registerWithAPIServer, then
    # syncNodeStatus): a node seeded without a Ready condition counts as never updated.
    profile = {"openshift": {"version": "4.21.9"}, "nodes": []}
    node = {"name": "w", "roles": ["worker"], "cpu": {"cores": 8}, "memory_gib": 16}
    status = seed.node_object(node, profile, 10250)["status"]
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", status["conditions"]


def test_a_report_keeps_the_transition_time_of_an_unchanged_condition():
    # The kubelet's condition setters (pkg/kubelet/nodestatus/setters.go) move lastTransitionTime
    # only when the status changes; the node lifecycle controller reads a new one as a transition.
    before = _node("a", "True")["status"]["conditions"]
    after = kubelet.node_conditions(True, before)
    ready = [c for c in after if c["type"] == "Ready"][0]
    assert ready["lastTransitionTime"] == "2026-12-02T00:00:00Z"
    assert ready["lastHeartbeatTime"] != "2026-12-02T00:00:00Z"
    flipped = [c for c in kubelet.node_conditions(False, before) if c["type"] == "Ready"][0]
    assert flipped["lastTransitionTime"] != "2026-12-02T00:00:00Z"
