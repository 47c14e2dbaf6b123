"""Run every integration target against a twin, through ansible-playbook, as users run modules.

A target is ``tests/integration/targets/<name>/tasks/main.yml`` (ansible-test's layout). Each gets
its own namespace and the twin's connection data as variables.
"""

import base64
import json
from pathlib import Path

import pytest

from twin.kube import path

TARGETS_DIR = Path(__file__).parent / "targets"
TARGETS = sorted(p.name for p in TARGETS_DIR.iterdir() if (p / "tasks" / "main.yml").exists() and not p.name.startswith("setup_"))

pytestmark = pytest.mark.twin


@pytest.fixture
def sa_token(twin, namespace):
    """A ServiceAccount with read access to the cluster (the view role plus the OpenShift kinds)."""
    kube = twin.kube
    kube.create(path("v1", "serviceaccounts", namespace=namespace), {"metadata": {"name": "reader"}})
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-reader"},
        "rules": [{"apiGroups": ["", "config.openshift.io", "operators.coreos.com", "node.k8s.io"],
                   "resources": ["nodes", "clusterversions", "infrastructures", "clusterserviceversions", "runtimeclasses"],
                   "verbs": ["get", "list", "watch"]}],
    }
    kube.create(path("rbac.authorization.k8s.io/v1", "clusterroles"), role)
    kube.create(path("rbac.authorization.k8s.io/v1", "clusterrolebindings"), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{namespace}-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{namespace}-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    })
    token = kube.create(path("v1", "serviceaccounts", "reader", namespace, "token"),
                        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    yield token["status"]["token"]
    kube.delete(path("rbac.authorization.k8s.io/v1", "clusterrolebindings", f"{namespace}-reader"))
    kube.delete(path("rbac.authorization.k8s.io/v1", "clusterroles", f"{namespace}-reader"))


@pytest.mark.parametrize("target", TARGETS)
def test_target(target, twin, namespace, sa_token, run_playbook, tmp_path):
    config = json.loads(Path(twin.kubeconfig).read_text())
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
    playbook = [{
        "name": f"integration target {target}",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{"name": f"Run {target}", "ansible.builtin.include_tasks": str(TARGETS_DIR / target / "tasks" / "main.yml")}],
    }]
    run = run_playbook(playbook, env=twin.env(), callback="ansible.builtin.default", extra_vars={
        "cgpu_test_namespace": namespace,
        "twin_kubeconfig": twin.kubeconfig,
        "twin_server": config["clusters"][0]["cluster"]["server"],
        "twin_ca_cert": str(ca),
        "twin_sa_token": sa_token,
        "twin_profile": twin.profile,
    })
    assert run.rc == 0, f"target {target} failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
