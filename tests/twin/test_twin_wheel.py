"""Issue 15 item 7: the twin as users of the installed collection get it, from its own wheel.

The wheel is built from twin/pyproject.toml (from a copy, so the checkout stays clean), installed with its
dependencies from the package index into a fresh virtualenv, and its ``twin`` command starts a twin from
a directory outside the checkout. The collection, built and installed from its tarball, then runs its
preflight against that twin, as the README's rehearsal path for an installed collection does.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.twin, pytest.mark.slow]


def _run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{cmd}: rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_twin_from_its_wheel_in_a_fresh_virtualenv_rehearses_the_installed_collection(
        installed_collection, tmp_path):
    source = tmp_path / "src" / "twin"
    shutil.copytree(REPO / "twin", source, ignore=shutil.ignore_patterns("__pycache__", "target", "build", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist", source])
    (wheel,) = (tmp_path / "dist").glob("confidential_gpu_twin-*.whl")
    galaxy_version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert wheel.name.startswith(f"confidential_gpu_twin-{galaxy_version}-"), "the twin is versioned with the collection"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    twin = [venv / "bin" / "twin", "--name", "wheel", "--state-dir", tmp_path / "state"]
    shipped = _run(twin + ["profiles"], cwd=outside).stdout
    assert "snp-rtx-pro-6000" in shipped and "default" in shipped
    where = _run([venv / "bin" / "python", "-c", "import twin; print(twin.__file__)"], cwd=outside).stdout
    assert str(venv) in where, f"twin imported from {where}, not from the virtualenv"

    _run(twin + ["up", "--profile", "default"], cwd=outside, timeout=600)
    try:
        env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(tmp_path / "state" / "admin.kubeconfig"),
                   ANSIBLE_COLLECTIONS_PATH=str(installed_collection[1]), ANSIBLE_HOME=str(tmp_path / "ansible-home"),
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        env.pop("PYTHONPATH", None)
        report = tmp_path / "preflight.json"
        _run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
              "confidential.gpu.preflight", "-e", json.dumps({"preflight_report_path": str(report)})],
             cwd=outside, env=env, timeout=600)
        verdicts = json.loads(report.read_text())
        print("preflight on the twin from the wheel:", verdicts.get("overall"),
              [(v["name"], v["status"]) for v in verdicts.get("verdicts", [])][:12])
        assert verdicts["overall"] in ("pass", "warn"), verdicts
    finally:
        _run(twin + ["down"], cwd=outside)
