"""Issue 15 item 3: a job template of roles/aap_controller run on the twin as AAP launches it.

What a controller hands ansible-runner in the execution environment, made here from the same definitions the
role writes: the survey's answers (each question's default, from the roles' argument specs) and the job
template's extra_vars as extra vars, the credential type's injectors applied to a kubeconfig (a file, and
K8S_AUTH_KUBECONFIG naming it), the inventory's localhost, the project's playbooks, and the collection
installed from its tarball (the execution environment has it in its collections path)."""

import os
import shutil
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.confidential.gpu.plugins.module_utils import aap_survey
from tests.conftest import REPO

pytestmark = [pytest.mark.twin]

ROLE = REPO / "roles" / "aap_controller"


class _TasksLoader(yaml.SafeLoader):
    """Reads the role's tasks with Ansible's !unsafe tag (the injectors are templates for the controller)."""


_TasksLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def role_task(module):
    tasks = yaml.load((ROLE / "tasks" / "main.yml").read_text(), Loader=_TasksLoader)  # noqa: S506 - SafeLoader subclass
    found = [t for block in tasks for t in block.get("block", [block]) if module in t]
    assert len(found) == 1, f"one {module} task expected in roles/aap_controller"
    return found[0][module]


def launch(template_name, kubeconfig, installed, private):
    """The private data directory a controller would give ansible-runner for the job template, and its envvars."""
    template = next(t for t in yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["aap_controller_job_templates"]
                    if t["name"] == template_name)
    specs = [yaml.safe_load((REPO / "roles" / r / "meta" / "argument_specs.yml").read_text()) for r in template["roles"]]
    survey = aap_survey.survey_spec(template["survey"], specs, name=template_name)
    extravars = {q["variable"]: q["default"] for q in survey["spec"] if "default" in q}
    extravars.update(template.get("extra_vars") or {})
    # The credential: its type's injectors, rendered as the controller renders them for a job.
    injectors = role_task("awx.awx.credential_type")["injectors"]
    assert set(role_task("awx.awx.credential")["inputs"]) == {"kubeconfig"}
    kubeconfig_file = private / "env" / "kubeconfig"
    context = {"kubeconfig": Path(kubeconfig).read_text(), "tower": {"filename": {"kubeconfig": str(kubeconfig_file)}}}
    (private / "env").mkdir(parents=True)
    kubeconfig_file.write_text(jinja2.Template(injectors["file"]["template.kubeconfig"]).render(context))
    envvars = {name: jinja2.Template(value).render(context) for name, value in injectors["env"].items()}
    host = role_task("awx.awx.host")
    inventory = {"all": {"hosts": {host["name"]: host.get("variables") or {}}}}
    shutil.copytree(REPO / "playbooks", private / "project" / "playbooks")
    # The execution environment: the installed collection on its collections path, HOME its /runner.
    envvars.update({"ANSIBLE_COLLECTIONS_PATH": str(installed), "HOME": str(private), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_LOCALHOST_WARNING": "false"})
    return template, extravars, envvars, inventory


def test_the_preflight_job_template_runs_on_the_twin_as_aap_launches_it(twin, installed_collection, tmp_path,
                                                                        monkeypatch):
    import ansible_runner

    # The execution environment has ansible-playbook on its PATH; here it is this virtualenv's.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    private = tmp_path / "job"
    template, extravars, envvars, inventory = launch("preflight", twin.kubeconfig, installed_collection[1], private)
    assert sorted(extravars) == sorted(template["survey"]), extravars  # every question has a default
    result = ansible_runner.run(private_data_dir=str(private), playbook=template["playbook"], inventory=inventory,
                                extravars=extravars, envvars=envvars, quiet=True, timeout=600)
    output = result.stdout.read()
    assert (result.status, result.rc) == ("successful", 0), output[-4000:]
    assert envvars["K8S_AUTH_KUBECONFIG"] == str(private / "env" / "kubeconfig")
    report = private / "cgpu-report" / "preflight.json"
    assert report.is_file(), output[-3000:]
    assert '"overall"' in report.read_text()


PREFIX = "confidential.gpu.aap_controller : "  # how the json callback names a role's tasks
CONTROLLER = {"aap_controller_host": "https://127.0.0.1:9", "aap_controller_project_scm_url": "https://example.invalid/x.git",
              "aap_controller_execution_environment_image": "confidential-gpu-ee:latest",
              "aap_controller_cluster_kubeconfig": "apiVersion: v1\nkind: Config\n# a secret\n"}


def test_a_survey_no_question_can_ask_stops_the_role_before_the_controller_is_asked(run_playbook):
    templates = [{"name": "site", "playbook": "playbooks/site.yml", "roles": ["gpu_operator"],
                  "survey": ["gpu_operator_version", "gpu_operator_wait"]}]
    run = run_playbook(REPO / "playbooks" / "aap_controller.yml",
                       extra_vars=dict(CONTROLLER, aap_controller_job_templates=templates))
    assert run.rc != 0
    failed = run.result(f"{PREFIX}Make each job template's survey from the roles' argument specs")
    message = failed["results"][0]["msg"]
    assert "gpu_operator_wait" in message and "bool" in message, message
    assert not run.results(f"{PREFIX}A credential type that hands each job the cluster's kubeconfig"), "the controller was asked"


def test_the_shipped_job_templates_get_their_surveys_and_the_kubeconfig_stays_out_of_the_output(run_playbook):
    run = run_playbook(REPO / "playbooks" / "aap_controller.yml", extra_vars=CONTROLLER)
    # No controller listens on 127.0.0.1:9: the first write is where it stops, with every survey made.
    assert run.rc != 0
    surveys = run.results(f"{PREFIX}Make each job template's survey from the roles' argument specs")[0]["results"]
    assert [r["item"]["name"] for r in surveys] == ["preflight", "site", "smoke", "teardown", "upgrade"]
    assert run.results(f"{PREFIX}A credential type that hands each job the cluster's kubeconfig")[0].get("failed")
    assert "a secret" not in run.stdout + run.stderr
