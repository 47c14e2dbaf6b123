"""confidential.gpu.k8s_object against the twin's API server: check mode, apply, patched, absent, and the re-run
that sends no write at all (read from the audit log, where kubernetes.core.k8s would send a patch per object)."""

import pytest

from tests.bench.writes import describe, real_writes

pytestmark = pytest.mark.twin


def play(namespace, check=False):
    secret = {"kind": "Secret", "type": "Opaque", "metadata": {"name": "s", "namespace": namespace},
              "stringData": {"token": "not printed"}}
    config = {"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": namespace, "labels": {"a": "1"}},
              "data": {"k": "v", "n": "3"}}
    tasks = [
        {"name": "secret", "confidential.gpu.k8s_object": {"definition": secret}, "no_log": True, "register": "s"},
        {"name": "applied", "confidential.gpu.k8s_object": {"apply": True, "definition": config}},
        {"name": "patched", "confidential.gpu.k8s_object": {
            "state": "patched", "kind": "ConfigMap", "namespace": namespace, "name": "cm",
            "definition": {"data": {"k": "v"}}}},
        {"name": "patched, not there", "confidential.gpu.k8s_object": {
            "state": "patched", "kind": "ConfigMap", "namespace": namespace, "name": "nowhere",
            "definition": {"data": {"k": "v"}}}},
        {"name": "absent, not there", "confidential.gpu.k8s_object": {
            "state": "absent", "kind": "ConfigMap", "namespace": namespace, "name": "nowhere"}},
    ]
    return [{"hosts": "localhost", "gather_facts": False, "check_mode": check, "tasks": tasks}]


def run(twin, run_playbook, playbook, **kwargs):
    start = twin.audit.offset()
    out = run_playbook(playbook, env=twin.env(), **kwargs)
    assert out.rc == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return out, [describe(e) for e in real_writes(twin.audit.events(start))]


def test_check_then_apply_then_nothing(twin, namespace, run_playbook):
    out, writes = run(twin, run_playbook, play(namespace, check=True), diff=True)
    assert writes == [], writes
    assert out.result("secret")["changed"] and out.result("applied")["changed"]
    assert "not printed" not in out.stdout

    out, writes = run(twin, run_playbook, play(namespace))
    assert out.result("secret")["changed"] and out.result("applied")["method"] == "apply"
    assert sorted(w.split()[0] for w in writes) == ["create", "create"], writes
    assert out.result("patched")["method"] == "unchanged"

    out, writes = run(twin, run_playbook, play(namespace))
    assert writes == [], "a re-run with nothing to do wrote:\n" + "\n".join(writes)
    for task in ("secret", "applied", "patched", "patched, not there", "absent, not there"):
        assert not out.result(task)["changed"], task
    assert out.result("applied")["method"] == "unchanged"


def test_a_change_is_written_and_a_removed_field_applied_away(twin, namespace, run_playbook):
    run(twin, run_playbook, play(namespace))
    changed = play(namespace)
    changed[0]["tasks"] = [changed[0]["tasks"][1]]
    changed[0]["tasks"][0]["confidential.gpu.k8s_object"]["definition"]["data"] = {"k": "w"}  # n removed
    out, writes = run(twin, run_playbook, changed, diff=True)
    assert out.result("applied")["changed"] and len(writes) == 1, writes
    assert out.result("applied")["result"]["data"] == {"k": "w"}
    out, writes = run(twin, run_playbook, changed)
    assert writes == [] and not out.result("applied")["changed"]
