"""Issue 14 item 2: site.yml refuses bad input, a missing kubeconfig and missing permissions before its first write.

Every run here is made as ``cgpu-test-reader``, a user the twin's RBAC lets read everything and write nothing:
the audit log records a request whether RBAC allows it or not, so "no write request from that user" proves
the playbook did not try to write before it stopped, and a refusal that came too late cannot change the
shared twin. The reviews of the user's permissions are ``create`` requests on ``selfsubjectaccessreviews``,
which store nothing; ``Window.writes`` leaves them out (twin/audit.py) and the tests count them apart.
"""

import json

import pytest

from tests.conftest import REPO
from twin.controlplane import kubeconfig as make_kubeconfig
from twin.kube import path
from twin.pki import CertificateAuthority

pytestmark = [pytest.mark.twin]

SITE = str(REPO / "playbooks" / "site.yml")
READER = "cgpu-test-reader"
REVIEWS = "selfsubjectaccessreviews"


@pytest.fixture(scope="module")
def reader(twin, tmp_path_factory):
    """A kubeconfig of a user who may get, list and watch everything and change nothing."""
    directory = tmp_path_factory.mktemp("reader")
    ca = CertificateAuthority.load(twin.state / "pki")
    cert, key = ca.issue_to(directory, "reader", READER, client=True)
    config = directory / "reader.kubeconfig"
    config.write_text(json.dumps(make_kubeconfig(twin.cluster.info()["server"], ca.cert_pem, cert, key)))
    rbac = "rbac.authorization.k8s.io/v1"
    twin.kube.create_or_get(path(rbac, "clusterroles"), {
        "apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": READER},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
    twin.kube.create_or_get(path(rbac, "clusterrolebindings"), {
        "apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": READER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": READER}]})
    return str(config)


def site_as_reader(twin, run_playbook, reader, tmp_path, **extra_vars):
    """site.yml as the reader; returns (run, writes other than reviews, review requests)."""
    with twin.audit.window(user=READER) as window:
        run = run_playbook(SITE, env={"K8S_AUTH_KUBECONFIG": reader},
                           extra_vars=dict({"site_report_dir": str(tmp_path / "report")}, **extra_vars))
    tried = [(e["verb"], e["requestURI"], e.get("responseStatus", {}).get("code")) for e in window.events
             if e["verb"] in window.WRITE_VERBS and (e.get("objectRef") or {}).get("resource") != REVIEWS]
    reviews = [e for e in window.events if (e.get("objectRef") or {}).get("resource") == REVIEWS]
    return run, tried, reviews


OUTPUT = REPO / "tests" / "output" / "early-refusal"


def failure(run):
    """The message site.yml stopped with (its last task, 'Fail when a step failed'), kept in tests/output."""
    import os

    result = run.result("Fail when a step failed")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / (os.environ.get("PYTEST_CURRENT_TEST", "run").split("::")[-1].split(" ")[0] + ".txt")).write_text(
        result["msg"] + "\n")
    return result["msg"]


def test_a_bad_gpu_operator_version_is_refused_before_anything_is_written(twin, run_playbook, reader, tmp_path):
    run, tried, reviews = site_as_reader(twin, run_playbook, reader, tmp_path, gpu_operator_version="banana")
    assert run.rc != 0
    message = failure(run)
    assert "gpu_operator_version" in message and "banana" in message and "X.Y.Z" in message, message
    assert "Nothing was changed" in message, message
    assert tried == [], tried
    # Bad input is refused before the cluster is asked anything, permissions included.
    assert reviews == [], len(reviews)


def test_a_bad_preflight_min_version_is_refused_clearly(twin, run_playbook, reader, tmp_path):
    run, tried, _reviews = site_as_reader(twin, run_playbook, reader, tmp_path, preflight_min_version="4.x")
    assert run.rc != 0
    message = failure(run)
    assert "preflight_min_version" in message and "'4.x'" in message and "X.Y or X.Y.Z" in message, message
    assert "not supported between" not in run.stdout
    assert tried == [], tried


def test_a_bad_operator_channel_is_refused_before_anything_is_written(twin, run_playbook, reader, tmp_path):
    run, tried, _reviews = site_as_reader(twin, run_playbook, reader, tmp_path, trustee_operator_channel="stable channel")
    assert run.rc != 0
    message = failure(run)
    assert "trustee_operator_channel" in message and "'stable channel'" in message, message
    assert tried == [], tried


def test_a_choice_outside_the_argument_spec_is_refused_before_anything_is_written(twin, run_playbook, reader, tmp_path):
    # smoke runs last: without the early validation its argument spec is checked only after every reboot.
    run, tried, _reviews = site_as_reader(twin, run_playbook, reader, tmp_path, smoke_tee="sgx")
    assert run.rc != 0
    message = failure(run)
    assert "smoke_tee" in message and "sgx" in message and "tdx" in message, message
    assert tried == [], tried


def test_a_user_without_the_permissions_is_refused_naming_what_is_missing(twin, run_playbook, reader, tmp_path):
    run, tried, reviews = site_as_reader(twin, run_playbook, reader, tmp_path)
    assert run.rc != 0
    message = failure(run)
    for needed in ("create machineconfigs.machineconfiguration.openshift.io",
                   "create kataconfigs.kataconfiguration.openshift.io",
                   "create subscriptions.operators.coreos.com in namespace openshift-nfd",
                   "patch nodes"):
        assert needed in message, (needed, message)
    assert "Nothing was changed" in message, message
    assert tried == [], tried
    assert reviews and all(e["verb"] == "create" for e in reviews)


def test_a_missing_kubeconfig_is_named(run_playbook, tmp_path):
    missing = tmp_path / "no-such-dir" / "kubeconfig"
    run = run_playbook(SITE, env={"K8S_AUTH_KUBECONFIG": str(missing)},
                       extra_vars={"site_report_dir": str(tmp_path / "report")})
    assert run.rc != 0
    message = failure(run)
    assert str(missing) in message and "K8S_AUTH_KUBECONFIG" in message, message


def test_the_review_in_check_mode_asks_the_same_and_writes_nothing(twin, run_playbook):
    playbook = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "review", "register": "review", "confidential.gpu.access_review": {"reviews": [
            {"module": "olm_operator", "namespace": "openshift-nfd"}, {"module": "machine_configs"}]}}]}]
    with twin.audit.window(user="admin") as window:
        run = run_playbook(playbook, env=twin.env(), check=True)
    result = run.result("review")
    assert run.rc == 0 and result["denied"] == [] and result["requests"] == len(result["allowed"]) == 10, result
    assert window.writes == [], [(e["verb"], e["requestURI"]) for e in window.writes]
    assert len(window.reviews) == 10 and all("dryRun=All" in e["requestURI"] for e in window.reviews)
