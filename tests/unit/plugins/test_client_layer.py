# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One client layer: modules reach the cluster only through CgpuModule (plugins/module_utils/_k8s.py).

CgpuModule's methods turn API errors into CoreException with the API server's words, honour check mode
(server-side dry run) and retry what a wait may retry. A module that takes the kubernetes client itself
skips all of that, so this test reads every module and fails on a new way past the layer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

MODULES = sorted((Path(__file__).resolve().parents[3] / "plugins" / "modules").glob("*.py"))

# What reaching past CgpuModule looks like in a module's code (comments and docs are not code).
PAST_THE_LAYER = {
    "the kubernetes.core client or the dynamic client (self.client)": re.compile(r"\bself\.client\b|\.client\.client\b"),
    "kubernetes.core's service (self.svc)": re.compile(r"\bself\.svc\b"),
    "the kubernetes package itself": re.compile(r"^\s*(from|import)\s+kubernetes\b(?!\.core)"),
    "the dynamic client's exceptions": re.compile(r"\b(DynamicApiError|ApiException|NotFoundError|ConflictError)\b"),
    "a resource's own requests (resource.get/patch/log...)": re.compile(
        r"\b(resource|pods|cms|dyn)\.(get|patch|create|delete|replace|log|status|watch)\b"),
}


def code_lines(path):
    """(line number, code) of a module outside its DOCUMENTATION/EXAMPLES/RETURN strings and comments."""
    text = path.read_text()
    out = []
    in_doc = False
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r'^(DOCUMENTATION|EXAMPLES|RETURN)\s*=\s*r?"""', line):
            in_doc = not line.rstrip().endswith('"""', 20)
            continue
        if in_doc:
            if line.strip().endswith('"""'):
                in_doc = False
            continue
        code = line.split("#", 1)[0]
        if code.strip():
            out.append((number, code))
    return out


def test_the_modules_are_found():
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_reaches_past_cgpu_module(path):
    found = ["{0}:{1}: {2} - {3}".format(path.name, number, what, code.strip())
             for number, code in code_lines(path)
             for what, pattern in PAST_THE_LAYER.items() if pattern.search(code)]
    assert not found, ("use CgpuModule's get/list/ensure/patch/create/delete/pod_log/watch_until/follow "
                       "(plugins/module_utils/_k8s.py), or add the method there:\n" + "\n".join(found))


def test_the_grep_sees_what_it_must():
    samples = ["        self.client.client.patch(resource, body=body, name=name)",
               "        listing = self.client.get(resource, field_selector=x).to_dict()",
               "    from kubernetes.dynamic.exceptions import DynamicApiError",
               "        except (ApiException, DynamicApiError) as exc:",
               "                    log = pods.log.get(name=names[node], namespace=namespace)",
               "        dyn = self.client.client"]
    for sample in samples:
        assert any(p.search(sample) for p in PAST_THE_LAYER.values()), sample
    for fine in ["from ansible_collections.kubernetes.core.plugins.module_utils import x",
                 "        nodes = self.list('v1', 'Node')[0]", "  kubernetes.core.k8s:",
                 "        self.ensure(definition, merge_type=['merge'])"]:
        assert not any(p.search(fine) for p in PAST_THE_LAYER.values()), fine
