"""Waits against the twin's real API server: an outage in the middle of a wait, a user who may not list.

The API server is killed and started again as a crash or a control-plane node's power loss does it:
the same binary, flags and etcd, a new process. (SIGTERM would not do: kube-apiserver's graceful
shutdown keeps serving for up to 60 s, so nothing would be down.) A wait of the collection keeps waiting through it
(retries within its deadline, says so) and ends when what it waits for comes.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twin.controlplane import alive
from twin.kube import path

from tests import conftest

pytestmark = [pytest.mark.twin, pytest.mark.slow]

OUTAGE_SECONDS = 16
LABEL = "example.com/outage-test"
WAIT_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait for the label
      confidential.gpu.wait_for_nodes:
        labels: {{"%s": "yes"}}
        check_tee: false
        timeout: {timeout}
""" % LABEL


def restart_apiserver(cluster, down_for):
    """Kill kube-apiserver, wait ``down_for`` s, start it again; returns the seconds it did not answer."""
    info = cluster.cp.info()
    proc = info["processes"]["kube-apiserver"]
    argv = Path(f"/proc/{proc['pid']}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(proc["pid"], signal.SIGKILL)
    stopped = time.monotonic()
    while alive(proc):
        assert time.monotonic() - stopped < 10, "kube-apiserver outlived SIGKILL by 10 s"
        time.sleep(0.1)  # a process's end has no watch to follow
    time.sleep(max(0.0, down_for - (time.monotonic() - stopped)))  # the outage itself
    cluster.cp._spawn("kube-apiserver", [a.decode() for a in argv], info)
    cluster.cp.wait_ready(info["server"], deadline=time.monotonic() + 90)
    return time.monotonic() - stopped


def run_playbook_async(twin, text, tmp_path):
    playbook = tmp_path / "wait.yml"
    playbook.write_text(text)
    env = conftest.ansible_env(dict(twin.env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"))
    return subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             str(playbook)], env=env, cwd=conftest.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def workers(kube):
    return [n["metadata"]["name"] for n in
            kube.list(path("v1", "nodes"), labelSelector="node-role.kubernetes.io/worker")["items"]]


def test_a_16s_api_outage_does_not_end_a_wait(twin_factory, tmp_path):
    twin = twin_factory("default", name="outage")
    start = twin.audit.offset()
    proc = run_playbook_async(twin, WAIT_PLAY.format(timeout=240), tmp_path)
    try:
        # Wait until the module has listed the nodes (then it follows their watch).
        deadline = time.monotonic() + 120
        while not any(e["verb"] == "list" and (e.get("objectRef") or {}).get("resource") == "nodes"
                      and e.get("user", {}).get("username") == "admin" for e in twin.audit.events(start)):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the module did not list the nodes in 120 s"
            time.sleep(0.5)  # the audit log is a file: nothing to watch
        time.sleep(2)  # the watch request follows its list at once
        down = restart_apiserver(twin.cluster, OUTAGE_SECONDS)
        assert down >= OUTAGE_SECONDS
        assert proc.poll() is None, "the wait ended during the outage:\n" + proc.stdout.read()
        kube = twin.cluster.kube("admin")
        for name in workers(kube):
            kube.merge_patch(path("v1", "nodes", name), {"metadata": {"labels": {LABEL: "yes"}}})
        out, _err = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "the API server does not answer the watch of Nodes" in out, out
    assert "the API server answers again" in out, out


def test_a_user_who_may_not_list_nodes_gets_the_api_servers_words(twin, namespace, tmp_path):
    kube = twin.kube
    kube.create(path("v1", "serviceaccounts", namespace=namespace), {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-rights"}})
    token = kube.create(path("v1", "serviceaccounts", "no-rights", namespace, subresource="token"), {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}})
    info = twin.cluster.info()
    play = tmp_path / "forbidden.yml"
    play.write_text(WAIT_PLAY.format(timeout=30))
    env = conftest.ansible_env({"K8S_AUTH_HOST": info["server"], "K8S_AUTH_API_KEY": token["status"]["token"],
                                "K8S_AUTH_SSL_CA_CERT": str(twin.state / "pki" / "ca.crt"),
                                "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"})
    env.pop("K8S_AUTH_KUBECONFIG", None)
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play)], env=env, cwd=conftest.REPO, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode != 0
    assert ('Cannot list Nodes: nodes is forbidden: User \\"system:serviceaccount:{0}:no-rights\\" cannot list '
            'resource \\"nodes\\" in API group \\"\\" at the cluster scope (403)'.format(namespace)) in done.stdout, \
        done.stdout
    assert "Traceback" not in done.stdout + done.stderr
