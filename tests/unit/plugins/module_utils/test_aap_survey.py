"""aap_survey: a job template's survey, made from the roles' argument specs, sends only what the roles accept.

The judge is ansible-core's own ArgumentSpecValidator, what role argument validation runs on a job's extra vars."""

import copy

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.confidential.gpu.plugins.module_utils import aap_survey as s
from tests.conftest import REPO

JOB_TEMPLATES = yaml.safe_load((REPO / "roles" / "aap_controller" / "defaults" / "main.yml").read_text())[
    "aap_controller_job_templates"]
DOC_KEYS = {"description", "version_added"}


def role_specs(roles):
    return [yaml.safe_load((REPO / "roles" / r / "meta" / "argument_specs.yml").read_text()) for r in roles]


def validator_spec(option):
    """The option as ArgumentSpecValidator takes it (documentation keys dropped, as role validation does)."""
    return {k: v for k, v in option.items() if k not in DOC_KEYS}


def answers(question):
    """Every kind of answer AAP can send for the question, as the extra var it becomes."""
    kind = question["type"]
    if kind == "multiplechoice":
        return list(question["choices"])
    sent = [question["default"]] if "default" in question else []
    if kind in ("text", "password"):
        return sent + ["an answer", "0"]
    if kind == "integer":
        return sent + [0, 1, 3600]
    return sent + [0.5]


@pytest.mark.parametrize("template", JOB_TEMPLATES, ids=[t["name"] for t in JOB_TEMPLATES])
def test_every_answer_a_shipped_survey_can_send_passes_the_roles_argument_validation(template):
    specs = role_specs(template["roles"])
    options = s.role_options(specs)
    survey = s.survey_spec(template["survey"], specs, name=template["name"])
    assert [q["variable"] for q in survey["spec"]] == template["survey"]
    for question in survey["spec"]:
        option = options[question["variable"]]
        for answer in answers(question):
            result = ArgumentSpecValidator({question["variable"]: validator_spec(option)}).validate(
                {question["variable"]: answer})
            assert not result.error_messages, (question, answer, result.error_messages)
            assert type(result.validated_parameters[question["variable"]]) is type(answer), (question, answer)
        if "choices" in option:
            # Nothing outside the role's choices can be picked, and every choice but the empty one is offered.
            assert question["choices"] == [c for c in option["choices"] if c != ""]
        assert question["required"] == (bool(option.get("required")) and "" not in option.get("choices", []))


def test_a_survey_question_carries_the_options_default_and_description():
    spec = role_specs(["preflight"])
    question = s.survey_spec(["preflight_fail_on"], spec, name="preflight")["spec"][0]
    assert question["type"] == "multiplechoice" and question["default"] == "fail"
    assert question["choices"] == ["fail", "warn", "never"]
    assert question["question_name"] and len(question["question_name"]) <= 200


def test_an_empty_choice_is_not_offered_and_leaving_the_question_blank_keeps_the_role_default():
    question = s.question("smoke_tee", {"type": "str", "choices": ["", "tdx", "snp"], "default": "", "required": True,
                                        "description": "TEE."})
    assert question["choices"] == ["tdx", "snp"] and question["required"] is False and "default" not in question


def test_a_no_log_option_becomes_a_password_question():
    assert s.question("token", {"type": "str", "no_log": True})["type"] == "password"


@pytest.mark.parametrize("kind", ["bool", "list", "dict", "raw"])
def test_options_no_answer_can_carry_are_refused_naming_the_variable_and_where_it_belongs(kind):
    with pytest.raises(ValueError) as err:
        s.question("gpu_operator_wait", {"type": kind, "description": "x"})
    message = str(err.value)
    assert "gpu_operator_wait" in message and kind in message and "extra_vars" in message


def test_choices_of_a_number_are_refused():
    with pytest.raises(ValueError, match="n_gpus.*choices"):
        s.question("n_gpus", {"type": "int", "choices": [1, 2]})


def test_a_variable_no_role_declares_is_refused_with_the_known_ones():
    with pytest.raises(ValueError) as err:
        s.survey_spec(["preflight_fail_on", "preflight_banana"], role_specs(["preflight"]), name="preflight")
    assert "preflight_banana is not an option" in str(err.value) and "preflight_fail_on" in str(err.value)


def test_a_variable_asked_twice_is_refused():
    with pytest.raises(ValueError, match="preflight_fail_on asked more than once"):
        s.survey_spec(["preflight_fail_on"] * 2, role_specs(["preflight"]), name="preflight")


def test_only_parsed_argument_specs_are_taken():
    with pytest.raises(ValueError, match="argument_specs"):
        s.role_options([{"galaxy_info": {}}])


def test_the_shipped_surveys_do_not_change_the_specs_they_read():
    specs = role_specs(["smoke"])
    before = copy.deepcopy(specs)
    s.survey_spec(["smoke_tee"], specs, name="smoke")
    assert specs == before
