"""The kubelet twin: keeps Nodes Ready (leases), runs bound pods through their phases, serves logs.

The API server proxies ``pods/log`` to ``https://<InternalIP>:<kubeletEndpoint.Port>/containerLogs``;
one HTTPS server here answers for every node, with a certificate the cluster CA signed (the API
server verifies it), so ``kubectl logs`` and ``kubernetes.core.k8s_log`` work through the real API.
"""

import datetime
import hashlib
import heapq
import http.server
import logging
import ssl
import threading
import time
import urllib.parse

from . import guest, workloads
from .controller import Controller
from .kube import ApiError, path

log = logging.getLogger("twin.kubelet")

# A kubelet's Lease lasts 40 s (NodeLeaseDurationSeconds) and is renewed every quarter of that
# (nodeLeaseRenewIntervalFraction = 0.25 in kubernetes@v1.34 pkg/kubelet/kubelet.go): 10 s.
LEASE_SECONDS = 40
RENEW_EVERY = LEASE_SECONDS * 0.25
# Renewals in flight at once. Real kubelets renew independently, one request each; one thread
# renewing a thousand leases in turn needs longer than a lease lasts when a request takes 40 ms
# (the node lifecycle controller then marks the late nodes Unknown and taints them unreachable).
RENEW_WORKERS = 16

# The conditions a healthy kubelet reports (pkg/kubelet/nodestatus/setters.go), Ready last.
CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def crashed_container_status(status, exit_code, message, backoff_seconds, pod_name, namespace, uid):
    """A container's status between its exit and its restart, as the kubelet shows it.

    kubernetes v1.34 pkg/kubelet/kubelet_pods.go ``convertToAPIContainerStatuses``: a container that exited and
    will be restarted is *Waiting* with the reason of the last sync error (``CrashLoopBackOff``, message
    ``back-off <d> restarting failed container=<c> pod=<pod>_<ns>(<uid>)`` from pkg/kubelet/kuberuntime
    ``doBackOff``), the exit as ``lastState``; ``restartCount`` stays that of the run that exited and counts one
    more when the restarted container runs (``restarted_container_status``).
    """
    ts = now()
    return dict(status, ready=False, started=False, restartCount=int(status.get("restartCount") or 0),
                state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off {0}s restarting failed "
                                   "container={1} pod={2}_{3}({4})".format(int(backoff_seconds), status.get("name"),
                                                                           pod_name, namespace, uid)}},
                lastState={"terminated": {"exitCode": int(exit_code), "reason": "Error", "message": message,
                                          "startedAt": ((status.get("state") or {}).get("running") or {}).get(
                                              "startedAt", ts), "finishedAt": ts}})


def restarted_container_status(status):
    """The container's status once the kubelet restarted it after its back-off: running, one restart more."""
    return dict(status, ready=True, started=True, restartCount=int(status.get("restartCount") or 0) + 1,
                state={"running": {"startedAt": now()}})


class Logs:
    """Container logs by (namespace, pod, container); followers wait on a condition."""

    def __init__(self):
        self._data = {}
        self._done = set()
        self._cond = threading.Condition()

    def write(self, key, text, done=False):
        with self._cond:
            self._data[key] = self._data.get(key, "") + text
            if done:
                self._done.add(key)
            self._cond.notify_all()

    def read(self, key):
        with self._cond:
            return self._data.get(key)

    def follow(self, key, offset, timeout):
        with self._cond:
            self._cond.wait_for(lambda: len(self._data.get(key, "")) > offset or key in self._done, timeout)
            return self._data.get(key, "")[offset:], key in self._done

    def forget(self, namespace, pod):
        with self._cond:
            for key in [k for k in self._data if k[:2] == (namespace, pod)]:
                self._data.pop(key, None)
                self._done.discard(key)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    logs = None

    def log_message(self, fmt, *args):
        log.debug(fmt, *args)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = url.path.strip("/").split("/")
        if parts == ["healthz"]:
            return self._send(200, "ok")
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self._send(404, "not found")
        key = tuple(parts[1:])
        text = self.logs.read(key)
        if text is None:
            return self._send(404, f"container {parts[3]} of pod {parts[1]}/{parts[2]} has no log (not started)")
        if query.get("follow", ["false"])[0] == "true":
            return self._follow(key)
        tail = query.get("tailLines")
        if tail:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail[0]):]) if int(tail[0]) > 0 else ""
        limit = query.get("limitBytes")
        if limit:
            text = text.encode()[: int(limit[0])].decode("utf-8", "ignore")
        return self._send(200, text)

    def _send(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _follow(self, key):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        offset = 0
        while True:
            chunk, done = self.logs.follow(key, offset, timeout=30)
            if chunk:
                data = chunk.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                offset += len(chunk)
            if done:
                break
        self.wfile.write(b"0\r\n\r\n")


class LogServer:
    def __init__(self, port, cert, key, ca, logs):
        handler = type("Handler", (_Handler,), {"logs": logs})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, name="kubelet-logs", daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def node_conditions(ready, previous=None):
    """The node conditions a kubelet posts now; ``previous`` (the Node's current ones) keeps the
    transition time of a condition whose status did not change, as the kubelet's setters do
    (kubernetes@v1.34 pkg/kubelet/nodestatus/setters.go): the node lifecycle controller reads a new
    lastTransitionTime as a transition."""
    before = {c.get("type"): c for c in previous or ()}
    ts = now()
    wanted = list(CONDITIONS) + [
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status") if ready
        else ("Ready", "False", "KubeletNotReady", "node is rebooting")]
    conditions = []
    for kind, status, reason, message in wanted:
        old = before.get(kind) or {}
        same = old.get("status") == status and old.get("lastTransitionTime")
        conditions.append({"type": kind, "status": status, "reason": reason, "message": message,
                           "lastHeartbeatTime": ts,
                           "lastTransitionTime": old["lastTransitionTime"] if same else ts})
    return conditions


def condition_statuses(conditions):
    return {c.get("type"): c.get("status") for c in conditions or ()}


def post_status(kube, host, previous=None):
    body = {"status": {"conditions": node_conditions(host.ready, previous)}}
    kube.request("PATCH", path("v1", "nodes", host.name, subresource="status"), body,
                 content_type="application/strategic-merge-patch+json")


def lease_object(name):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}}


class NodeAgent:
    """Leases and the Ready condition of every twin node (what each kubelet does for its node)."""

    def __init__(self, world, stop, renew_every=RENEW_EVERY, workers=RENEW_WORKERS):
        self.world = world
        self.kube = world.kube
        self.stop = stop
        self.renew_every = renew_every
        self.workers = workers
        self.nodes = None  # the Node informer, when a manager runs one: previous conditions
        world.subscribe(self.report)

    def report(self, host):
        node = self.nodes.get(host.name) if self.nodes is not None else None
        post_status(self.kube, host, ((node or {}).get("status") or {}).get("conditions"))

    def renew(self, name):
        p = path("coordination.k8s.io/v1", "leases", name, "kube-node-lease")
        host = self.world.host(name)
        if not host.ready:
            return  # a rebooting node stops renewing, as a real kubelet does
        try:
            self.kube.merge_patch(p, {"spec": {"renewTime": now_micro(), "holderIdentity": name}})
        except ApiError as exc:
            if exc.status != 404:
                raise
            # The lease controller creates the Lease it does not find (ensureLease in
            # k8s.io/component-helpers@v0.34 apimachinery/lease/controller.go).
            try:
                self.kube.create(path("coordination.k8s.io/v1", "leases", namespace="kube-node-lease"), lease_object(name))
            except ApiError as exc:
                if exc.status != 409:  # created meanwhile (registration creates it too): renewed next time
                    raise

    def run(self):
        """Each node on its own schedule, as each kubelet runs its own lease controller: a renewal
        is due ``renew_every`` after the node's previous one, and a pool of workers takes the
        earliest due. First renewals are spread over one interval (kubelets do not start in step)."""
        names = list(self.world.hosts)
        start = time.monotonic()
        due = [(start + self.renew_every * i / max(1, len(names)), name) for i, name in enumerate(names)]
        heapq.heapify(due)
        cond = threading.Condition()

        def worker():
            while not self.stop.is_set():
                with cond:
                    while not self.stop.is_set():
                        wait = due[0][0] - time.monotonic() if due else self.renew_every
                        if wait <= 0:
                            break
                        cond.wait(min(wait, 1.0))
                    if self.stop.is_set():
                        return
                    _, name = heapq.heappop(due)
                try:
                    self.renew(name)
                except Exception as exc:  # the API may be restarting; the next heartbeat retries
                    log.warning("lease renewal for %s failed: %s", name, exc)
                with cond:
                    # A heartbeat is periodic by nature: the next one is due an interval after this one.
                    heapq.heappush(due, (time.monotonic() + self.renew_every, name))
                    cond.notify()

        threads = [threading.Thread(target=worker, name=f"kubelet-leases-{i}", daemon=True)
                   for i in range(self.workers)]
        for thread in threads:
            thread.start()
        self.stop.wait()
        with cond:
            cond.notify_all()


class NodeStatusReporter(Controller):
    """Posts a node's status again whenever the Node says other than its host would: the kubelet
    posts its status when what it would post differs from the Node's (``tryUpdateNodeStatus`` and
    ``nodeStatusHasChanged`` in kubernetes@v1.34 pkg/kubelet/kubelet_node_status.go, every
    nodeStatusUpdateFrequency). So a node the node lifecycle controller marked Unknown, because a
    heartbeat came late once, is Ready again at once and its unreachable taints go, as on a real
    cluster; and a node registered earlier than the twin's process started needs no write at all."""

    name = "kubelet-node-status"
    api_version = "v1"
    plural = "nodes"

    def reconcile(self, key):
        _, name = key
        node = self.cache("v1", "nodes").get(name)
        host = self.world.host(name)
        if node is None or host is None:
            return None
        current = (node.get("status") or {}).get("conditions") or []
        wanted = node_conditions(host.ready, current)
        if condition_statuses(current) == condition_statuses(wanted):
            return None
        self.log.info("node %s: conditions %s, host says %s; posting status", name,
                      condition_statuses(current), condition_statuses(wanted))
        post_status(self.kube, host, current)
        return None


class PodRunner(Controller):
    """Moves pods bound to twin nodes through their phases and records their logs."""

    name = "kubelet-pods"
    api_version = "v1"
    plural = "pods"

    def __init__(self, world, logs):
        super().__init__(world)
        self.logs = logs
        self.started = {}  # uid -> monotonic start decided
        self.sandboxes = {}  # uid -> twin.guest.Sandbox of a kata pod while its containers run
        self.sandbox_failed = {}  # uid -> kata's error (the kubelet reported it; no retry loop here)

    def reconcile(self, key):
        namespace, name = key
        pod = self.cache("v1", "pods").get(name, namespace)
        if pod is None:
            self.logs.forget(namespace, name)
            for uid in [u for u, sb in self.sandboxes.items() if sb.pod["metadata"].get("namespace") == namespace
                        and sb.pod["metadata"]["name"] == name]:
                self.sandboxes.pop(uid, None)
            return None
        node = pod["spec"].get("nodeName")
        host = self.world.host(node) if node else None
        if host is None:
            return None
        p = path("v1", "pods", name, namespace)
        if pod["metadata"].get("deletionTimestamp"):
            # Containers stop at once on a twin; confirm the deletion like a kubelet does.
            try:
                self.kube.request("DELETE", p, {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                                "preconditions": {"uid": pod["metadata"]["uid"]}})
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
            return None
        phase = pod.get("status", {}).get("phase", "Pending")
        if phase in ("Succeeded", "Failed"):
            return None
        if not host.ready:
            return None  # the node is down; the pod resumes when it is back (the Node event requeues)
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if phase == "Running" and statuses and all(s.get("state", {}).get("running") for s in statuses):
            return None
        if any(((s.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff" for s in statuses):
            return None  # in back-off after a crash: whoever crashed it (a workload's controller) restarts it
        uid = pod["metadata"]["uid"]
        if uid not in self.started:
            self.started[uid] = True
            return self.world.timings["pod_start"] or 0.01
        if uid in self.sandbox_failed:
            return None
        self.start(pod, host, p)
        return None

    def map_event(self, kind, obj):
        if "handler" in obj:  # a RuntimeClass: read through the cache when a pod starts
            return []
        # A node coming back (Ready again) resumes the pods bound to it.
        return [(o["metadata"]["namespace"], o["metadata"]["name"])
                for o in self.cache("v1", "pods").items() if o["spec"].get("nodeName") == obj["metadata"]["name"]]

    watches = (("v1", "nodes"), ("node.k8s.io/v1", "runtimeclasses"))

    def handler_of(self, pod):
        """The CRI runtime handler of the pod's RuntimeClass ('' for the default runtime, runc)."""
        name = pod["spec"].get("runtimeClassName")
        if not name:
            return ""
        rc = self.cache("node.k8s.io/v1", "runtimeclasses").get(name)
        return (rc or {}).get("handler", name)

    def sandbox_for(self, pod, host):
        """A kata pod's sandbox (twin.guest), started once; SandboxError when kata refuses it."""
        uid = pod["metadata"]["uid"]
        if uid in self.sandboxes:
            return self.sandboxes[uid]
        handler = self.handler_of(pod)
        if not guest.is_kata(handler):
            return None
        taken = {g.get("pci_address") for sb in self.sandboxes.values() if sb.host is host for g in sb.gpus}
        sandbox = guest.start_sandbox(pod, host, self.world, handler, taken=taken)
        self.sandboxes[uid] = sandbox
        return sandbox

    def sandbox_refused(self, pod, host, p, message):
        """What the kubelet shows when RunPodSandbox fails: ContainerCreating and a FailedCreatePodSandBox event."""
        meta = pod["metadata"]
        self.sandbox_failed[meta["uid"]] = message
        ts = now()
        text = f"Failed to create pod sandbox: rpc error: code = Unknown desc = CreateContainer failed: {message}"
        log.info("%s/%s: %s", meta["namespace"], meta["name"], text)
        waiting = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "restartCount": 0, "ready": False,
                    "started": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
                   for c in pod["spec"]["containers"]]
        status = {"phase": "Pending", "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": ts,
                  "conditions": [
                      {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": ts},
                      {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                      {"type": "Ready", "status": "False", "lastTransitionTime": ts, "reason": "ContainersNotReady",
                       "message": "containers with unready status: [{0}]".format(
                           " ".join(c["name"] for c in pod["spec"]["containers"]))},
                      {"type": "ContainersReady", "status": "False", "lastTransitionTime": ts,
                       "reason": "ContainersNotReady"},
                      {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts}],
                  "containerStatuses": waiting}
        self.kube.request("PATCH", p + "/status", {"status": status},
                          content_type="application/strategic-merge-patch+json")
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": "{0}.{1}".format(meta["name"], hashlib.sha256(
                     (meta["uid"] + message).encode()).hexdigest()[:16]), "namespace": meta["namespace"]},
                 "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                    "namespace": meta["namespace"], "uid": meta["uid"]},
                 "reason": "FailedCreatePodSandBox", "message": text, "type": "Warning", "count": 1,
                 "source": {"component": "kubelet", "host": host.name},
                 "firstTimestamp": ts, "lastTimestamp": ts, "reportingComponent": "kubelet",
                 "reportingInstance": host.name}
        try:
            self.kube.create(path("v1", "events", namespace=meta["namespace"]), event)
        except ApiError as exc:
            if exc.status != 409:
                raise

    def start(self, pod, host, p):
        meta = pod["metadata"]
        try:
            sandbox = self.sandbox_for(pod, host)
        except guest.SandboxError as exc:
            self.sandbox_refused(pod, host, p, str(exc))
            return
        results = []
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            log_key = (meta["namespace"], meta["name"], container["name"])
            # Servers keep writing to their container log after start (e.g. the twin KBS's decisions).
            ctx = workloads.Context(pod=pod, container=container, host=host, world=self.world,
                                    extra={"log": lambda text, k=log_key: self.logs.write(k, text),
                                           "sandbox": sandbox})
            try:
                result = workloads.resolve(ctx).run(ctx)
            except Exception as exc:  # a workload's bug shows as a failed container, not a dead kubelet
                log.exception("workload for %s/%s failed", meta["name"], container["name"])
                result = workloads.Result(exit_code=128, log=f"twin workload error: {exc}\n")
            self.logs.write((meta["namespace"], meta["name"], container["name"]), result.log, done=not result.running)
            results.append((container, result))
        init_names = {c["name"] for c in pod["spec"].get("initContainers", [])}
        ts = now()
        container_id = lambda c: "cri-o://" + hashlib.sha256((meta["uid"] + c["name"]).encode()).hexdigest()  # noqa: E731

        def state(c, r):
            if r.running:
                return {"running": {"startedAt": ts}}
            return {"terminated": {"exitCode": r.exit_code, "reason": "Completed" if r.exit_code == 0 else "Error",
                                   "startedAt": ts, "finishedAt": ts, "containerID": container_id(c)}}

        def status_of(c, r):
            return {"name": c["name"], "image": c.get("image", ""), "imageID": c.get("image", ""),
                    "containerID": container_id(c), "restartCount": 0,
                    "ready": r.running if r.ready is None else bool(r.running and r.ready),
                    "started": r.running, "state": state(c, r)}

        main = [(c, r) for c, r in results if c["name"] not in init_names]
        if all(r.running for _, r in main):
            phase = "Running"
        elif all(not r.running and r.exit_code == 0 for _, r in main):
            phase = "Succeeded"
        elif all(not r.running for _, r in main):
            phase = "Failed"
        else:
            phase = "Running"
        if phase in ("Succeeded", "Failed"):
            self.sandboxes.pop(meta["uid"], None)  # the pod VM stops with its last container; its GPUs are free
        ready = phase == "Running" and all(r.ready is not False for _, r in main)
        not_ready = "ContainersNotReady" if phase == "Running" else "PodCompleted"
        index = int(hashlib.sha256(meta["uid"].encode()).hexdigest()[:4], 16)
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": f"10.128.{index // 250 % 250}.{index % 250 + 2}",
            "startTime": ts,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": ts},
                {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                {"type": "Ready", "status": str(ready), "lastTransitionTime": ts,
                 **({} if ready else {"reason": not_ready})},
                {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": ts,
                 **({} if ready else {"reason": not_ready})},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
            ],
            "containerStatuses": [status_of(c, r) for c, r in main],
        }
        if init_names:
            status["initContainerStatuses"] = [status_of(c, r) for c, r in results if c["name"] in init_names]
        status["podIPs"] = [{"ip": status["podIP"]}]
        self.kube.request("PATCH", p + "/status", {"status": status},
                          content_type="application/strategic-merge-patch+json")


def start(manager, world, state_dir, port, stop):
    logs = Logs()
    pki = state_dir / "pki"
    server = LogServer(port, pki / "kubelet.crt", pki / "kubelet.key", pki / "ca.crt", logs)
    server.start()
    agent = NodeAgent(world, stop)
    agent.nodes = manager.informer("v1", "nodes")
    threading.Thread(target=agent.run, name="kubelet-leases", daemon=True).start()
    manager.add(NodeStatusReporter(world))
    manager.add(PodRunner(world, logs))
    return server, logs
