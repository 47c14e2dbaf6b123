# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""holds(): when ensure() sends no patch. A wrong True would leave a change unwritten, so the cases that must
say False are the ones that matter most; a wrong False only costs a patch that changes nothing."""

from __future__ import annotations

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import holds

LIVE = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "cm", "namespace": "ns", "resourceVersion": "7", "labels": {"a": "1", "b": "2"}},
    "data": {"k": "v", "n": "3"},
    "spec": {"replicas": 3, "enabled": True, "items": [{"name": "x", "image": "i", "pullPolicy": "Always"}]},
}


@pytest.mark.parametrize("desired", [
    {},
    {"metadata": {"name": "cm", "labels": {"a": "1"}}},
    {"data": {"k": "v"}},
    {"spec": {"replicas": 3, "enabled": True}},
    {"spec": {"items": [{"name": "x"}]}},  # defaults the server added to an item are not a change
    {"metadata": {"annotations": None}},  # null: remove, and there is nothing to remove
    {"data": {"gone": None}},
])
def test_held(desired):
    assert holds(LIVE, desired)


@pytest.mark.parametrize("desired", [
    {"data": {"k": "w"}},
    {"data": {"new": "v"}},
    {"metadata": {"labels": {"a": "2"}}},
    {"data": {"k": None}},  # null removes a key that is there
    {"spec": {"replicas": "3"}},  # a string is not a number
    {"spec": {"enabled": 1}},  # JSON's 1 is not true
    {"spec": {"replicas": True}},
    {"spec": {"items": []}},  # a merge patch replaces the list
    {"spec": {"items": [{"name": "x"}, {"name": "y"}]}},
    {"spec": {"items": [{"name": "y"}]}},
    {"spec": {"replicas": {"min": 1}}},  # a map where a number is
    {"status": {"phase": "Ready"}},
])
def test_not_held(desired):
    assert not holds(LIVE, desired)
