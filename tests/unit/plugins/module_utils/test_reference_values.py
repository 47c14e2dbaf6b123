# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reference values: readers for every Trustee shape, merging, init_data pinning, writers and
the completeness check against the default policies (attestation.md §3)."""

from __future__ import annotations

import datetime
import json

import pytest
import yaml

from ansible_collections.confidential.gpu.plugins.module_utils import reference_values as rv
from ansible_collections.confidential.gpu.plugins.module_utils.reference_values import ReferenceValueError

# veritas' output shape: ConfigMap rvps-reference-values, key reference-values.json, a JSON list.
VERITAS_4_21_9 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: rvps-reference-values
  namespace: trustee-operator-system
data:
  reference-values.json: |
    [
      {"name": "mr_td", "expiration": "2099-12-31T00:00:00Z", "value": ["td-a"]},
      {"name": "rtmr_1", "expiration": "2099-12-31T00:00:00Z", "value": ["r1-a"]},
      {"name": "rtmr_2", "expiration": "2099-12-31T00:00:00Z", "value": ["r2-a", "r2-b"]},
      {"name": "tdvfkernel", "expiration": "2099-12-31T00:00:00Z", "value": ["k-a"]},
      {"name": "tdvfkernelparams", "expiration": "2099-12-31T00:00:00Z", "value": ["p-a"]},
      {"name": "xfam", "expiration": "2099-12-31T00:00:00Z", "value": ["e702060000000000"]}
    ]
"""
VERITAS_4_21_10 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: rvps-reference-values
data:
  reference-values.json: |
    [
      {"name": "mr_td", "expiration": "2099-12-31T00:00:00Z", "value": ["td-b"]},
      {"name": "rtmr_1", "expiration": "2099-12-31T00:00:00Z", "value": ["r1-a"]},
      {"name": "rtmr_2", "expiration": "2099-12-31T00:00:00Z", "value": ["r2-c"]}
    ]
"""
# `sha384sum` of test_initdata.doc("sha384"), and the sha256 variant (see test_initdata.py).
SHA384_DOC = ('algorithm = "sha384"\nversion = "0.1.0"\n\n[data]\n"aa.toml" = \'\'\'\n[token_configs.kbs]\n'
              'url = "https://kbs.example.com"\n\'\'\'\n')
SHA384_HEX = "8efe34a9d3f7356b870519452bb88a1914d34a270e5a6e95ad97ab1800634a82a8125a9c60bc575332f92d5c9593041a"
SHA256_HEX = "b39fee7c1dd9f2e2c07beb7d9f1534c70c804a57a7ed54dbec54dcf6deb3b990"
NOW = datetime.datetime(2026, 11, 24, 12, 0, 0)


def test_reads_a_veritas_configmap():
    values = rv.load(VERITAS_4_21_9)
    assert values["mr_td"] == {"value": ["td-a"], "expiration": "2099-12-31T00:00:00Z"}
    assert values["rtmr_2"]["value"] == ["r2-a", "r2-b"]
    assert sorted(values) == ["mr_td", "rtmr_1", "rtmr_2", "tdvfkernel", "tdvfkernelparams", "xfam"]


def test_reads_the_configmap_as_a_parsed_dict_too():
    assert rv.load(yaml.safe_load(VERITAS_4_21_10))["mr_td"]["value"] == ["td-b"]


def test_merges_several_openshift_versions_per_name():
    merged = rv.merge(rv.load(VERITAS_4_21_9), rv.load(VERITAS_4_21_10))
    assert merged["mr_td"]["value"] == ["td-a", "td-b"]
    assert merged["rtmr_1"]["value"] == ["r1-a"]
    assert merged["rtmr_2"]["value"] == ["r2-a", "r2-b", "r2-c"]
    assert merged["xfam"]["value"] == ["e702060000000000"]


def test_merge_keeps_the_earliest_expiration_unless_told():
    a = {"mr_td": {"value": ["x"], "expiration": "2030-01-01T00:00:00Z"}}
    b = {"mr_td": {"value": ["y"], "expiration": "2028-06-01T00:00:00Z"}}
    assert rv.merge(a, b)["mr_td"]["expiration"] == "2028-06-01T00:00:00Z"
    assert rv.merge(a, b, expiration="2031-01-01T00:00:00Z")["mr_td"]["expiration"] == "2031-01-01T00:00:00Z"


def test_reads_the_old_hash_value_list():
    old = json.dumps([{"name": "mr_td", "expiration": "2030-01-01T00:00:00Z",
                       "hash-value": [{"alg": "sha384", "value": "aa"}, {"alg": "sha384", "value": "bb"}]}])
    assert rv.load(old)["mr_td"] == {"value": ["aa", "bb"], "expiration": "2030-01-01T00:00:00Z"}


def test_reads_the_reference_value_object_and_its_base64url_entries():
    plain = {"svn": {"expiration": "2099-12-31T00:00:00Z", "value": 1}}
    assert rv.load(json.dumps(plain))["svn"] == {"value": [1], "expiration": "2099-12-31T00:00:00Z"}
    # `printf '{...ReferenceValue...}' | base64 -w0 | tr '+/' '-_' | tr -d =`
    encoded = {"mr_td": "eyJ2ZXJzaW9uIjoiMC4xLjAiLCJuYW1lIjoibXJfdGQiLCJleHBpcmF0aW9uIjoiMjAzMC0wMS0wMVQwMDowMDowMFoiL"
                        "CJ2YWx1ZSI6WyJhYmMiXX0"}
    assert rv.load(json.dumps(encoded))["mr_td"] == {"value": ["abc"], "expiration": "2030-01-01T00:00:00Z"}


def test_reads_a_plain_user_file():
    text = "allowed_driver_versions: ['580.95.05', '580.126.09']\nallowed_vbios_versions: 96.00.A5.00.1A\n"
    values = rv.load(text)
    assert values["allowed_driver_versions"]["value"] == ["580.95.05", "580.126.09"]
    assert values["allowed_vbios_versions"]["value"] == ["96.00.A5.00.1A"]
    assert values["allowed_vbios_versions"]["expiration"] == "2099-12-31T00:00:00Z"


def test_snp_configuration_names_stay_scalars():
    values = rv.load({"snp_smt_enabled": [True], "snp_guest_abi_major": 1})
    assert values["snp_smt_enabled"]["value"] is True
    assert values["snp_guest_abi_major"]["value"] == 1
    with pytest.raises(ReferenceValueError, match="compares it with ==.*one scalar"):
        rv.load({"snp_smt_enabled": [True, False]})
    with pytest.raises(ReferenceValueError, match="conflicting values"):
        rv.merge({"snp_smt_allowed": {"value": True, "expiration": None}},
                 {"snp_smt_allowed": {"value": False, "expiration": None}})


@pytest.mark.parametrize("text,match", [
    ("[{\"value\": [1]}]", "needs a name"),
    ("[{\"name\": \"x\"}]", "neither value nor hash-value"),
    ("[{\"name\": \"x\", \"value\": 1, \"expiration\": \"2099-12-31\"}]", "not in the format Trustee reads"),
    ("[{\"name\": \"bad name\", \"value\": 1}]", "not a plain identifier"),
    ("kind: ConfigMap\ndata: {a: '[]', b: '[]'}\n", "no reference-values.json or reference_value key"),
    ("\"just a string\"", "expected a list, a mapping or a ConfigMap"),
    ("a: [\n", "neither JSON nor YAML"),
])
def test_malformed_input_gives_a_clear_error(text, match):
    with pytest.raises(ReferenceValueError, match=match):
        rv.load(text)


def test_init_data_pins_the_tdx_and_snp_bindings():
    tdx = rv.add_init_data({}, SHA384_DOC, "tdx")
    assert tdx["init_data"]["value"] == [SHA384_HEX]
    snp = rv.add_init_data({}, [SHA384_DOC], "snp")
    assert snp["init_data"]["value"] == ["8efe34a9d3f7356b870519452bb88a1914d34a270e5a6e95ad97ab1800634a82"]
    sha256_doc = SHA384_DOC.replace("sha384", "sha256")
    assert rv.add_init_data({}, sha256_doc, "tdx")["init_data"]["value"] == [SHA256_HEX + "0" * 32]


def test_init_data_reports_bad_initdata_by_index():
    with pytest.raises(ReferenceValueError, match=r"init_data\[1\]: algorithm"):
        rv.add_init_data({}, [SHA384_DOC, SHA384_DOC.replace("sha384", "md5")], "tdx")
    with pytest.raises(ReferenceValueError, match="tee"):
        rv.add_init_data({}, SHA384_DOC, "sev")


def test_expired_names():
    values = {"a": {"value": [1], "expiration": "2026-01-01T00:00:00Z"},
              "b": {"value": [1], "expiration": "2099-12-31T00:00:00Z"}}
    assert rv.expired(values, NOW) == ["a"]


def test_dump_list_format():
    text = rv.dump(rv.load(VERITAS_4_21_10), "list")
    assert json.loads(text) == [
        {"name": "mr_td", "expiration": "2099-12-31T00:00:00Z", "value": ["td-b"]},
        {"name": "rtmr_1", "expiration": "2099-12-31T00:00:00Z", "value": ["r1-a"]},
        {"name": "rtmr_2", "expiration": "2099-12-31T00:00:00Z", "value": ["r2-c"]},
    ]


def test_plain_objects_are_never_written_under_reference_value():
    with pytest.raises(ReferenceValueError, match="LocalJson store reads that key only as base64 records"):
        rv.dump({"svn": {"value": [1], "expiration": "2099-12-31T00:00:00Z"}}, "kv")


def test_dump_kv_base64_entries_are_base64url_reference_values():
    text = rv.dump({"svn": {"value": [1], "expiration": "2099-12-31T00:00:00Z"}}, "kv-base64")
    # `printf '{"expiration":...,"name":"svn","value":[1],"version":"0.1.0"}' | base64 -w0 | tr '+/' '-_'`
    assert json.loads(text) == {"svn": "eyJleHBpcmF0aW9uIjoiMjA5OS0xMi0zMVQwMDowMDowMFoiLCJuYW1lIjoic3ZuIiwidmFsdWUiOlsxXSwidm"
                                       "Vyc2lvbiI6IjAuMS4wIn0="}


def test_dump_rejects_unknown_formats():
    with pytest.raises(ReferenceValueError, match="list, kv-base64"):
        rv.dump({}, "yaml")


@pytest.mark.parametrize("keys,version,expected", [
    (["reference_value"], None, ("kv-base64", "reference_value")),
    (["reference-values.json"], "0.19.0", ("list", "reference-values.json")),
    ([], "0.19.0", ("kv-base64", "reference_value")),
    ([], "v0.20.1", ("kv-base64", "reference_value")),
    ([], "0.18.0", ("list", "reference-values.json")),
    ([], None, ("list", "reference-values.json")),
])
def test_format_follows_the_existing_key_then_the_version(keys, version, expected):
    assert rv.choose_format(keys, version) == expected


def test_the_reference_value_key_gets_base64_records_as_upstream_localjson_reads_it():
    # trustee deps/key-value-storage/src/local_json/mod.rs LocalJson::get: HashMap<String, String>, URL_SAFE base64.
    assert rv.choose_format(["reference_value"]) == ("kv-base64", "reference_value")
    assert rv.choose_format([], "0.19.0") == ("kv-base64", "reference_value")


def test_format_rejects_a_version_that_is_not_one():
    with pytest.raises(ReferenceValueError, match="trustee_version"):
        rv.choose_format([], "latest")


def test_configmap_name_follows_the_trusteeconfig():
    assert rv.configmap_name("trustee-config") == "trustee-config-rvps-reference-values"


def test_merge_owned_keeps_others_entries_and_replaces_ours():
    existing = {"mr_td": {"value": ["old"], "expiration": "2099-12-31T00:00:00Z"},
                "custom": {"value": ["someone-else"], "expiration": "2099-12-31T00:00:00Z"},
                "stale": {"value": ["we-put-it"], "expiration": "2099-12-31T00:00:00Z"}}
    ours = {"mr_td": {"value": ["new"], "expiration": "2099-12-31T00:00:00Z"}}
    merged, owned = rv.merge_owned(existing, ours, previously_owned=["mr_td", "stale"])
    assert merged == {"custom": {"value": ["someone-else"], "expiration": "2099-12-31T00:00:00Z"},
                      "mr_td": {"value": ["new"], "expiration": "2099-12-31T00:00:00Z"}}
    assert owned == ["mr_td"]
    purged = rv.merge_owned(existing, ours, keep_unowned=False)[0]
    assert list(purged) == ["mr_td"]


# -- completeness -----------------------------------------------------------------------------


def _group(report, submod, group):
    return next(g for g in report["groups"] if g["submod"] == submod and g["group"] == group)


def test_veritas_tdx_values_affirm_cpu_with_executables_4():
    report = rv.check_completeness(rv.load(VERITAS_4_21_9), "tdx", gpu=False, now=NOW)
    assert report["affirming"] is True
    assert _group(report, "cpu0", "executables")["value"] == 4
    assert _group(report, "cpu0", "hardware")["value"] == 2
    assert "tcb_status == UpToDate" in _group(report, "cpu0", "hardware")["conditions"]
    assert _group(report, "cpu0", "configuration")["value"] == 2
    assert any("executables comes out 4" in n for n in report["notes"])


def test_tdx_without_xfam_cannot_affirm_configuration():
    values = rv.load(VERITAS_4_21_9)
    del values["xfam"]
    group = _group(rv.check_completeness(values, "tdx", gpu=False, now=NOW), "cpu0", "configuration")
    assert group["value"] == 36 and group["tier"] == "warning"
    assert group["missing"] == ["xfam"]
    assert "configuration elements unavailable" in group["why"]


def test_tdx_without_mr_td_is_unrecognized_hardware():
    values = rv.load(VERITAS_4_21_9)
    del values["mr_td"]
    report = rv.check_completeness(values, "tdx", gpu=False, now=NOW)
    group = _group(report, "cpu0", "hardware")
    assert (group["value"], group["tier"]) == (97, "contraindicated")
    assert "unrecognized hardware" in group["why"] and "mr_td" in group["why"]
    assert report["affirming"] is False


def test_old_trustee_also_needs_mr_seam_and_tcb_svn():
    group = _group(rv.check_completeness(rv.load(VERITAS_4_21_9), "tdx", gpu=False, trustee_version="0.17.0", now=NOW),
                   "cpu0", "hardware")
    assert group["missing"] == ["mr_seam", "tcb_svn"]


def test_expired_values_count_as_missing_and_say_so():
    values = rv.load(VERITAS_4_21_9)
    values["rtmr_1"]["expiration"] = "2025-01-01T00:00:00Z"
    report = rv.check_completeness(values, "tdx", gpu=False, now=NOW)
    group = _group(report, "cpu0", "executables")
    assert group["value"] == 33 and "unrecognized run-time" in group["why"] and "expired: rtmr_1" in group["why"]
    assert report["expired"] == ["rtmr_1"]


def test_snp_from_veritas_lacks_the_tcb_values():
    values = {"snp_launch_measurement": {"value": ["m"], "expiration": None}}
    report = rv.check_completeness(rv.merge(values), "snp", gpu=False, now=NOW)
    assert _group(report, "cpu0", "executables")["value"] == 3
    hardware = _group(report, "cpu0", "hardware")
    assert hardware["value"] == 97
    assert hardware["missing"] == ["snp_bootloader", "snp_microcode", "snp_snp_svn", "snp_tee_svn"]
    assert _group(report, "cpu0", "configuration")["value"] == 3  # the fallback branch still affirms


def test_gpu_configuration_falls_back_to_3_without_version_lists_and_notes_nras():
    report = rv.check_completeness(rv.load(VERITAS_4_21_9), "tdx", gpu=True, now=NOW)
    assert _group(report, "gpu0", "configuration")["value"] == 3
    assert any("Remote" in n for n in report["notes"])
    versions = rv.load({"allowed_vbios_versions": ["96.00.A5.00.1A"], "allowed_driver_versions": ["580.159.04"]})
    full = rv.merge(rv.load(VERITAS_4_21_9), versions)
    assert _group(rv.check_completeness(full, "tdx", now=NOW), "gpu0", "configuration")["value"] == 2


def test_completeness_rejects_unknown_tee():
    with pytest.raises(ReferenceValueError, match="snp, tdx"):
        rv.check_completeness({}, "sgx")
