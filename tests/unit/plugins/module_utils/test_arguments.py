"""arguments: version pins and channel names refused with the variable, the value and what is valid."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import arguments as a


@pytest.mark.parametrize("value", ["4.21", "4.21.9", "10.0.1"])
def test_versions_x_y_and_x_y_z_pass(value):
    assert a.problem("preflight_min_version", value, "version") is None


@pytest.mark.parametrize("value", ["4.x", "4", "v4.21.9", "4.21.9-rc.1", " 4.21", "4.21.9.1", ""])
def test_other_versions_are_refused_naming_variable_value_and_form(value):
    message = a.problem("preflight_min_version", value, "version")
    assert message.startswith("preflight_min_version")
    assert "X.Y or X.Y.Z" in message and "4.21.9" in message
    if value:
        assert repr(value) in message


def test_a_yaml_number_is_refused_with_the_hint_to_quote_it():
    message = a.problem("preflight_min_version", 4.1, "version")
    assert "is a number" in message and "quote it" in message and "4.1" in message


@pytest.mark.parametrize("value", ["", None, "26.3.1", "v26.3.1", "4.21.0-202511181406", "1.2.0+build.5"])
def test_operator_versions_pass(value):
    assert a.problem("nfd_version", value, "operator_version") is None


@pytest.mark.parametrize("value", ["banana", "26.3", "26", "26.3.1 ", "latest"])
def test_other_operator_versions_are_refused(value):
    message = a.problem("nfd_version", value, "operator_version")
    assert message.startswith("nfd_version={0!r} is not valid".format(value))
    assert "X.Y.Z" in message and "empty" in message


def test_gpu_operator_version_also_needs_kata_sandboxes():
    assert a.problem("gpu_operator_version", "", "gpu_operator_version") is None
    assert a.problem("gpu_operator_version", "26.3.3", "gpu_operator_version") is None
    banana = a.problem("gpu_operator_version", "banana", "gpu_operator_version")
    assert banana.startswith("gpu_operator_version='banana' is not valid") and "X.Y.Z" in banana
    old = a.problem("gpu_operator_version", "25.10.1", "gpu_operator_version")
    assert old.startswith("gpu_operator_version=25.10.1: NVIDIA GPU operator 25.10.1") and "older than 26.3.0" in old


@pytest.mark.parametrize("value,ok", [("", True), ("stable", True), ("v26.3", True), ("release-1.2", True),
                                      ("stable channel", False), ("v26.3/", False), ("-stable", False)])
def test_channel_names(value, ok):
    message = a.problem("nfd_channel", value, "channel")
    assert (message is None) == ok, message
    if not ok:
        assert "nfd_channel={0!r}".format(value) in message and "OLM channel name" in message


def test_problems_keeps_the_order_and_skips_the_valid():
    found = a.problems({"nfd_version": ["x", "operator_version"], "nfd_channel": ["stable", "channel"],
                        "preflight_min_version": ["4.x", "version"]})
    assert [m.split("=")[0] for m in found] == ["nfd_version", "preflight_min_version"]


def test_an_unknown_form_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown form"):
        a.problem("x", "1", "semver")
