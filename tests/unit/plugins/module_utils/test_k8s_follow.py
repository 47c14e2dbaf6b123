# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CgpuModule's waiting (informer, follow, watch_until) against a scripted client: what the API answers
that the twin cannot be made to answer on cue (a 403 on the first list, connection errors, 410 Gone,
BOOKMARKs). The real watch against the twin's API server is tested in tests/twin/test_waits.py."""

from __future__ import annotations

import threading
import time
import types

import pytest
from kubernetes.client.rest import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ansible_collections.confidential.gpu.plugins.module_utils import _k8s
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException


class Listing:
    def __init__(self, items, version):
        self._data = {"metadata": {"resourceVersion": str(version)}, "items": items}

    def to_dict(self):
        return self._data


def node(name, version, **labels):
    return {"metadata": {"name": name, "resourceVersion": str(version), "labels": labels}}


BLOCK = ("block",)  # a watch that stays open without events until the wait ends


class ScriptedClient:
    """``lists``: what each LIST gives in turn (a Listing or an exception); ``watches``: each WATCH's events
    (a list of events, an exception, or BLOCK)."""

    def __init__(self, lists, watches):
        self.lists, self.watches = list(lists), list(watches)
        self.calls = []
        self.client = types.SimpleNamespace(watch=self._watch)
        self.ended = threading.Event()

    def resource(self, kind, api_version):
        return types.SimpleNamespace(kind=kind, api_version=api_version)

    def get(self, resource, **params):
        self.calls.append(("list", params))
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _watch(self, resource, **params):
        self.calls.append(("watch", params))
        answer = self.watches.pop(0) if self.watches else BLOCK
        if answer == BLOCK:
            self.ended.wait(5)
            return
        if isinstance(answer, BaseException):
            raise answer  # pylint: disable=raising-bad-type  # (inferred from BLOCK, which returned above)
        yield from answer


def module(client, **params):
    mod = CgpuModule.__new__(CgpuModule)
    mod._module = types.SimpleNamespace(params=dict(params), argument_spec={}, check_mode=False)
    mod._client = client
    return mod


def refused():
    return MaxRetryError(None, "/api/v1/nodes", NewConnectionError(None, "Connection refused"))


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(_k8s, "BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(_k8s, "BACKOFF_MAX", 0.02)


def labelled(objects):
    names = sorted(o["metadata"]["name"] for o in objects.values() if o["metadata"]["labels"].get("ready") == "yes")
    return len(names) == 2, "ready: " + (", ".join(names) or "none")


def test_a_forbidden_first_list_is_a_message_not_a_traceback():
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = b'{"message": "nodes is forbidden: User \\"viewer\\" cannot list resource \\"nodes\\""}'
    mod = module(ScriptedClient([forbidden], []))
    with pytest.raises(CoreException) as caught:
        mod.watch_until("v1", "Node", labelled, 5, "two ready nodes")
    assert str(caught.value) == ('Cannot list Nodes: nodes is forbidden: User "viewer" cannot list resource "nodes" '
                                 '(403)')


def test_events_update_the_cache_and_the_watch_starts_at_the_lists_version():
    client = ScriptedClient([Listing([node("a", 5, ready="yes"), node("b", 6)], 10)], [[
        {"type": "BOOKMARK", "raw_object": {"metadata": {"resourceVersion": "12"}}},
        {"type": "MODIFIED", "raw_object": node("b", 13, ready="yes")},
    ]])
    found = module(client).watch_until("v1", "Node", labelled, 5, "two ready nodes")
    assert sorted(k[1] for k in found) == ["a", "b"]
    assert [c[0] for c in client.calls][:2] == ["list", "watch"]  # (then maybe the next watch, until stopped)
    assert client.calls[1][1]["resource_version"] == "10"
    assert client.calls[1][1]["allow_watch_bookmarks"] is True


def test_gone_lists_again_and_deleted_objects_leave_the_cache():
    gone = ApiException(status=410, reason="Expired: too old resource version")
    client = ScriptedClient([Listing([node("a", 5), node("x", 6)], 10), Listing([node("a", 20, ready="yes")], 21)],
                            [gone, [{"type": "ADDED", "raw_object": node("b", 22, ready="yes")}]])
    found = module(client).watch_until("v1", "Node", labelled, 5, "two ready nodes")
    assert sorted(k[1] for k in found) == ["a", "b"]  # x went while the watch was gone: the relist dropped it
    assert [c[0] for c in client.calls][:4] == ["list", "watch", "list", "watch"]
    assert client.calls[3][1]["resource_version"] == "21"


def test_a_short_outage_is_retried_within_the_deadline_and_said():
    unavailable = ApiException(status=503, reason="Service Unavailable")
    client = ScriptedClient([refused(), unavailable, Listing([node("a", 5, ready="yes")], 10),
                             Listing([node("a", 5, ready="yes")], 30)],
                            [refused(), [{"type": "ADDED", "raw_object": node("b", 31, ready="yes")}]])
    mod = module(client)
    found = mod.watch_until("v1", "Node", labelled, 5, "two ready nodes")
    assert sorted(k[1] for k in found) == ["a", "b"]
    assert [c[0] for c in client.calls][:6] == ["list", "list", "list", "watch", "list", "watch"]
    assert mod.progress_lines[-1].endswith("ready: a, b")


def test_an_outage_past_the_deadline_says_so():
    client = ScriptedClient([Listing([node("a", 5, ready="yes")], 10)] + [refused()] * 1000, [refused()] * 1000)
    mod = module(client)
    with pytest.raises(CoreException) as caught:
        mod.watch_until("v1", "Node", labelled, 1, "two ready nodes")
    text = str(caught.value)
    assert text.startswith("Timed out after 1s waiting for two ready nodes; last seen: ready: a; "
                           "the API server has not answered for ")
    assert "Connection refused" in text and "retrying until the deadline" in text


def test_a_quiet_wait_says_every_heartbeat_what_it_awaits_and_saw_last():
    client = ScriptedClient([Listing([node("a", 5, ready="yes")], 10)], [BLOCK])
    mod = module(client)
    informer = mod.informer("v1", "Node")
    with pytest.raises(CoreException):
        mod.follow([informer], lambda: labelled(informer.objects), 0.5, "two ready nodes", heartbeat=0.2)
    client.ended.set()
    beats = [line for line in mod.progress_lines if "still waiting" in line]
    assert beats, mod.progress_lines
    assert "still waiting for two ready nodes (" in beats[0] and beats[0].endswith("last seen: ready: a")


def test_other_errors_end_the_wait_with_the_verb_and_the_apis_words():
    bad = ApiException(status=400, reason="Bad Request")
    bad.body = b'{"message": "unable to parse requirement: invalid label key"}'
    client = ScriptedClient([Listing([], 10)], [bad])
    with pytest.raises(CoreException) as caught:
        module(client).watch_until("v1", "Node", labelled, 5, "two ready nodes", label_selector="a b")
    assert str(caught.value) == "Cannot watch Nodes (a b): unable to parse requirement: invalid label key (400)"


def test_ensure_honours_kubernetes_core_options_only_as_kubernetes_core_declares_them(monkeypatch):
    seen = {}

    def perform(svc, definition, params):
        seen["params"], seen["svc_params"] = params, svc.module.params
        return {"changed": False}

    monkeypatch.setattr(_k8s, "perform_action", perform)
    monkeypatch.setattr(CgpuModule, "_held", lambda self, definition, apply: None)  # every object differs
    mod = module(ScriptedClient([], []), wait=True, merge_type=["merge"], wait_timeout=30)
    mod._module.argument_spec = {"wait": dict(_k8s.WAIT_ARG_SPEC["wait"]), "merge_type": {"type": "list"},
                                 "wait_timeout": dict(_k8s.WAIT_ARG_SPEC["wait_timeout"])}
    mod.ensure({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert seen["params"]["wait"] is True and seen["params"]["merge_type"] == ["merge"]
    assert seen["svc_params"]["merge_type"] == ["merge"] and seen["svc_params"]["wait_timeout"] == 30
    # gpu_cc_mode's own ``wait`` (wait for the CC mode, default true) is not kubernetes.core's
    mod._module.argument_spec = {"wait": {"type": "bool", "default": True}}
    mod.ensure({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert seen["params"]["wait"] is False and "merge_type" not in seen["params"]
    mod.ensure({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, merge_type=["merge"])
    assert seen["svc_params"]["merge_type"] == ["merge"]
    with pytest.raises(TypeError):
        mod.ensure({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, merge="yes")


def test_a_wait_over_at_the_first_look_makes_no_watch():
    client = ScriptedClient([Listing([node("a", 5, ready="yes"), node("b", 6, ready="yes")], 10)], [])
    module(client).watch_until("v1", "Node", labelled, 5, "two ready nodes")
    time.sleep(0.3)  # give a watch that should not come the time to show up
    assert [c[0] for c in client.calls] == ["list"]


class ByKind:
    """One ScriptedClient per kind: each informer's thread lists and watches in its own order."""

    def __init__(self, **clients):
        self.clients = clients
        self.client = types.SimpleNamespace(watch=lambda resource, **params: clients[resource.kind].client.watch(
            resource, **params))

    def resource(self, kind, api_version):
        return types.SimpleNamespace(kind=kind, api_version=api_version)

    def get(self, resource, **params):
        return self.clients[resource.kind].get(resource, **params)


def smoke_pod(version, phase):
    return {"metadata": {"name": "smoke-1", "namespace": "cgpu-smoke", "resourceVersion": str(version)},
            "status": {"phase": phase}}


def smoke_waiter(client, timeout=5):
    from ansible_collections.confidential.gpu.plugins.modules.smoke_result import SmokeResult

    mod = SmokeResult.__new__(SmokeResult)
    mod._module = types.SimpleNamespace(params={"timeout": timeout}, argument_spec={}, check_mode=False)
    mod._client = client
    return mod


def test_smoke_result_follows_the_pod_and_its_events_until_the_sandbox_is_refused():
    refusal = {"metadata": {"name": "smoke-1.17", "namespace": "cgpu-smoke", "resourceVersion": "12"},
               "involvedObject": {"kind": "Pod", "name": "smoke-1", "namespace": "cgpu-smoke"},
               "reason": "FailedCreatePodSandBox", "message": "initdata: invalid TOML"}
    pods = ScriptedClient([Listing([smoke_pod(5, "Pending")], 10)], [BLOCK])
    events = ScriptedClient([Listing([], 11)], [[{"type": "ADDED", "raw_object": refusal}]])
    mod = smoke_waiter(ByKind(Pod=pods, Event=events))
    outcome, pod, line = mod._wait("smoke-1", "cgpu-smoke")
    pods.ended.set()
    assert (outcome, pod["status"]["phase"], line) == ("refused", "Pending", "initdata: invalid TOML")
    assert pods.calls[0] == ("list", {"namespace": "cgpu-smoke", "label_selector": None,
                                      "field_selector": "metadata.name=smoke-1"})
    assert events.calls[0][1]["field_selector"] == "involvedObject.name=smoke-1"
    assert events.calls[1][1]["resource_version"] == "11"


def test_smoke_result_judges_the_latest_phase_and_retries_an_outage():
    pods = ScriptedClient([Listing([smoke_pod(5, "Pending")], 10), Listing([smoke_pod(5, "Pending")], 20)],
                          [refused(), [{"type": "MODIFIED", "raw_object": smoke_pod(21, "Running")},
                                       {"type": "MODIFIED", "raw_object": smoke_pod(22, "Succeeded")}]])
    events = ScriptedClient([Listing([], 11)], [BLOCK])
    mod = smoke_waiter(ByKind(Pod=pods, Event=events))
    outcome, pod, line = mod._wait("smoke-1", "cgpu-smoke")
    events.ended.set()
    assert (outcome, pod["metadata"]["resourceVersion"], line) == ("finished", "22", "phase Succeeded")
    assert any("the API server answers again" in p for p in mod.progress_lines), mod.progress_lines


def test_smoke_result_says_what_it_saw_last_at_the_deadline_and_when_the_pod_is_gone():
    pods = ScriptedClient([Listing([smoke_pod(5, "Pending")], 10)], [BLOCK])
    events = ScriptedClient([Listing([], 11)], [BLOCK])
    with pytest.raises(CoreException) as caught:
        smoke_waiter(ByKind(Pod=pods, Event=events), timeout=1)._wait("smoke-1", "cgpu-smoke")
    pods.ended.set()
    events.ended.set()
    assert str(caught.value) == "Timed out after 1s waiting for pod cgpu-smoke/smoke-1 to finish; last seen: phase Pending"
    gone = ByKind(Pod=ScriptedClient([Listing([], 10)], []), Event=ScriptedClient([Listing([], 11)], []))
    with pytest.raises(CoreException, match=r"pod cgpu-smoke/smoke-1 does not exist \(deleted while waiting\?\)"):
        smoke_waiter(gone)._wait("smoke-1", "cgpu-smoke")
