"""The CPU attestation policy the trustee role pins, evaluated as upstream Trustee evaluates it.

Upstream's attestation service asks the policy engine for ``data.policy.trust_claims`` only and sets
every AR4SI claim to 0 when that rule is undefined (trustee ``deps/policy-engine/src/policy/rego.rs``,
shared/trustee/PROVENANCE.md). So a policy is judged here by that one query, with regorus
(``twin.kbs.engine``) when the engine is there, else with OPA and the same query.
"""

from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[4]
ROLE_TEMPLATE = REPO / "roles" / "trustee" / "templates" / "default_cpu.rego.j2"

PINNED_BINDING = "ab" * 48  # the TDX MRCONFIGID of the pinned initdata (hex, 48 bytes)
OTHER_BINDING = "cd" * 48

TDX_REFERENCE = {"mr_td": ["aa" * 48], "rtmr_1": ["11" * 48], "rtmr_2": ["22" * 48], "xfam": ["e702060000000000"],
                 "init_data": [PINNED_BINDING]}


def tdx_input(init_data):
    """Claims of a genuine, up-to-date, non-debug TD as the TDX verifier reports them."""
    return {"init_data": init_data, "tdx": {
        "quote": {"header": {"tee_type": "81000000", "vendor_id": "939a7233f79c4ca9940a0db3957f0607"},
                  "body": {"mr_td": "aa" * 48, "rtmr_1": "11" * 48, "rtmr_2": "22" * 48, "xfam": "e702060000000000"}},
        "td_attributes": {"debug": False}, "tcb_status": "UpToDate", "collateral_expiration_status": "0",
        "uefi_event_logs": []}}


@pytest.fixture(scope="module")
def trust_claims():
    """``f(policy, input, reference)``: the value of data.policy.trust_claims (None when undefined)."""
    try:
        from twin.kbs import engine
    except ImportError:
        engine = None
    if engine is not None and hasattr(engine, "trust_claims"):
        return engine.trust_claims
    from twin import build
    from twin.kbs import rego

    opa = build.ensure_opa(log=lambda msg: None)
    return lambda policy, doc, reference: rego.evaluate(opa, policy, doc, {"reference": reference},
                                                        query="data.policy.trust_claims")


@pytest.mark.xfail(strict=True, reason="issue 11: the role's policy has no trust_claims rule; upstream sets all claims 0")
def test_the_role_policy_with_pinning_affirms_the_pinned_initdata_under_upstream_evaluation(trust_claims):
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)  # as Ansible's template lookup
    policy = env.from_string(ROLE_TEMPLATE.read_text()).render(trustee_initdata_pinning=True,
                                                               trustee_policy_marker="test")
    claims = trust_claims(policy, tdx_input(PINNED_BINDING), TDX_REFERENCE)
    assert claims is not None, "data.policy.trust_claims is undefined: upstream gives every claim 0, cpu0 none"
    assert claims["configuration"] == 2
