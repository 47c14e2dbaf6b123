"""Test-wide settings: where ../shared is, and how the collection is importable."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The team's shared material (real CRDs, reference notes) lives beside the checkout; one setting.
SHARED = Path(os.environ.get("CGPU_SHARED_DIR", REPO.parent / "shared"))
COLLECTIONS = REPO / "build" / "collections"

# ansible_collections.confidential.gpu resolves through build/collections (scripts/setup.sh links it).
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def shared_path(*parts) -> Path:
    """A path under ../shared; without it a skip that says why, or a failure in CI.

    A developer machine may have only the project, so the test skips there. CI (``CI`` set in the
    environment, as every CI service does) must have the judge files: a skip there would hide that
    the conformance checks did not run, so it fails instead.
    """
    path = SHARED.joinpath(*parts)
    if not path.exists():
        setting = os.environ.get("CGPU_SHARED_DIR")
        reason = (f"{path} is absent: the team's shared folder is needed (set CGPU_SHARED_DIR; it is "
                  + (repr(setting) if setting is not None else f"unset, so {REPO.parent / 'shared'}") + ")")
        skip_or_fail(reason, "a missing shared file")
    return path


def skip_or_fail(reason, what):
    """Skip saying ``reason``; in CI (``CI`` set) fail instead: there ``what`` must not hide a check that did not run."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI is set, so {what} fails instead of skipping", pytrace=False)
    pytest.skip(reason)


# -- the twin cluster -------------------------------------------------------------------------------
#
# The default twin for the whole session; others (another profile, or a named second cluster) started on
# first use and stopped when the module that started them is done; a namespace per test; an audit window to count a block's API requests. With
# ``--twin-crds=upstream`` the twins load the real upstream CRDs from ../shared/crds.

import json  # noqa: E402
import os as _os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import yaml  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--twin-crds", choices=("twin", "upstream"), default=os.environ.get("CGPU_TWIN_CRDS", "twin"),
                     help="CRDs the twin clusters serve: the team's own, or the real ones from ../shared/crds")


def pytest_configure(config):
    config.addinivalue_line("markers", "twin: needs a twin cluster (starts one per profile per session)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


class TwinHandle:
    """What a test needs of a running twin."""

    def __init__(self, cluster, profile):
        from twin.audit import AuditLog

        self.cluster = cluster
        self.profile = profile
        self.kubeconfig = str(cluster.kubeconfig)
        self.kube = cluster.kube("admin")
        self.audit = AuditLog(cluster.state / "logs" / "audit.log")
        self.state = cluster.state

    def env(self):
        """Environment for ansible-playbook/molecule: kubernetes.core reads K8S_AUTH_*."""
        return {"K8S_AUTH_KUBECONFIG": self.kubeconfig}

    def set_faults(self, faults, timeout=30):
        """Replace the runtime faults (see twin.controllers.faults) and wait until the twin acts on them."""
        from twin.controllers.faults import OBSERVED, faults_digest
        from twin.kube import path

        text = yaml.safe_dump(faults)
        cm = path("v1", "configmaps", "twin-faults", "twin-system")
        written = self.kube.merge_patch(cm, {"data": {"faults.yaml": text}})
        want = faults_digest(text)
        if (written["metadata"].get("annotations") or {}).get(OBSERVED) == want:
            return
        version = written["metadata"]["resourceVersion"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for kind, obj in self.kube.watch(path("v1", "configmaps", namespace="twin-system"), version,
                                             timeout_seconds=max(1, int(deadline - time.monotonic()))):
                version = obj["metadata"].get("resourceVersion", version)
                if kind != "BOOKMARK" and obj["metadata"].get("name") == "twin-faults" and \
                        (obj["metadata"].get("annotations") or {}).get(OBSERVED) == want:
                    return
        raise AssertionError(f"the twin did not take the faults {faults!r} within {timeout}s")


@pytest.fixture(scope="session")
def twin_crds(request):
    mode = request.config.getoption("--twin-crds")
    if mode == "upstream":
        return shared_path("crds")
    return None


# Twins started through twin_factory, by (profile, name); the default twin lives for the session.
STARTED_TWINS = {}
SESSION_TWIN = ("default", None)


def _stop_twin(key):
    handle = STARTED_TWINS.pop(key)
    survivors = handle.cluster.down()
    _keep_logs(handle)
    assert not survivors, f"twin processes left running after down: {survivors}"


@pytest.fixture(scope="session")
def twin_factory(tmp_path_factory, twin_crds):
    from twin.cluster import Cluster

    def get(profile="default", name=None):
        """A twin of ``profile``; ``name`` starts another cluster of the same profile (its own apps domain).

        Keyed by both: two modules asking for ``name="trusted"`` of different profiles get different twins,
        never one that another module has already configured."""
        key = (profile, name)
        if key not in STARTED_TWINS:
            state = tmp_path_factory.mktemp(f"twin-{name or profile}")
            cluster = Cluster(f"test-{name or profile}", state)
            spec = profile
            if name:
                from twin import profile as profiles

                spec = profiles.load(profile)
                spec["openshift"]["cluster_name"] = name
                spec["openshift"]["apps_domain"] = f"apps.{name}.{spec['openshift']['base_domain']}"
            cluster.up(spec, conformance=twin_crds, log=lambda msg: None)
            STARTED_TWINS[key] = TwinHandle(cluster, profile)
        return STARTED_TWINS[key]

    yield get
    for key in list(STARTED_TWINS):
        _stop_twin(key)


@pytest.fixture(scope="module", autouse=True)
def module_twins_stopped():
    """Stop the twins a test module started once the module is done (all but the session's default twin).

    Each twin is an apiserver, etcd, controller manager, scheduler and the operator twins: left running to the
    end of the session, a dozen of them slow every later test on a small CI machine."""
    before = set(STARTED_TWINS)
    yield
    for key in [key for key in STARTED_TWINS if key not in before and key != SESSION_TWIN]:
        _stop_twin(key)


def _keep_logs(handle):
    """Copy the twin's logs to tests/output so CI keeps them as artifacts."""
    import shutil

    target = REPO / "tests" / "output" / "twin-logs" / handle.cluster.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(handle.state / "logs", target, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def twin(twin_factory):
    """The default twin: 3 TDX workers with H100."""
    return twin_factory("default")


@pytest.fixture
def namespace(twin, request):
    from twin.kube import path

    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    twin.kube.create(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    twin.kube.delete(path("v1", "namespaces", name))


# -- running playbooks the way users do ---------------------------------------------------------------


class PlaybookRun:
    def __init__(self, proc):
        self.proc = proc
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.json = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            self.json = None

    def results(self, task_name):
        """Per-host results of the named task (json callback)."""
        found = []
        for play in (self.json or {}).get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] == task_name:
                    found.extend(task["hosts"].values())
        return found

    def result(self, task_name):
        results = self.results(task_name)
        assert results, f"task {task_name!r} did not run; stderr: {self.stderr[-2000:]}"
        return results[0]

    @property
    def stats(self):
        return (self.json or {}).get("stats", {})


def ansible_env(extra=None):
    env = dict(_os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOME": str(REPO / "build" / "ansible-home"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
    })
    env.update(extra or {})
    return env


@pytest.fixture
def run_playbook(tmp_path):
    """run_playbook(playbook_yaml_or_path_or_fqcn, env=twin.env(), extra_vars={}, check=False, diff=False, args=[], cwd=REPO)."""

    def run(playbook, env=None, extra_vars=None, check=False, diff=False, args=(), callback="json", cwd=REPO):
        if isinstance(playbook, (str,)) and "\n" in playbook or isinstance(playbook, list):
            file = tmp_path / f"playbook-{uuid.uuid4().hex[:6]}.yml"
            file.write_text(playbook if isinstance(playbook, str) else yaml.safe_dump(playbook))
            playbook = file
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        cmd += list(args)
        extra = dict(env or {})
        if callback != "json":
            extra["ANSIBLE_STDOUT_CALLBACK"] = callback
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(extra), cwd=cwd, timeout=900, check=False)
        return PlaybookRun(proc)

    return run


# -- the collection as users install it ----------------------------------------------------------------


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory):
    """Build the collection's tarball and install it, offline, into an empty collections path.

    Its dependencies are not installed there: they come from the ``ansible`` package, as on a machine that
    ran ``pip install ansible`` (ansible-galaxy finds them installed and skips them). Returns
    ``(tarball, collections_path)``; nothing of the checkout is on that path."""
    base = tmp_path_factory.mktemp("installed-collection")
    galaxy = str(Path(sys.executable).parent / "ansible-galaxy")
    env = dict(_os.environ, ANSIBLE_HOME=str(base / "ansible-home"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    subprocess.run([galaxy, "collection", "build", "--output-path", str(base / "dist"), str(REPO)],
                   check=True, capture_output=True, text=True, env=env, cwd=base)
    tarball, = (base / "dist").glob("confidential-gpu-*.tar.gz")
    installed = base / "collections"
    subprocess.run([galaxy, "collection", "install", "--offline", "-p", str(installed), str(tarball)],
                   check=True, capture_output=True, text=True, env=env, cwd=base)
    return tarball, installed
