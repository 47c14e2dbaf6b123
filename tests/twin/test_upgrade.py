"""An upgrade on the twin: a bring-up at older operator versions, moved to newer ones by playbooks/upgrade.yml.

The bring-up (site.yml, without the proof) pins NFD 4.21.0, OSC 1.12.0, the GPU operator 26.3.1 and Trustee
1.1.0, with the reference values of two releases (a cluster that was upgraded once before: 4.21.8 and the
4.21.9 it runs). Then:

* ``upgrade.yml --check`` prints the plan and writes nothing;
* a path the catalog does not offer is refused before any write, naming the operator and why;
* ``upgrade.yml`` moves all four (each InstallPlan approved, nothing past the target), proves the result with the
  new values (4.21.9 alone) accepted beside the current ones, retires the 4.21.8 values and proves it again;
* values of a release the cluster does not run (4.21.10) are not retired into: the proof without the current
  ones fails and both sets stay.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.writes import describe, real_writes, site_command
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

OLD = {"nfd_version": "4.21.0", "sandboxed_containers_version": "1.12.0", "gpu_operator_version": "26.3.1",
       "trustee_operator_version": "1.1.0"}
NEW = {"nfd_version": "4.21.1", "sandboxed_containers_version": "1.12.1", "gpu_operator_version": "26.3.3",
       "trustee_operator_version": "1.2.1"}
SUBSCRIPTIONS = {"nfd": "openshift-nfd", "sandboxed-containers-operator": "openshift-sandboxed-containers-operator",
                 "gpu-operator-certified": "nvidia-gpu-operator", "trustee-operator": "trustee-operator-system"}
RVPS = ("v1", "configmaps", "trustee-config-rvps-reference-values", "trustee-operator-system")


def _values(tmp, name, *releases):
    """The twin's veritas for these releases, with the kernel parameter the proof's pod adds."""
    out = tmp / name
    command = [sys.executable, "-m", "twin.tee", "reference-values", "--profile", "default",
               "--kernel-cmdline-extra", "agent.guest_components_rest_api=all"]
    for release in releases:
        command += ["--ocp-version", release]
    out.write_text(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return out


def _mr_td(values_file):
    return next(v["value"] for v in json.loads(values_file.read_text()) if v["name"] == "mr_td")


def _run(handle, tmp, playbook, extra, check=False):
    cmd, env = site_command(handle.cluster, tmp, check=check, extra_vars=extra, playbook=playbook)
    return subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=2400, check=False)


def _installed(kube):
    return {package: (kube.get(path("operators.coreos.com/v1alpha1", "subscriptions", package, namespace))
                      .get("status") or {}).get("installedCSV") for package, namespace in SUBSCRIPTIONS.items()}


def _accepted_mr_td(kube):
    """The mr_td values Trustee's RVPS holds, whichever of the two layouts its version reads."""
    data = kube.get(path(*RVPS))["data"]
    if "reference-values.json" in data:
        entries = json.loads(data["reference-values.json"])
        return sorted(next(e["value"] for e in entries if e["name"] == "mr_td"))
    import base64
    records = {k: json.loads(base64.b64decode(v)) for k, v in json.loads(data["reference_value"]).items()}
    return sorted(records["mr_td"]["value"])


@pytest.fixture(scope="module")
def older(twin_factory, tmp_path_factory):
    handle = twin_factory("default", name="upgrade")
    tmp = tmp_path_factory.mktemp("upgrade")
    both = _values(tmp, "values-4.21.8-4.21.9.json", "4.21.8", "4.21.9")
    new = _values(tmp, "values-4.21.9.json", "4.21.9")
    proc = _run(handle, tmp, "site", dict(OLD, site_prove=False, trustee_reference_values_sources=[str(both)]))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert _installed(handle.kube) == {p: "{0}.v{1}".format(p, v) for p, v in zip(SUBSCRIPTIONS, OLD.values())}
    return handle, tmp, {"trustee_reference_values_sources": [str(both)],
                         "upgrade_reference_values_sources": [str(new)]}, (both, new)


def test_upgrade_check_mode_prints_the_plan_and_writes_nothing(older):
    handle, tmp, values, _files = older
    start = handle.audit.offset()
    proc = _run(handle, tmp, "upgrade", dict(NEW, **values), check=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert [describe(e) for e in real_writes(handle.audit.events(start))] == []
    for package, version in zip(SUBSCRIPTIONS, NEW.values()):
        assert "{0}: {0}.v".format(package) in proc.stdout and "-> {0}.v{1} (channel".format(package, version) \
            in proc.stdout, proc.stdout[-6000:]
    assert "the real run retires the current reference values once" in proc.stdout, proc.stdout[-3000:]


def test_a_path_the_catalog_does_not_offer_is_refused_before_any_write(older):
    """In channel stable, 26.7.0's olm.skipRange takes 26.3.1 straight past 26.3.3: OLM cannot stop there."""
    handle, tmp, values, _files = older
    start = handle.audit.offset()
    proc = _run(handle, tmp, "upgrade", dict(NEW, gpu_operator_channel="stable", **values))
    assert proc.returncode != 0
    assert "Upgrade refused before any change: gpu-operator-certified" in proc.stdout, proc.stdout[-4000:]
    assert "straight to gpu-operator-certified.v26.7.0" in proc.stdout, proc.stdout[-4000:]
    assert [describe(e) for e in real_writes(handle.audit.events(start))] == []


def test_upgrade_moves_every_operator_proves_it_and_retires_the_old_values(older):
    handle, tmp, values, (both, new) = older
    kube = handle.kube
    assert _accepted_mr_td(kube) == sorted(_mr_td(both))
    start = handle.audit.offset()
    proc = _run(handle, tmp, "upgrade", dict(NEW, **values))
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert _installed(kube) == {p: "{0}.v{1}".format(p, v) for p, v in zip(SUBSCRIPTIONS, NEW.values())}
    approved = sorted({e["objectRef"]["namespace"] for e in real_writes(handle.audit.events(start))
                       if e["objectRef"].get("resource") == "installplans" and e["verb"] in ("patch", "update")})
    assert approved == sorted(SUBSCRIPTIONS.values()), approved
    # Trustee now accepts only the release the guests run, and the proof passed with that alone.
    assert _accepted_mr_td(kube) == sorted(_mr_td(new)) and len(_mr_td(both)) > len(_mr_td(new))
    # The report is the last proof's: the one with the new values alone.
    assert "The proof again, with the new reference values alone" in proc.stdout
    print("upgrade: the plan:\n" + "\n".join(line.strip() for line in proc.stdout.splitlines() if " -> " in line))
    proof = json.loads((tmp / "report" / "report.json").read_text())["proof"]
    print("upgrade: the proof after it:", json.dumps([(c["name"], c["status"]) for c in proof["checks"]]))
    assert proof["ran"] is True and proof["passed"] is True, proof


def test_retiring_values_the_guests_do_not_measure_is_undone(older):
    """New values for a release the cluster does not run: the proof with both sets passes, the one with the new
    set alone fails, and Trustee is left accepting both, the run saying why."""
    handle, tmp, values, (both, _new) = older
    elsewhere = _values(tmp, "values-4.21.10.json", "4.21.10")
    # The positive pod is what fails here; the refused-pod cases of the proof are left out (tested above).
    proc = _run(handle, tmp, "upgrade", dict(NEW, trustee_reference_values_sources=values[
        "upgrade_reference_values_sources"], upgrade_reference_values_sources=[str(elsewhere)], smoke_twin_faults=False))
    assert proc.returncode != 0
    assert "With only the new reference values" in proc.stdout and "Trustee accepts both sets again" in proc.stdout, \
        proc.stdout[-5000:]
    accepted = set(_accepted_mr_td(handle.kube))
    current = Path(values["upgrade_reference_values_sources"][0])
    assert set(_mr_td(elsewhere)) | set(_mr_td(current)) <= accepted, accepted
    proof = json.loads((tmp / "report" / "report.json").read_text())["proof"]
    assert proof["passed"] is False, proof
