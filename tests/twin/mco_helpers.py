"""Helpers for tests and benchmarks that drive the MCO twin through the API (no sleeps: watches)."""

import json
import time

from twin.kube import path

MC_API = "machineconfiguration.openshift.io/v1"
ROLE = "machineconfiguration.openshift.io/role"
CURRENT = "machineconfiguration.openshift.io/currentConfig"
DESIRED = "machineconfiguration.openshift.io/desiredConfig"
STATE = "machineconfiguration.openshift.io/state"
BOOTS = "twin.confidential.gpu/boots"


def mc(name, role, kargs=(), files=None):
    spec = {"config": {"ignition": {"version": "3.2.0"}}}
    if kargs:
        spec["kernelArguments"] = list(kargs)
    if files:
        spec["config"]["storage"] = {"files": [{"path": p, "mode": 420, "contents": {"source": "data:," + t}}
                                               for p, t in files.items()]}
    return {"apiVersion": MC_API, "kind": "MachineConfig", "metadata": {"name": name, "labels": {ROLE: role}},
            "spec": spec}


def create(kube, obj):
    return kube.create(path(MC_API, "machineconfigs"), obj)


def delete(kube, name):
    kube.delete(path(MC_API, "machineconfigs", name))


def pool(kube, name):
    return kube.get(path(MC_API, "machineconfigpools", name))


def set_paused(kube, name, paused):
    kube.merge_patch(path(MC_API, "machineconfigpools", name), {"spec": {"paused": paused}})


def nodes(kube):
    return {n["metadata"]["name"]: n for n in kube.list(path("v1", "nodes"))["items"]}


def boots(kube):
    return {name: int((n["metadata"].get("annotations") or {}).get(BOOTS, "1")) for name, n in nodes(kube).items()}


def condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def settled(p, sources=None, absent=()):
    """The pool renders what is asked and every node of it runs that config."""
    spec = p["spec"].get("configuration") or {}
    names = {s["name"] for s in spec.get("source") or []}
    if sources and not set(sources) <= names or names & set(absent):
        return False
    status = p.get("status") or {}
    return ((status.get("configuration") or {}).get("name") == spec.get("name")
            and condition(p, "Updated").get("status") == "True"
            and status.get("updatedMachineCount") == status.get("machineCount"))


def wait(kube, plural, predicate, timeout=120, what="", api_version=MC_API, namespace=None):
    """Watch a kind until predicate(objects by name) is true; returns the objects."""
    p = path(api_version, plural, namespace=namespace)
    deadline = time.monotonic() + timeout
    seen = "nothing"
    while True:
        listing = kube.list(p)
        objects = {o["metadata"]["name"]: o for o in listing["items"]}
        ok = predicate(objects)
        if ok:
            return objects
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what or plural}; last seen: {seen}")
        for kind, obj in kube.watch(p, listing["metadata"]["resourceVersion"], timeout_seconds=max(1, int(remaining))):
            if kind == "ERROR":
                break
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                objects.pop(obj["metadata"]["name"], None)
            else:
                objects[obj["metadata"]["name"]] = obj
            seen = json.dumps({k: (v.get("status") or {}).get("updatedMachineCount") for k, v in objects.items()}) \
                if plural == "machineconfigpools" else obj["metadata"]["name"]
            if predicate(objects):
                return objects
            if time.monotonic() > deadline:
                break


def wait_pool(kube, name, sources=None, absent=(), timeout=120):
    return wait(kube, "machineconfigpools", lambda objs: name in objs and settled(objs[name], sources, absent),
                timeout, f"pool {name} to settle")[name]


def hosts(twin):
    """The simulated hardware as the twin last saw it (hosts.json in the state directory)."""
    return json.loads((twin.state / "hosts.json").read_text())
