"""access_review: what the roles write as SelfSubjectAccessReviews, the answers, and where the kubeconfig is."""

import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.confidential.gpu.plugins.module_utils import access_review as r

REPO = Path(__file__).resolve().parents[4]


def test_a_module_entry_stands_for_what_the_module_writes_in_that_namespace():
    reviews = r.expand([{"module": "olm_operator", "namespace": "openshift-nfd"}])
    described = [r.describe(x) for x in reviews]
    assert "create namespaces" in described  # cluster-scoped: no namespace
    assert "create subscriptions.operators.coreos.com in namespace openshift-nfd" in described
    assert "patch installplans.operators.coreos.com in namespace openshift-nfd" in described


def test_repeats_are_asked_once_in_a_stable_order():
    entries = [{"module": "gpu_cc_mode"}, {"resource": "nodes", "verbs": ["patch"]},
               {"resource": "pods", "verbs": "create", "namespace": "a"}]
    assert r.expand(entries) == [
        {"verb": "patch", "group": "", "resource": "nodes", "namespace": None},
        {"verb": "create", "group": "", "resource": "pods", "namespace": "a"}]


@pytest.mark.parametrize("entry,error", [({"module": "olm"}, "is not one of"), ({"resource": "pods"}, "needs module"),
                                         ("pods", "expected a dict")])
def test_an_entry_that_reviews_nothing_is_refused(entry, error):
    with pytest.raises(ValueError, match=error):
        r.expand([entry])


def test_the_review_body_is_a_self_subject_access_review():
    body = r.review_body({"verb": "create", "group": "machineconfiguration.openshift.io",
                          "resource": "machineconfigs", "namespace": None})
    assert body == {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"verb": "create", "group": "machineconfiguration.openshift.io",
                                                    "resource": "machineconfigs"}}}
    assert r.review_body({"verb": "get", "group": "", "resource": "pods", "namespace": "n"})[
        "spec"]["resourceAttributes"]["namespace"] == "n"


def test_decide_splits_by_the_answers_and_a_denial_or_an_evaluation_error_is_not_allowed():
    reviews = r.expand([{"resource": "nodes", "verbs": ["patch", "create", "delete", "update"]}])
    allowed, denied = r.decide(reviews, [
        {"allowed": True}, {"allowed": False, "reason": ""}, {"allowed": True, "denied": True},
        {"allowed": False, "evaluationError": "webhook down"}])
    assert [x["verb"] for x in allowed] == ["patch"]
    assert [(x["verb"], x["reason"]) for x in denied] == [("create", ""), ("delete", ""), ("update", "webhook down")]
    message = r.refusal_message(denied, len(reviews))
    assert message.startswith("The user lacks 3 of the 4 permissions")
    assert "create nodes; delete nodes; update nodes" in message and "Nothing was changed" in message


def test_a_missing_kubeconfig_is_named_with_where_it_came_from(tmp_path):
    missing = str(tmp_path / "nope" / "config")
    from_env = r.kubeconfig_problem(None, {"K8S_AUTH_KUBECONFIG": missing}, str(tmp_path))
    assert missing in from_env and "from K8S_AUTH_KUBECONFIG" in from_env and "does not exist" in from_env
    assert "the kubeconfig option" in r.kubeconfig_problem(missing, {}, str(tmp_path))
    assert "is not a file" in r.kubeconfig_problem(str(tmp_path), {}, str(tmp_path))
    present = tmp_path / "config"
    present.write_text("{}")
    assert r.kubeconfig_problem(str(present), {}, str(tmp_path)) is None
    assert r.kubeconfig_problem({"clusters": []}, {}, str(tmp_path)) is None


def test_without_a_kubeconfig_option_the_clients_default_is_checked(tmp_path):
    home = str(tmp_path)
    default = os.path.join(home, ".kube", "config")
    assert default in r.kubeconfig_problem(None, {}, home)
    assert r.kubeconfig_problem(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, home) is None  # in a pod
    listed = r.kubeconfig_problem(None, {"KUBECONFIG": "/a" + os.pathsep + "/b"}, home)
    assert "KUBECONFIG names /a, /b" in listed
    os.makedirs(os.path.dirname(default))
    Path(default).write_text("{}")
    assert r.kubeconfig_problem(None, {}, home) is None


# -- drift: every kind a role writes with kubernetes.core.k8s is in what its validate.yml declares ----------------

PLURALS = {"Namespace": "namespaces", "Pod": "pods", "Secret": "secrets", "ConfigMap": "configmaps", "Node": "nodes",
           "Route": "routes", "TrusteeConfig": "trusteeconfigs", "KbsConfig": "kbsconfigs", "Deployment": "deployments",
           "KataConfig": "kataconfigs", "ClusterPolicy": "clusterpolicies", "NodeFeatureRule": "nodefeaturerules",
           "NodeFeatureDiscovery": "nodefeaturediscoveries"}


def _k8s_kinds(tasks):
    """Kinds of the kubernetes.core.k8s tasks (state present/patched/absent) anywhere in a task list."""
    for task in tasks or []:
        for nested in ("block", "rescue", "always"):
            yield from _k8s_kinds(task.get(nested))
        args = task.get("kubernetes.core.k8s")
        if isinstance(args, dict):
            kind = args.get("kind") or (args.get("definition") or {}).get("kind") if isinstance(
                args.get("definition"), dict) else args.get("kind")
            if kind and "{{" not in str(kind):
                yield kind


def _declared(role):
    text = (REPO / "roles" / role / "tasks" / "validate.yml").read_text()
    declared = set()
    for task in yaml.safe_load(text):
        for name, value in (task.get("ansible.builtin.set_fact") or {}).items():
            if isinstance(value, list):
                for entry in value:
                    for row in r.expand([{k: v for k, v in entry.items() if k != "namespace"}]):
                        declared.add(row["resource"])
            elif isinstance(value, str):  # a template: take the resources it names
                declared.update(w.strip("'") for w in value.replace(",", " ").split() if w.strip("'").islower())
    return declared


@pytest.mark.parametrize("role", ["nfd", "tee_hosts", "sandboxed_containers", "gpu_operator", "trustee", "smoke"])
def test_what_a_role_writes_is_declared_for_the_review(role):
    kinds = set()
    for path in (REPO / "roles" / role / "tasks").glob("*.yml"):
        kinds.update(_k8s_kinds(yaml.safe_load(path.read_text())))
    missing = sorted(k for k in kinds if PLURALS.get(k, k.lower() + "s") not in _declared(role))
    assert not missing, "roles/{0}: kubernetes.core.k8s writes {1} but tasks/validate.yml does not declare it".format(
        role, missing)
