"""Initdata pinning of the operator's CPU attestation policy, evaluated as upstream Trustee evaluates it.

Upstream's attestation service asks the policy engine for ``data.policy.trust_claims`` only and sets
every AR4SI claim to 0 when that rule is undefined (trustee ``deps/policy-engine/src/policy/rego.rs``,
shared/trustee/PROVENANCE.md). So a policy is judged here by that one query, with regorus
(``twin.kbs.engine``), the crate upstream evaluates with. The policy pinned
is the operator's own (shared/trustee/operator-templates/ear_default_attestation_policy_cpu.rego).
"""

import pytest

from ansible_collections.confidential.gpu.plugins.filter.attestation_policy import FilterModule
from ansible_collections.confidential.gpu.plugins.module_utils import attestation_policy as ap
from tests.conftest import shared_path

PINNED_BINDING = "ab" * 48  # the TDX MRCONFIGID of the pinned initdata (hex, 48 bytes)
OTHER_BINDING = "cd" * 48

TDX_REFERENCE = {"mr_td": ["aa" * 48], "rtmr_1": ["11" * 48], "rtmr_2": ["22" * 48], "xfam": ["e702060000000000"],
                 "init_data": [PINNED_BINDING]}
SNP_REFERENCE = {"snp_launch_measurement": ["5e" * 48], "snp_bootloader": [10], "snp_microcode": [84],
                 "snp_snp_svn": [23], "snp_tee_svn": [0], "snp_smt_enabled": True, "snp_tsme_enabled": False,
                 "snp_guest_abi_major": 1, "snp_guest_abi_minor": 55, "snp_single_socket": False,
                 "snp_smt_allowed": True, "init_data": ["ef" * 32]}

SMALL = """package policy

import rego.v1

default configuration := 36

configuration := 2 if input.ok

trust_claims := {
  "configuration": configuration,
}
"""


def tdx_input(init_data):
    """Claims of a genuine, up-to-date, non-debug TD as the TDX verifier reports them."""
    return {"init_data": init_data, "tdx": {
        "quote": {"header": {"tee_type": "81000000", "vendor_id": "939a7233f79c4ca9940a0db3957f0607"},
                  "body": {"mr_td": "aa" * 48, "rtmr_1": "11" * 48, "rtmr_2": "22" * 48, "xfam": "e702060000000000"}},
        "td_attributes": {"debug": False}, "tcb_status": "UpToDate", "collateral_expiration_status": "0",
        "uefi_event_logs": []}}


def snp_input(init_data):
    return {"init_data": init_data, "snp": {
        "measurement": "5e" * 48, "reported_tcb_bootloader": 10, "reported_tcb_microcode": 84,
        "reported_tcb_snp": 23, "reported_tcb_tee": 0, "policy_debug_allowed": False, "policy_migrate_ma": False,
        "platform_smt_enabled": True, "platform_tsme_enabled": False, "policy_abi_major": 1, "policy_abi_minor": 55,
        "policy_single_socket": False, "policy_smt_allowed": True}}


@pytest.fixture(scope="module")
def operator_policy():
    return shared_path("trustee", "operator-templates", "ear_default_attestation_policy_cpu.rego").read_text()


@pytest.fixture(scope="module")
def trust_claims():
    """``f(policy, input, reference)``: the AR4SI claims upstream's evaluation gives (None when undefined).

    regorus through the twin's engine: only ``data.policy.trust_claims``, all claims 0 when it is
    missing, as upstream's attestation service.
    """
    from twin.kbs import engine

    judge = engine.shared()

    def appraise(policy, doc, reference):
        vector = judge.appraise(policy, doc, reference)["trust_vector"]
        return None if vector and not any(vector.values()) else vector
    return appraise


# -- the transformation ------------------------------------------------------------------------------


def test_pin_renames_the_rule_and_adds_the_wrapper():
    pinned = ap.pin(SMALL)
    assert pinned.startswith(SMALL.replace("trust_claims := {", "cgpu_unpinned_trust_claims := {"))
    assert ap.is_pinned(pinned) and pinned.count("trust_claims := cgpu_unpinned_trust_claims if {") == 1
    assert 'input.init_data in query_reference_value("init_data")' in pinned
    assert '{"configuration": 96}' in pinned


def test_pinning_is_idempotent_and_unpinning_restores_the_text(operator_policy):
    for text in (SMALL, operator_policy):
        pinned = ap.pin(text)
        assert ap.pin(pinned) == pinned
        assert ap.unpin(pinned) == text
        assert ap.unpin(text) == text
        assert ap.apply(text, True) == pinned and ap.apply(pinned, False) == text


def test_a_default_trust_claims_rule_is_renamed_too():
    text = SMALL.replace("trust_claims := {", "default trust_claims := {}\n\ntrust_claims := {", 1)
    pinned = ap.pin(text)
    assert "default cgpu_unpinned_trust_claims := {}" in pinned
    assert ap.unpin(pinned) == text


@pytest.mark.parametrize("text,match", [
    (SMALL.replace("trust_claims := {", "claims := {"), "no trust_claims rule: upstream Trustee evaluates only"),
    (SMALL.replace("package policy", "package cpu"), "'package cpu'"),
    ("default executables := 33\n", "no 'package' line"),
    (SMALL + "\ncgpu_unpinned_trust_claims := {}\n", "without the pinning markers"),
])
def test_refuses_what_upstream_would_not_use_or_what_is_ambiguous(text, match):
    with pytest.raises(ap.PolicyError, match=match):
        ap.pin(text)


def test_a_damaged_block_is_refused():
    pinned = ap.pin(SMALL)
    with pytest.raises(ap.PolicyError, match="damaged"):
        ap.unpin(pinned.replace(ap.END, ""))
    with pytest.raises(ap.PolicyError, match="damaged"):
        ap.pin(pinned.replace(ap.END, ""))


def test_the_filter():
    pin = FilterModule().filters()["attestation_policy_pinning"]
    assert pin(SMALL) == ap.pin(SMALL) and pin(ap.pin(SMALL), False) == SMALL
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="no trust_claims rule"):
        pin("package policy\n")


# -- under upstream's evaluation (data.policy.trust_claims only) --------------------------------------


@pytest.mark.parametrize("make_input,reference,pinned_value", [
    (tdx_input, TDX_REFERENCE, PINNED_BINDING),
    (snp_input, SNP_REFERENCE, "ef" * 32),
])
def test_pinned_operator_policy_affirms_the_pinned_initdata_and_contraindicates_others(
        trust_claims, operator_policy, make_input, reference, pinned_value):
    pinned = ap.pin(operator_policy)
    good = trust_claims(pinned, make_input(pinned_value), reference)
    assert good is not None, "data.policy.trust_claims is undefined: upstream gives every claim 0"
    assert (good["configuration"], good["hardware"], good["executables"]) in ((2, 2, 3), (2, 2, 4))
    other = trust_claims(pinned, make_input("0" * len(pinned_value)), reference)
    assert other["configuration"] == 96  # rust-ear TrustClaim::tier: contraindicated
    assert {k: v for k, v in other.items() if k != "configuration"} == \
        {k: v for k, v in good.items() if k != "configuration"}
    # No init_data claim at all, or no init_data reference value: refused too (fails closed).
    assert trust_claims(pinned, {k: v for k, v in make_input(pinned_value).items() if k != "init_data"},
                        reference)["configuration"] == 96
    assert trust_claims(pinned, make_input(pinned_value),
                        {k: v for k, v in reference.items() if k != "init_data"})["configuration"] == 96


def test_the_unpinned_operator_policy_affirms_any_initdata(trust_claims, operator_policy):
    """The gap the Trustee guide describes: the operator's default never reads init_data."""
    pinned_claims = trust_claims(operator_policy, tdx_input(PINNED_BINDING), TDX_REFERENCE)
    other_claims = trust_claims(operator_policy, tdx_input(OTHER_BINDING), TDX_REFERENCE)
    assert pinned_claims["configuration"] == other_claims["configuration"] == 2
    assert pinned_claims == other_claims
