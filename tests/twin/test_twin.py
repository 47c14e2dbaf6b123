"""The twin behaves like a cluster where it matters: real scheduling, logs through the API, clean shutdown."""

import os
import time

import pytest

from twin.cluster import Cluster
from twin.kube import ApiError, path

pytestmark = pytest.mark.twin


def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(pid), cmdline))
    return found


def test_up_status_down_leaves_nothing_running(tmp_path):
    cluster = Cluster("lifecycle", tmp_path / "state")
    cluster.up("sno", log=lambda msg: None)
    status = cluster.status()
    assert status["up"] and status["nodes"] == {"sno-0": "Ready"}
    pids = [p["pid"] for p in cluster.info()["processes"].values()]
    assert len(pids) == 5
    assert cluster.down() == []
    assert not any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                   for pid in pids)
    assert _processes_mentioning(str(tmp_path / "state")) == []
    assert cluster.status()["up"] is False


def test_openshift_objects_exist(twin):
    kube = twin.kube
    cv = kube.get(path("config.openshift.io/v1", "clusterversions", "version"))
    assert cv["status"]["desired"]["version"] == "4.21.9"
    infra = kube.get(path("config.openshift.io/v1", "infrastructures", "cluster"))
    assert infra["status"]["platformStatus"]["type"] == "BareMetal"
    pools = {p["metadata"]["name"] for p in kube.list(path("machineconfiguration.openshift.io/v1", "machineconfigpools"))["items"]}
    assert {"master", "worker"} <= pools
    catalogs = kube.list(path("operators.coreos.com/v1alpha1", "catalogsources", namespace="openshift-marketplace"))["items"]
    assert {c["metadata"]["name"]: c["status"]["connectionState"]["lastObservedState"] for c in catalogs} == {
        "certified-operators": "READY", "redhat-operators": "READY"}
    node = kube.get(path("v1", "nodes", "worker-0"))
    assert "node-role.kubernetes.io/worker" in node["metadata"]["labels"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    # Nodes stay Ready because the kubelet twin renews their leases.
    lease = kube.get(path("coordination.k8s.io/v1", "leases", "worker-0", "kube-node-lease"))
    assert lease["spec"]["holderIdentity"] == "worker-0"


def _wait_pod(kube, namespace, name, predicate, timeout=30):
    p = path("v1", "pods", namespace=namespace)
    listing = kube.list(p, fieldSelector=f"metadata.name={name}")
    for pod in listing["items"]:
        if predicate(pod):
            return pod
    for kind, pod in kube.watch(p, listing["metadata"]["resourceVersion"], timeout_seconds=timeout,
                                fieldSelector=f"metadata.name={name}"):
        if kind in ("ADDED", "MODIFIED") and predicate(pod):
            return pod
    raise AssertionError(f"pod {namespace}/{name} did not reach the expected state in {timeout}s")


def test_runtime_class_and_extended_resources_schedule_for_real(twin, namespace):
    """The real kube-scheduler honours RuntimeClass nodeSelectors, overhead and extended resources."""
    kube = twin.kube
    rc_name = f"rc-{namespace}"
    kube.create(path("node.k8s.io/v1", "runtimeclasses"), {
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": rc_name},
        "handler": "kata-test", "overhead": {"podFixed": {"cpu": "250m", "memory": "350Mi"}},
        "scheduling": {"nodeSelector": {f"test.twin/{namespace}": "true"}}})
    resource = "example.com/widget"
    try:
        kube.merge_patch(path("v1", "nodes", "worker-1"), {"metadata": {"labels": {f"test.twin/{namespace}": "true"}}})
        kube.json_patch(path("v1", "nodes", "worker-1", subresource="status"), [
            {"op": "add", "path": "/status/capacity/example.com~1widget", "value": "1"},
            {"op": "add", "path": "/status/allocatable/example.com~1widget", "value": "1"}])

        def pod(name, count):
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"runtimeClassName": rc_name, "containers": [{
                        "name": "c", "image": "registry.example/test:1",
                        "resources": {"limits": {resource: str(count)}}}]}}

        pods = path("v1", "pods", namespace=namespace)
        _create_when_sa_exists(kube, pods, pod("one", 1))
        placed = _wait_pod(kube, namespace, "one", lambda p: p.get("status", {}).get("phase") == "Running")
        assert placed["spec"]["nodeName"] == "worker-1"
        assert placed["spec"]["overhead"] == {"cpu": "250m", "memory": "350Mi"}  # RuntimeClass admission
        kube.create(pods, pod("two", 2))
        pending = _wait_pod(kube, namespace, "two", lambda p: any(
            c["type"] == "PodScheduled" and c["status"] == "False" for c in p.get("status", {}).get("conditions", [])))
        message = next(c["message"] for c in pending["status"]["conditions"] if c["type"] == "PodScheduled")
        assert "Insufficient example.com/widget" in message
    finally:
        kube.json_patch(path("v1", "nodes", "worker-1", subresource="status"), [
            {"op": "remove", "path": "/status/capacity/example.com~1widget"},
            {"op": "remove", "path": "/status/allocatable/example.com~1widget"}])
        kube.merge_patch(path("v1", "nodes", "worker-1"), {"metadata": {"labels": {f"test.twin/{namespace}": None}}})
        kube.delete(path("node.k8s.io/v1", "runtimeclasses", rc_name))


def _create_when_sa_exists(kube, p, body, timeout=20):
    """A fresh namespace gets its default ServiceAccount from KCM a moment later, as on any cluster."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kube.create(p, body)
        except ApiError as exc:
            if "serviceaccount" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_logs_reach_kubernetes_core_k8s_log_through_the_api_server(twin, namespace, run_playbook):
    kube = twin.kube
    _create_when_sa_exists(kube, path("v1", "pods", namespace=namespace), {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server"},
        "spec": {"containers": [{"name": "main", "image": "registry.example/server:1"}]}})
    _wait_pod(kube, namespace, "server", lambda p: p.get("status", {}).get("phase") == "Running")
    run = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "read log", "kubernetes.core.k8s_log": {"namespace": namespace, "name": "server"}, "register": "log"}]}],
        env=twin.env())
    assert run.rc == 0, run.stdout[-3000:]
    assert run.result("read log")["log"] == "main: started\n"


def test_route_twin_admits_and_defaults_the_host(twin, namespace):
    kube = twin.kube
    routes = path("route.openshift.io/v1", "routes", namespace=namespace)
    kube.create(routes, {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "kbs"},
                         "spec": {"to": {"kind": "Service", "name": "kbs-service"}, "tls": {"termination": "passthrough"}}})
    listing = kube.list(routes)
    admitted = None
    for kind, route in kube.watch(routes, listing["metadata"]["resourceVersion"], timeout_seconds=20):
        ingress = (route.get("status") or {}).get("ingress") or []
        if ingress and ingress[0]["conditions"][0]["type"] == "Admitted":
            admitted = route
            break
    assert admitted["spec"]["host"] == f"kbs-{namespace}.apps.twin.example.com"


def test_audit_window_counts_requests_by_user(twin, namespace):
    with twin.audit.window(user="admin") as window:
        twin.kube.create(path("v1", "configmaps", namespace=namespace), {"metadata": {"name": "a"}})
        twin.kube.get(path("v1", "configmaps", "a", namespace))
    assert window.counts[("create", "configmaps")] == 1
    assert window.counts[("get", "configmaps")] == 1
    assert [e["objectRef"]["name"] for e in window.writes] == ["a"]
