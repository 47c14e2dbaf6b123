# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the initdata, reference_values and tee_host_facts modules (the cluster parts
run against the twin in tests/integration/targets)."""

from __future__ import annotations

import base64
import json
import pathlib

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils.initdata import InitdataError
from ansible_collections.confidential.gpu.plugins.module_utils.reference_values import ReferenceValueError
from ansible_collections.confidential.gpu.plugins.modules import initdata as initdata_module
from ansible_collections.confidential.gpu.plugins.modules import reference_values as rv_module
from ansible_collections.confidential.gpu.plugins.modules import tee_host_facts

CMD = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "hosts" / "h200-lent" / "cmd"
# GNU gzip 1.12 `gzip -c -n | base64 -w0` of a sha384 document; `sha384sum` of it (see test_initdata.py).
GNU_ANNOTATION = ("H4sIAAAAAAAAAxXLwQqDMAyA4XueQnLpLTq2wxjsSURGdJ0tto002fDxZ6/fz89plRot5O7ZoQa+3m8IP181Smk00IUGBBjfbDwBMpNJTng25"
                  "xyMJpsvr0XKJ65K26wTfGtqZzDb9dH3p5E/OO/J0yIZoX1/xEUYfXcAAAA=")
SHA384_HEX = "8efe34a9d3f7356b870519452bb88a1914d34a270e5a6e95ad97ab1800634a82a8125a9c60bc575332f92d5c9593041a"


def params(**overrides):
    base = {"kbs_url": None, "kbs_cert": None, "policy": "restrictive", "policy_text": None, "algorithm": "sha384",
            "image": None, "allow_insecure_http": False, "content": None, "annotation": None, "configmap": None}
    base.update(overrides)
    return base


def test_initdata_describes_an_annotation_it_did_not_write():
    result = initdata_module.describe(params(annotation=GNU_ANNOTATION))
    assert result["digest"] == SHA384_HEX
    assert result["tdx_mrconfigid"] == SHA384_HEX
    assert result["snp_hostdata"] == SHA384_HEX[:64]
    assert result["annotation"] == GNU_ANNOTATION  # kept as given, not re-encoded
    assert result["annotation_key"] == "io.katacontainers.config.hypervisor.cc_init_data"


def test_initdata_builds_and_publishes_every_value():
    result = initdata_module.describe(params(kbs_url="https://kbs.example.com"))
    definition = initdata_module.configmap_definition("cgpu-initdata", "demo", result)
    assert definition["metadata"] == {"name": "cgpu-initdata", "namespace": "demo",
                                      "labels": {"app.kubernetes.io/managed-by": "confidential.gpu"}}
    assert sorted(definition["data"]) == ["algorithm", "cc_init_data", "digest", "initdata.toml", "snp_hostdata",
                                          "tdx_mrconfigid"]
    assert definition["data"]["initdata.toml"] == result["toml"]


def test_initdata_content_is_used_byte_for_byte():
    text = initdata_module.describe(params(annotation=GNU_ANNOTATION))["toml"]
    assert initdata_module.describe(params(content=text))["digest"] == SHA384_HEX


def test_initdata_errors_carry_the_field():
    with pytest.raises(InitdataError) as err:
        initdata_module.describe(params(kbs_url="http://kbs"))
    assert err.value.field == "kbs_url"


# -- reference_values.plan --------------------------------------------------------------------


def rv_params(tmp_path, **overrides):
    source = tmp_path / "veritas.json"
    source.write_text(json.dumps([{"name": "mr_td", "expiration": "2099-12-31T00:00:00Z", "value": ["td"]},
                                  {"name": "xfam", "expiration": "2099-12-31T00:00:00Z", "value": ["e7"]}]))
    base = {"sources": [str(source)], "values": {}, "initdata": [], "tee": None, "gpu": True, "expiration": None,
            "format": "auto", "trustee_version": None, "keep_unowned": True}
    base.update(overrides)
    return base


def test_plan_writes_the_list_into_a_new_configmap(tmp_path):
    key, value, annotations, facts = rv_module.plan(rv_params(tmp_path), None)
    assert key == "reference-values.json"
    assert json.loads(value) == [{"name": "mr_td", "expiration": "2099-12-31T00:00:00Z", "value": ["td"]},
                                 {"name": "xfam", "expiration": "2099-12-31T00:00:00Z", "value": ["e7"]}]
    assert annotations == {"confidential.gpu/owned-reference-values": "mr_td,xfam"}
    assert "completeness" not in facts


def test_plan_keeps_the_existing_key_and_others_entries(tmp_path):
    existing = {"metadata": {"annotations": {"confidential.gpu/owned-reference-values": "old_ours"}},
                "data": {"reference_value": json.dumps({
                    "theirs": {"expiration": "2099-12-31T00:00:00Z", "value": ["t"]},
                    "old_ours": {"expiration": "2099-12-31T00:00:00Z", "value": ["o"]}})}}
    key, value, annotations, facts = rv_module.plan(rv_params(tmp_path, tee="tdx"), existing)
    # Plain objects an earlier release wrote there are read, and rewritten as the records upstream reads.
    assert (key, facts["format"]) == ("reference_value", "kv-base64")
    assert sorted(upstream_local_json(value)) == ["mr_td", "theirs", "xfam"]
    assert upstream_local_json(value)["theirs"] == {"name": "theirs", "expiration": "2099-12-31T00:00:00Z",
                                                    "value": ["t"], "version": "0.1.0"}
    assert facts["completeness"]["groups"][0]["group"] == "executables"


def upstream_local_json(text):
    """Records as upstream's RVPS reads the reference_value key, or an AssertionError where it would fail.

    trustee deps/key-value-storage/src/local_json/mod.rs LocalJson::get: serde_json into
    HashMap<String, String>, then base64 URL_SAFE (padded) decode of the value; the RVPS then parses the
    bytes as a JSON ReferenceValue record.
    """
    items = json.loads(text)
    assert isinstance(items, dict) and all(isinstance(v, str) for v in items.values()), \
        "not a HashMap<String, String>: upstream fails to deserialise it"
    records = {}
    for name, encoded in items.items():
        assert len(encoded) % 4 == 0 and set(encoded) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="), f"{name}: not padded URL-safe base64"
        record = json.loads(base64.urlsafe_b64decode(encoded))
        assert {"name", "expiration", "value"} <= set(record) and record["name"] == name
        records[name] = record
    return records


def test_plan_refuses_plain_objects_for_the_reference_value_key(tmp_path):
    with pytest.raises(ValueError):
        rv_module.argspec()["format"]["choices"].index("kv")
    with pytest.raises(ReferenceValueError, match="use kv-base64"):
        rv_module.plan(rv_params(tmp_path, format="kv"), None)


def test_plan_refuses_initdata_without_tee_and_nothing_at_all(tmp_path):
    with pytest.raises(ReferenceValueError, match="needs tee"):
        rv_module.plan(rv_params(tmp_path, initdata=["x"]), None)
    with pytest.raises(ReferenceValueError, match="no reference values given"):
        rv_module.plan(rv_params(tmp_path, sources=[]), None)
    with pytest.raises(ReferenceValueError, match="cannot read"):
        rv_module.plan(rv_params(tmp_path, sources=[str(tmp_path / "absent.yaml")]), None)


def test_plan_reports_a_broken_existing_configmap(tmp_path):
    existing = {"data": {"reference-values.json": "{not json"}}
    with pytest.raises(ReferenceValueError, match="existing ConfigMap"):
        rv_module.plan(rv_params(tmp_path), existing)


# -- tee_host_facts: only read-only nvidia-smi commands ---------------------------------------


class FakeModule:
    def __init__(self, params, outputs, binaries=("nvidia-smi", "dmesg")):
        self.params = params
        self.outputs = outputs
        self.binaries = binaries
        self.commands = []

    def get_bin_path(self, name):
        return "/usr/bin/" + name if name in self.binaries else None

    def run_command(self, args):
        self.commands.append(args)
        return 0, self.outputs.get(" ".join(args[1:]), ""), ""


def test_gpu_queries_are_read_only_and_parse_the_h200():
    outputs = {"-q": (CMD / "nvidia-smi-q.txt").read_text()}
    for option in ("f", "e", "grs", "gm", "gc", "q"):
        outputs["conf-compute -" + option] = (CMD / "conf-compute-{0}.txt".format(option)).read_text()
    module = FakeModule({"nvidia_smi": "nvidia-smi"}, outputs)
    gpu = tee_host_facts.read_gpu(module)
    assert [c[1:] for c in module.commands] == [["-q"]] + [["conf-compute", "-" + o] for o in ("f", "e", "grs", "gm", "gc", "q")]
    forbidden = {"-r", "--gpu-reset", "-srs", "-scc", "-sm", "-skr", "-e 1", "-pm", "-c"}
    assert not any(set(c[1:]) & forbidden for c in module.commands)
    assert gpu["gpus"][0]["model"] == "NVIDIA H200" and gpu["cc"]["cc_feature"] == "off"


def test_dmesg_is_run_only_for_the_real_root_unless_asked():
    module = FakeModule({}, {"": "[ 0.0] virt/tdx: module initialized\n"})
    assert tee_host_facts.read_dmesg(module, "/host", "auto") is None
    assert tee_host_facts.read_dmesg(module, "/", "never") is None
    assert "module initialized" in tee_host_facts.read_dmesg(module, "/host", "always")
    assert module.commands == [["/usr/bin/dmesg"]]
