"""``site.yml --check --diff`` on a fresh twin: nothing written (audit log), every step says what it would do.

Run as users run it: ``confidential.gpu.site`` by its FQCN from the built tarball installed into an empty
collections path, in a directory outside the checkout (scripts/demo.sh does the same for the real run).

Its own twin (a fresh cluster of the default profile), so no other test's writes make the check run
look better than a newcomer's first ``--check`` would. The zero-write re-run after a real run is
measured by ``python -m tests.bench.writes`` (a whole bring-up is too slow for the test suite).
"""

import pytest

from tests.bench.writes import PROBE_NAMESPACE, describe, probe_namespace_left, real_writes, site_command

pytestmark = [pytest.mark.twin, pytest.mark.slow]


@pytest.fixture(scope="module")
def check_run(twin_factory, tmp_path_factory, installed_collection):
    import subprocess

    twin = twin_factory("default", name="checkmode")
    tmp = tmp_path_factory.mktemp("check-mode")
    installed = installed_collection[1]
    cmd, env = site_command(twin.cluster, tmp, check=True, installed=installed)
    start = twin.audit.offset()
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=900, check=False)
    return twin, proc, twin.audit.events(start)


def test_check_mode_writes_nothing(check_run):
    twin, proc, events = check_run
    writes = [describe(e) for e in real_writes(events)]
    assert writes == [], "--check wrote to the cluster:\n" + "\n".join(writes) + "\n" + proc.stdout[-3000:]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert not probe_namespace_left(twin.kube), f"--check created the namespace {PROBE_NAMESPACE}"


def test_check_mode_says_what_each_step_would_do(check_run):
    _twin, proc, _events = check_run
    out = proc.stdout
    # The node probe does not run in check mode on nodes it never probed: it says so, and what it would decide.
    assert "would probe" in out, out[-4000:]
    assert "would reboot" in out.lower(), out[-4000:]
    # Steps that depend on an operator not installed yet say what they would wait for, not only "skipping".
    said = [line for line in out.splitlines() if "Check mode:" in line]
    for step in ("NodeFeatureDiscovery", "MachineConfig", "KataConfig", "ClusterPolicy", "TrusteeConfig"):
        assert any(step in line for line in said), f"no check-mode line about the {step}:\n" + "\n".join(said)


def test_check_mode_ran_the_installed_collection_not_the_checkout(check_run, installed_collection):
    _twin, proc, _events = check_run
    installed = installed_collection[1]
    content = installed / "ansible_collections" / "confidential" / "gpu"
    assert (content / "playbooks" / "site.yml").is_file() and not content.is_symlink()
    assert not (content / "twin").exists() and not (content / "tests").exists()
    assert "confidential.gpu" in proc.stdout and "ERROR" not in proc.stderr, proc.stderr[-2000:]
