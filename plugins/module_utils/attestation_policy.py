# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Initdata pinning added to the CPU attestation policy the Trustee operator generated, as a text transformation.

PRIVATE to this collection. Why a transformation and not a policy of our own: the operator writes its
default CPU policy into ``<trusteeconfig>-attestation-policy-cpu`` (key ``default_cpu.rego``;
openshift/trustee-operator ``internal/controller/trusteeconfig_controller.go``
``generateAttestationPolicyConfigMap``) and that text is what upstream Trustee evaluates. A copy kept
in this collection would drift from the operator's; pinning the operator's own text keeps every rule
it has (TDX, SNP, Azure vTPM, TPM, SE, extensions) and changes only the one decision we add.

Facts (shared/trustee/PROVENANCE.md, from upstream's source):

* The attestation service asks the policy engine for ``data.policy.trust_claims`` only (trustee
  ``attestation-service`` ``broker.rs``; ``deps/policy-engine/src/policy/rego.rs``). Without that rule
  every AR4SI claim is 0, the submodule is ``none`` and the Restricted resource policy refuses all.
* The default policy never reads ``input.init_data``: a pod with any other initdata is affirmed.
* AR4SI configuration 96 is "unsupportable configuration" (veraison/rust-ear ``src/trust/claim.rs``
  ``UNSUPPORTABLE_CONFIG_CLAIM``), contraindicated by rust-ear's tiers (``TrustClaim::tier``:
  anything above 95 is contraindicated).

The transformation: the policy's ``trust_claims`` rule is renamed ``cgpu_unpinned_trust_claims``,
and a new ``trust_claims`` gives the same object when ``input.init_data`` is one of the reference
values ``init_data``, else the same object with ``configuration`` 96. Everything between the two
marker lines is ours, so :func:`unpin` restores the operator's text byte for byte and :func:`pin`
of a pinned policy is that policy.
"""

from __future__ import annotations

import re

RULE = "trust_claims"
RENAMED = "cgpu_unpinned_trust_claims"
PINNED_RULE = "cgpu_initdata_pinned"
REFERENCE_NAME = "init_data"
UNSUPPORTABLE_CONFIGURATION = 96
BEGIN = "# confidential.gpu initdata pinning: begin (added by the trustee role; do not edit between the markers)"
END = "# confidential.gpu initdata pinning: end"

# A rule head at the start of a line: `trust_claims := {`, `trust_claims = x`, `trust_claims if {`, `trust_claims {`,
# or its `default trust_claims := ...`. Bodies are indented or inside braces, so a head is at column 0.
_HEAD = re.compile(r"^(default[ \t]+)?{0}(?=[ \t]*(?::=|=|\bif\b|\{{))".format(RULE), re.MULTILINE)
_RENAMED_HEAD = re.compile(r"^(default[ \t]+)?{0}(?=[ \t]*(?::=|=|\bif\b|\{{))".format(RENAMED), re.MULTILINE)
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][\w.]*)[ \t]*(?:#.*)?$", re.MULTILINE)

WRAPPER = """{begin}
# The operator's trust_claims rule is renamed {renamed} above. These claims are the same, except
# configuration {value} (AR4SI "unsupportable configuration", contraindicated) when the initdata the TEE
# measured (input.init_data) is not one of the reference values "{name}".
{pinned} if input.init_data in query_reference_value("{name}")

{rule} := {renamed} if {{
\t{pinned}
}} else := object.union({renamed}, {{"configuration": {value}}})
{end}
""".format(begin=BEGIN, end=END, renamed=RENAMED, pinned=PINNED_RULE, rule=RULE, name=REFERENCE_NAME,
           value=UNSUPPORTABLE_CONFIGURATION)


class PolicyError(ValueError):
    """A policy that cannot be pinned (no trust_claims rule, another package, a damaged pinning block)."""


def is_pinned(text: str) -> bool:
    return BEGIN in (text or "")


def _check_package(text):
    match = _PACKAGE.search(text)
    if not match:
        raise PolicyError("the attestation policy has no 'package' line")
    if match.group(1) != "policy":
        raise PolicyError("the attestation policy is 'package {0}'; upstream Trustee evaluates data.policy.{1}, "
                          "so nothing in it would be used".format(match.group(1), RULE))


def pin(text: str) -> str:
    """``text`` with initdata pinning added; a pinned policy is returned unchanged.

    Raises PolicyError for a policy upstream would not use: no ``trust_claims`` rule (every claim
    would be 0 with or without us), not ``package policy``, or a damaged pinning block.
    """
    text = text or ""
    if is_pinned(text):
        unpin(text)  # validates the block and the renamed rule
        return text
    _check_package(text)
    if _RENAMED_HEAD.search(text) or re.search(r"^{0}\b".format(PINNED_RULE), text, re.MULTILINE):
        raise PolicyError("the attestation policy already defines {0} or {1} without the pinning markers; "
                          "refusing to guess which rules are whose".format(RENAMED, PINNED_RULE))
    if not _HEAD.search(text):
        raise PolicyError("the attestation policy has no {0} rule: upstream Trustee evaluates only "
                          "data.policy.{0} and would set every claim to 0 (cpu0 none, every resource refused); "
                          "pinning cannot fix that, use the policy the operator generated".format(RULE))
    renamed = _HEAD.sub(lambda m: (m.group(1) or "") + RENAMED, text)
    if not renamed.endswith("\n"):
        renamed += "\n"
    return renamed + "\n" + WRAPPER


def unpin(text: str) -> str:
    """The policy as it was before :func:`pin` (``text`` itself when it is not pinned)."""
    text = text or ""
    if not is_pinned(text):
        return text
    start = text.index(BEGIN)
    end = text.find(END, start)
    if end < 0 or text.count(BEGIN) != 1:
        raise PolicyError("the attestation policy's initdata pinning block is damaged (markers missing or doubled); "
                          "restore the operator's policy (delete the ConfigMap key and let the operator recreate it)")
    end += len(END)
    if text[end:end + 1] == "\n":
        end += 1
    before, after = text[:start], text[end:]
    if before.endswith("\n\n"):
        before = before[:-1]
    original = before + after
    if not _RENAMED_HEAD.search(original):
        raise PolicyError("the attestation policy has the pinning block but no {0} rule".format(RENAMED))
    return _RENAMED_HEAD.sub(lambda m: (m.group(1) or "") + RULE, original)


def apply(text: str, pinning: bool) -> str:
    """The policy to store: pinned when ``pinning``, else the operator's (our pinning removed if present)."""
    return pin(text) if pinning else unpin(text)
