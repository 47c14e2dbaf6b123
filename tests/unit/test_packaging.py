"""The collection as users take it: the built tarball, its declared dependencies, and docs that render.

The tarball is built and installed (offline, into an empty collections path) once per session by the
``installed_collection`` fixture; tests/twin/test_check_mode.py runs ``confidential.gpu.site`` from it, and
the execution environment's build context is made from it here (no container runtime runs the build)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

from tests.conftest import REPO

GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
DECLARED = GALAXY["dependencies"]
# Collections that need no declaration: ansible-core's own and this one.
BUILT_IN = {"ansible.builtin", "ansible.legacy", "confidential.gpu"}
NAME = r"([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+"
# Where content names another collection's plugin: a task's module, a role, a lookup or filter, a
# module_defaults or action group, a doc fragment, and Python imports in plugins.
YAML_USES = [
    re.compile(rf"^\s*(?:-\s+)?{NAME}:", re.M),  # a task's module
    re.compile(rf"^\s*(?:-\s+)?(?:role|name):\s+{NAME}\s*$", re.M),  # include_role / roles:
    re.compile(rf"(?:lookup|query)\(\s*['\"]{NAME}"),
    re.compile(rf"\|\s*{NAME}"),
    re.compile(rf"group/{NAME}"),
    re.compile(rf"^\s*-\s+{NAME}\s*$", re.M),  # action-group members, doc-fragment lists
]
PYTHON_USES = [re.compile(r"ansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)"),
               re.compile(rf"^\s*-\s+{NAME}\s*$", re.M)]


def collections_used():
    """{collection: [files that use it]} over the content that ships (roles, playbooks, meta, plugins)."""
    used = {}
    for folder, patterns, suffixes in (("roles", YAML_USES, (".yml", ".yaml", ".j2")),
                                       ("playbooks", YAML_USES, (".yml", ".yaml")),
                                       ("meta", YAML_USES, (".yml",)),
                                       ("plugins", PYTHON_USES + YAML_USES[2:4], (".py", ".yml"))):
        for file in sorted((REPO / folder).rglob("*")):
            if file.suffix not in suffixes:
                continue
            text = file.read_text()
            for pattern in patterns:
                for namespace, name in pattern.findall(text):
                    used.setdefault(f"{namespace}.{name}", set()).add(str(file.relative_to(REPO)))
    return used


def installed_version(collection):
    """The version the ``ansible`` package brought, which is what the tests run with."""
    namespace, name = collection.split(".")
    import ansible_collections

    for root in ansible_collections.__path__:
        manifest = Path(root) / namespace / name / "MANIFEST.json"
        if manifest.is_file():
            return json.loads(manifest.read_text())["collection_info"]["version"]
    return None


def test_every_collection_the_content_uses_is_declared_and_nothing_more():
    used = collections_used()
    # The scan must see what is known to be there, or a broken pattern would pass everything.
    assert {"kubernetes.core", "community.crypto", "ansible.builtin"} <= set(used)
    undeclared = {c: sorted(files) for c, files in used.items() if c not in BUILT_IN and c not in DECLARED}
    assert not undeclared, f"used but not in galaxy.yml dependencies: {undeclared}"
    unused = set(DECLARED) - set(used)
    assert not unused, f"declared in galaxy.yml but used nowhere: {sorted(unused)}"


def test_declared_ranges_hold_the_versions_the_tests_run_with():
    for collection, wanted in DECLARED.items():
        have = installed_version(collection)
        assert have, f"{collection} is not installed (it comes from the ansible package in test-requirements.txt)"
        assert meets_requirements(have, wanted), f"{collection} {have} is outside galaxy.yml's {wanted!r}"


def builder_tool(name):
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def ee_context(installed_collection, tmp_path_factory):
    """``ansible-builder create`` on execution-environment.yml, laid out as in the checkout after
    ``ansible-galaxy collection build --output-path build/dist .``: returns the build context."""
    tarball = installed_collection[0]
    base = tmp_path_factory.mktemp("ee")
    shutil.copy(REPO / "execution-environment.yml", base)
    (base / "build" / "dist").mkdir(parents=True)
    shutil.copy(tarball, base / "build" / "dist")
    subprocess.run([builder_tool("ansible-builder"), "create", "-f", str(base / "execution-environment.yml"),
                    "-c", str(base / "context"), "--output-filename", "Containerfile"],
                   cwd=base, check=True, capture_output=True, text=True)
    return base / "context"


def test_the_execution_environment_builds_on_a_base_image_given_as_a_build_argument(ee_context):
    containerfile = (ee_context / "Containerfile").read_text()
    assert re.search(r'^ARG EE_BASE_IMAGE="[^"]+"$', containerfile, re.M), containerfile[:500]
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]+)"$', containerfile, re.M).group(1).split()
    # The image runs the ansible-core and ansible-runner the tests run with.
    assert {f"ansible-core=={version('ansible-core')}", f"ansible-runner=={version('ansible-runner')}"} <= set(refs), refs


def test_the_execution_environment_installs_what_the_collection_declares(ee_context, tmp_path):
    """Its galaxy and builder stages, run here on the context: the collection from the context's
    requirements.yml (in _build, as the image does), then builder's own introspection of it."""
    galaxy = yaml.safe_load((ee_context / "_build" / "requirements.yml").read_text())
    assert [c["type"] for c in galaxy["collections"]] == ["file"], galaxy
    installed = tmp_path / "collections"
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    # Offline: the dependencies are found installed (the ansible package); in the image Galaxy brings them.
    subprocess.run([builder_tool("ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml",
                    "-p", str(installed)], cwd=ee_context / "_build", env=env, check=True, capture_output=True, text=True)
    manifest = json.loads((installed / "ansible_collections" / "confidential" / "gpu" / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == GALAXY["version"]
    assert manifest["collection_info"]["dependencies"] == DECLARED

    ee_meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert "galaxy" not in ee_meta.get("dependencies", {}), "ansible-builder ignores collections there: galaxy.yml has them"
    done = subprocess.run([sys.executable, str(ee_context / "_build" / "scripts" / "introspect.py"), "introspect",
                           str(installed)], capture_output=True, text=True, check=True)
    found = sorted(line.split("#")[0].strip() for line in yaml.safe_load(done.stdout)["python"])
    wanted = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    # PyYAML is on builder's list of what every base image already has, so it drops it.
    assert found == sorted(line for line in wanted if line and not line.lower().startswith("pyyaml")), found


def test_the_tarball_holds_the_content_and_nothing_of_the_checkout(installed_collection):
    tarball = installed_collection[0]
    with tarfile.open(tarball) as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    shipped = [f for f in tracked if f.split("/")[0] in ("plugins", "roles", "playbooks", "meta", "docs", "changelogs")]
    missing = sorted(set(shipped) - members - {"changelogs/.plugin-cache.yaml"})
    assert not missing, f"content left out of the tarball: {missing}"
    leaked = sorted(m for m in members if m.split("/")[0] in ("twin", "tests", "scripts", "extensions", ".ci", "build")
                    or "__pycache__" in m or m.endswith(".pyc"))
    assert not leaked, f"the tarball carries what users must not get: {leaked[:20]}"
    assert {"MANIFEST.json", "FILES.json", "README.md", "requirements.txt"} <= members


def ansible_doc(installed, *args):
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_NOCOLOR": "1", "PATH": str(Path(sys.executable).parent),
           "ANSIBLE_HOME": str(installed.parent / "ansible-home")}
    return subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), *args],
                          capture_output=True, text=True, env=env, check=False)


def test_ansible_doc_renders_every_module_filter_and_role_from_the_installed_collection(installed_collection):
    installed = installed_collection[1]
    expected = {
        "module": sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__"),
        "filter": sorted(p.stem for p in (REPO / "plugins" / "filter").glob("*.yml")),
        "role": sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file()),
    }
    assert len(expected["role"]) == len(list((REPO / "roles").iterdir())), "a role without meta/argument_specs.yml"
    for kind, names in expected.items():
        done = ansible_doc(installed, "-t", kind, "--json", *[f"confidential.gpu.{n}" for n in names])
        assert done.returncode == 0 and not done.stderr.strip(), f"ansible-doc -t {kind}: {done.stderr}"
        docs = json.loads(done.stdout)
        assert sorted(docs) == [f"confidential.gpu.{n}" for n in names], f"{kind}: {sorted(docs)}"
        for name, doc in docs.items():
            body = doc.get("doc") or doc.get("entry_points") or {}
            assert body, f"{name} has no documentation"
            if kind != "role":
                assert body.get("short_description") and body.get("description"), name
                assert doc.get("examples"), f"{name} has no EXAMPLES"


def test_the_twin_is_versioned_with_the_collection():
    """twin/pyproject.toml reads its version from twin.__version__ (tests/twin/test_twin_wheel.py builds the wheel)."""
    import twin

    assert twin.__version__ == GALAXY["version"]
    assert 'version = {attr = "twin.__version__"}' in (REPO / "twin" / "pyproject.toml").read_text()
