"""The twin's RVPS reads reference values as upstream Trustee's LocalJson store does (twin.kbs.rvps.load).

The judge is the Trustee operator's own end-to-end ConfigMap (../shared/trustee, read in place) and
the store's source rules quoted in twin/kbs/rvps.py; the collection's writer must produce what
this reader accepts.
"""

import base64
import json
import tomllib

import pytest
import yaml

from plugins.module_utils import reference_values
from tests.conftest import shared_path
from twin.kbs import rvps

STORE = "/opt/confidential-containers/storage/local_json/reference_value"

# The real operator's schema (shared/trustee/operator-templates/kbs-config-restricted.toml, the parts RVPS reads).
OPERATOR_CONF = tomllib.loads("""
[attestation_service]
type = "coco_as_builtin"
[attestation_service.rvps_config]
type = "BuiltIn"
storage_type = "LocalJson"
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "/opt/confidential-containers/storage"
[storage_backend.backends.local_json]
dir_path = "/opt/confidential-containers/storage/local_json"
""")


def files(mapping):
    """A ``read(path)`` over a dict of pod files."""
    def read(path):
        if path not in mapping:
            raise FileNotFoundError(path)
        data = mapping[path]
        return data.encode() if isinstance(data, str) else data
    return read


def record(name, value, expiration="2027-01-01T00:00:00Z", **extra):
    raw = json.dumps(dict({"name": name, "expiration": expiration, "value": value}, **extra)).encode()
    return base64.urlsafe_b64encode(raw).decode()


def test_the_operator_template_stores_values_in_the_local_json_file():
    assert rvps.store(OPERATOR_CONF) == ("kv", STORE)
    text = shared_path("trustee", "operator-templates", "kbs-config-restricted.toml").read_text()
    # A Go template: drop its TLS branches (both alternatives are in the text), the rest is TOML.
    template = tomllib.loads("\n".join(line for line in text.splitlines()
                                       if "{{" not in line and not line.startswith("tls_")))
    assert rvps.store(template) == ("kv", STORE)


def test_the_operator_e2e_configmap_reads():
    cm = yaml.safe_load(shared_path("trustee", "e2e-05-rvps-reference-values.yaml").read_text())
    values = rvps.load(files({STORE: cm["data"]["reference_value"]}), OPERATOR_CONF)
    assert values == {"svn": 1, "major_version": 1, "minimum_minor_version": 4}
    assert values.unreadable == {} and values.path == STORE


def test_plain_objects_fail_every_query():
    plain = json.dumps({"svn": {"expiration": "2027-01-01T00:00:00Z", "value": 1}})
    with pytest.raises(rvps.ReferenceValueFileError,
                       match="malformed value: failed to deserialize the file: invalid type: map, expected a string"):
        rvps.load(files({STORE: plain}), OPERATOR_CONF)
    # The 1.1 list under the 1.2 key fails the same way.
    with pytest.raises(rvps.ReferenceValueFileError, match="invalid type: sequence, expected a map"):
        rvps.load(files({STORE: json.dumps([{"name": "svn", "expiration": "2027-01-01T00:00:00Z", "value": 1}])}),
                  OPERATOR_CONF)
    with pytest.raises(rvps.ReferenceValueFileError, match="failed to deserialize the file"):
        rvps.load(files({STORE: ""}), OPERATOR_CONF)


def test_expired_values_are_still_returned():
    values = rvps.load(files({STORE: json.dumps({"mr_td": record("mr_td", ["aa"], "2001-01-01T00:00:00Z")})}),
                       OPERATOR_CONF)
    assert values == {"mr_td": ["aa"]}


def test_a_bad_entry_fails_only_its_own_query():
    standard_alphabet = base64.b64encode(b'{"name":"a","expiration":"2027-01-01T00:00:00Z","value":"??>"}').decode()
    assert "+" in standard_alphabet or "/" in standard_alphabet
    doc = {
        "good": record("good", [1]),
        "std": standard_alphabet,
        "unpadded": record("x", [1]).rstrip("="),
        "no_value": base64.urlsafe_b64encode(b'{"name":"no_value","expiration":"2027-01-01T00:00:00Z"}').decode(),
        "bad_time": record("bad_time", [1], "2027-01-01"),
        "null_value": record("null_value", None),
        "other_name": record("renamed", [2], version="0.2.0"),
    }
    assert doc["unpadded"] != record("x", [1])
    values = rvps.load(files({STORE: json.dumps(doc)}), OPERATOR_CONF)
    # Looked up by key; version is not compared; a null value is a value.
    assert values == {"good": [1], "null_value": None, "other_name": [2]}
    assert set(values.unreadable) == {"std", "unpadded", "no_value", "bad_time"}
    assert "failed to base64 decode the content inside json" in values.unreadable["std"]
    assert "Invalid padding" in values.unreadable["unpadded"]
    assert values.unreadable["no_value"] == "deserialize reference value: missing field `value`"


def test_where_the_store_is():
    conf = json.loads(json.dumps(OPERATOR_CONF))
    conf["storage_backend"]["backends"]["local_json"] = {"file_dir_path": "/var/lib/rvps"}
    assert rvps.store(conf) == ("kv", "/var/lib/rvps/reference_value")
    # Without the local_json table the KBS would not start.
    del conf["storage_backend"]["backends"]["local_json"]
    with pytest.raises(rvps.ReferenceValueFileError, match="Local JSON configuration is required"):
        rvps.store(conf)
    # rvps_config.storage_type falls back to the KBS-wide storage_type, then Memory.
    assert rvps.store({"attestation_service": {"rvps_config": {"type": "BuiltIn"}},
                       "storage_backend": {"storage_type": "local_json", "backends": {"local_json": {}}}}) == ("kv", STORE)
    assert rvps.store({}) == ("memory", None)
    assert rvps.load(files({}), {}) == {}
    # An absent file starts empty (LocalJson::new writes "{}").
    assert rvps.load(files({}), OPERATOR_CONF) == {}


def test_the_older_list_store_for_the_1_1_layout():
    path = "/opt/confidential-containers/rvps/reference-values/reference-values.json"
    conf = {"attestation_service": {"rvps_config": {"type": "BuiltIn",
                                                    "storage": {"type": "LocalJson", "file_path": path}}}}
    assert rvps.store(conf) == ("list", path)
    listed = [{"name": "rtmr_1", "expiration": "2001-01-01T00:00:00Z", "value": ["bb"]},
              {"name": "rtmr_1", "expiration": "2027-01-01T00:00:00Z", "value": ["cc"]}]
    assert rvps.load(files({path: json.dumps(listed)}), conf) == {"rtmr_1": ["bb"]}
    # trustee <= v0.13's hash-value records have no value: the whole list fails to deserialise.
    legacy = [{"name": "rtmr_1", "expiration": "2027-01-01T00:00:00Z", "hash-value": [{"alg": "sha384", "value": "bb"}]}]
    with pytest.raises(rvps.ReferenceValueFileError, match="missing field `value`"):
        rvps.load(files({path: json.dumps(legacy)}), conf)


def test_what_the_collection_writes_is_read_back_with_the_same_values():
    rvs = reference_values.merge({
        "mr_td": {"value": ["aa" * 48], "expiration": "2026-01-01T00:00:00Z"},
        "rtmr_1": {"value": ["bb" * 48, "cc" * 48], "expiration": "2030-05-01T12:00:00Z"},
        "snp_smt_enabled": {"value": True, "expiration": "2030-05-01T12:00:00Z"},
        "init_data": {"value": ["0f" * 48], "expiration": "2030-05-01T12:00:00Z"},
    })
    text = reference_values.dump(rvs, "kv-base64")
    values = rvps.load(files({STORE: text}), OPERATOR_CONF)
    assert values.unreadable == {}
    assert values == {name: entry["value"] for name, entry in rvs.items()}
