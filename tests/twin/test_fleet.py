"""Issue 15 item 6: a fleet. Three twins at once, one of them broken, through site.yml with Ansible's forks.

Each inventory host is a cluster: its kubeconfig (cgpu_kubeconfig) and its own variables (the KBS address,
the TEE, the reference values of its guest) as host vars. The broken one (OpenShift 4.20) is refused at its
preflight and writes nothing; the two others are brought up and proven side by side; every cluster's report
is kept in its own directory, and one fleet summary (JSON and HTML) says which are READY and why not.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.bench.writes import describe, real_writes
from tests.conftest import REPO, ansible_env

pytestmark = [pytest.mark.twin, pytest.mark.slow]

CLUSTERS = {"cluster-a": "default", "cluster-b": "snp-rtx-pro-6000", "cluster-c": "broken-ocp-4.20"}


def _out(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def _host_vars(handle, profile, tmp):
    values = tmp / f"values-{profile}.json"
    values.write_text(_out("-m", "twin.tee", "reference-values", "--profile", profile,
                           "--kernel-cmdline-extra", "agent.guest_components_rest_api=all"))
    return {"cgpu_kubeconfig": str(handle.state / "admin.kubeconfig"),
            "trustee_kbs_resolve": [_out("-m", "twin", "--state-dir", str(handle.state), "resolve",
                                         "kbs-trustee-operator-system")],
            "trustee_tee": _out("-m", "twin.tee", "tee", "--profile", profile),
            "trustee_reference_values_sources": [str(values)]}


def test_site_over_three_clusters_at_once_keeps_reports_apart_and_a_broken_one_stops_only_itself(
        twin_factory, tmp_path):
    handles = {name: twin_factory(profile, name="fleet-" + name) for name, profile in CLUSTERS.items()}
    inventory = {"clusters": {"hosts": {name: _host_vars(handles[name], profile, tmp_path)
                                        for name, profile in CLUSTERS.items()}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    reports = tmp_path / "report"
    starts = {name: h.audit.offset() for name, h in handles.items()}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
           str(REPO / "playbooks" / "site.yml"), "--forks", "3", "-e", "@" + str(REPO / "scripts" / "demo-vars.yml"),
           "-e", json.dumps({"cgpu_clusters": "clusters", "cgpu_report_root": str(reports)})]
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"})
    env.pop("K8S_AUTH_KUBECONFIG", None)  # only the host vars say which cluster is which
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=2400, check=False)
    (tmp_path / "fleet.log").write_text(proc.stdout + proc.stderr)
    recap = {line.split()[0]: line for line in proc.stdout.split("PLAY RECAP", 1)[-1].splitlines() if ":" in line}
    print("\n".join(recap.values()))
    assert proc.returncode != 0, "a cluster failed, so the run must"
    assert "failed=0" in recap["cluster-a"] and "failed=0" in recap["cluster-b"], proc.stdout[-6000:]
    assert "failed=1" in recap["cluster-c"], proc.stdout[-6000:]

    verdicts = {name: json.loads((reports / name / "report.json").read_text())["verdict"] for name in CLUSTERS}
    assert verdicts["cluster-a"]["ready"] and verdicts["cluster-b"]["ready"], verdicts
    assert not verdicts["cluster-c"]["ready"]
    assert any("preflight" in reason for reason in verdicts["cluster-c"]["reasons"]), verdicts["cluster-c"]
    # Each cluster's modules talked to that cluster only: the refused one was not written to.
    writes = {name: [describe(e) for e in real_writes(h.audit.events(starts[name]))] for name, h in handles.items()}
    assert writes["cluster-c"] == [], writes["cluster-c"]
    assert writes["cluster-a"] and writes["cluster-b"]

    fleet = json.loads((reports / "fleet" / "fleet.json").read_text())
    print("fleet:", json.dumps([(c["cluster"], c["ready"], c["reasons"][:1]) for c in fleet["clusters"]]))
    assert (fleet["total"], fleet["ready"]) == (3, 2), fleet
    assert [c["cluster"] for c in fleet["clusters"] if not c["ready"]] == ["cluster-c"]
    assert {c["cluster"]: c["report_dir"] for c in fleet["clusters"]} == {n: str(reports / n) for n in CLUSTERS}
    html = (reports / "fleet" / "fleet.html").read_text()
    assert "2 of 3 clusters READY" in html and "cluster-c" in html
    assert "Fleet: 2 of 3 clusters READY" in proc.stdout
