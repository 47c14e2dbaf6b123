# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""AAP job template surveys made from the roles' argument specs, so a survey cannot send what a role refuses.

A survey question is derived from the option of ``meta/argument_specs.yml`` that it sets: its type, its
choices, its default and whether it is required. AAP sends every answer as extra vars of the type of its
question: ``text``, ``password`` and ``multiplechoice`` answers are strings, ``integer`` and ``float``
numbers. Where no question type sends the option's type (a bool, a list, a dict), or a choice could not be
offered, the survey is refused with the variable, its type and where the value belongs instead.
"""

from __future__ import annotations

__all__ = ["question", "survey_spec", "role_options"]

# Option type -> the survey question type whose answers have that type.
QUESTION_TYPES = {"str": "text", "path": "text", "int": "integer", "float": "float"}
ELSEWHERE = "set it in the job template's extra_vars or the inventory instead"


def role_options(argument_specs):
    """{variable: option} of the C(main) entry points of parsed ``meta/argument_specs.yml`` documents."""
    options = {}
    for document in argument_specs:
        if not isinstance(document, dict) or "argument_specs" not in document:
            raise ValueError("expected parsed meta/argument_specs.yml documents (with an argument_specs key), "
                             "got {0!r}".format(document if not isinstance(document, dict) else sorted(document)))
        main = document["argument_specs"].get("main") or {}
        options.update(main.get("options") or {})
    return options


def _text(description):
    if isinstance(description, list):
        return " ".join(str(part) for part in description)
    return str(description or "")


def question(variable, option):
    """One survey question for the role option ``option`` of ``variable``.

    Raises ValueError, naming the variable, when no question can ask for it faithfully."""
    kind = option.get("type", "str")
    described = _text(option.get("description"))
    asked = {
        "variable": variable,
        "question_name": described.split(". ", maxsplit=1)[0].rstrip(".")[:200] or variable,
        "question_description": described,
        "required": bool(option.get("required", False)),
    }
    if kind not in QUESTION_TYPES:
        raise ValueError("survey question {0}: its type is {1}, and AAP survey answers are strings or numbers, which "
                         "the role would refuse or misread; {2}".format(variable, kind, ELSEWHERE))
    default = option.get("default")
    choices = option.get("choices")
    if choices is not None:
        if kind != "str" or not all(isinstance(c, str) for c in choices):
            raise ValueError("survey question {0}: choices {1!r} of type {2} cannot be offered, as a multiple choice "
                             "answer is a string; {3}".format(variable, choices, kind, ELSEWHERE))
        offered = [c for c in choices if c != ""]
        if not offered:
            raise ValueError("survey question {0}: no choice but the empty string to offer".format(variable))
        asked["type"] = "multiplechoice"
        asked["choices"] = offered
        if "" in choices:
            # An empty answer cannot be picked: leaving the question unanswered keeps the role's default.
            asked["required"] = False
        if default not in (None, ""):
            asked["default"] = default
        return asked
    asked["type"] = "password" if option.get("no_log") and kind == "str" else QUESTION_TYPES[kind]
    if default is not None:
        if kind in ("str", "path") and not isinstance(default, str):
            raise ValueError("survey question {0}: default {1!r} is not a string".format(variable, default))
        asked["default"] = default
    return asked


def survey_spec(variables, argument_specs, name, description=""):
    """The survey_spec of a job template that asks for ``variables``, from the roles' parsed argument specs.

    ``variables`` are role variables, each at most once; the result is what AAP's API and awx.awx's
    ``job_template`` module take as ``survey_spec``."""
    options = role_options(argument_specs)
    if not isinstance(variables, list) or not variables:
        raise ValueError("survey {0}: expects a non-empty list of role variables, got {1!r}".format(name, variables))
    unknown = [v for v in variables if v not in options]
    if unknown:
        raise ValueError("survey {0}: {1} not an option of the given roles' argument specs (known: {2})".format(
            name, ", ".join(unknown) + (" is" if len(unknown) == 1 else " are"), ", ".join(sorted(options))))
    repeated = sorted({v for v in variables if variables.count(v) > 1})
    if repeated:
        raise ValueError("survey {0}: {1} asked more than once".format(name, ", ".join(repeated)))
    return {"name": name, "description": description, "spec": [question(v, options[v]) for v in variables]}
