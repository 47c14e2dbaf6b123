"""Hardware profiles: every shipped one loads; a bad one fails naming the field and what is valid."""

import pytest

from twin import profile


@pytest.mark.parametrize("name", profile.available())
def test_shipped_profiles_load(name):
    data = profile.load(name)
    assert data["nodes"], name
    assert data["openshift"]["version"].count(".") == 2


def test_default_profile_is_three_tdx_workers_with_h100():
    data = profile.load("default")
    workers = [n for n in data["nodes"] if "worker" in n["roles"]]
    assert [w["name"] for w in workers] == ["worker-0", "worker-1", "worker-2"]
    assert {w["tee"]["type"] for w in workers} == {"tdx"}
    assert {g["device_id"] for w in workers for g in w["gpus"]} == {"0x2331"}


@pytest.mark.parametrize("bad, message", [
    ({"nodes": [{"name": "n", "cpu": {"vendor": "arm"}}]}, "nodes[0].cpu.vendor is 'arm'; valid: intel, amd"),
    ({"nodes": [{"name": "n", "cpu": {"vendor": "amd"}, "tee": {"type": "tdx"}}]}, "tee.type tdx is impossible on a amd CPU"),
    ({"nodes": [{"name": "n", "roles": ["infra"]}]}, "nodes[0].roles has ['infra']"),
    ({"nodes": [{"name": "n", "gpus": [{"model": "x"}]}]}, "nodes[0].gpus[0].device_id is missing"),
    ({"openshift": {"version": "4.21"}, "nodes": [{"name": "n"}]}, "openshift.version is '4.21'; expected X.Y.Z"),
    ({"nodes": []}, "nodes is empty"),
    ({"nodes": [{"name": "a"}, {"name": "a"}]}, "duplicate names ['a']"),
])
def test_bad_profiles_name_the_field(bad, message):
    with pytest.raises(profile.ProfileError) as err:
        profile.expand(bad)
    assert message in str(err.value)


def test_unknown_profile_lists_the_shipped_ones():
    with pytest.raises(profile.ProfileError, match="shipped profiles: .*default"):
        profile.load("no-such-profile")
