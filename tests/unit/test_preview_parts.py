"""The pure parts of the checkpoint preview and choices (no browser): how values are shown,
which steps a checkpoint covers, and what each answer means where it is asked."""

from __future__ import annotations

from aef.models import PlanStep
from runner.flow import StepRun
from runner.interaction import checkpoint_choices
from runner.preview import PREVIEW_MASK, _Filler, _selector_text, covered_steps


def step(step_id: str, **extra: object) -> PlanStep:
    return PlanStep.model_validate({"id": step_id, "label": step_id.title(), "kind": "task",
                                    "method": "automated", "actions": [], **extra})


def test_values_fill_variables_mask_secrets_and_keep_unknown_names() -> None:
    filler = _Filler({"email": {"name": "Ada"}, "leak": "pw-123 inside"},
                     {"password": "pw-123"})
    assert filler.fill("Hi {{email.name}}") == "Hi Ada"
    assert filler.fill("{{password}}") == PREVIEW_MASK
    assert filler.credential("password") == PREVIEW_MASK
    assert filler.fill("{{record_id}}") == "{{record_id}}"  # an earlier action extracts it
    assert filler.fill("{{leak}}") == f"{PREVIEW_MASK} inside"  # a secret inside a variable
    # grounding sees the template of a secret, never its value
    assert filler.for_grounding("Type {{password}} for {{email.name}}") == \
        "Type {{password}} for Ada"


def test_a_checkpoint_covers_its_unit_in_run_order() -> None:
    first = step("fill", checkpoint={"type": "before_step", "title": "t", "description": "d",
                                     "timeoutSeconds": 60, "defaultAction": "pause",
                                     "covers": ["fill", "save"]})
    plan = [step("open"), step("box", kind="compound", children=[
        first.model_dump(by_alias=True), step("save").model_dump(by_alias=True)])]
    found = covered_steps(plan, first)
    assert [s.id for s in found] == ["fill", "save"]
    assert [s.id for s in covered_steps(plan, step("alone"))] == []  # not in the plan


def test_selectors_of_grounded_locators_read_as_playwright_selectors() -> None:
    assert _selector_text({"strategy": "role", "role": "button", "name": "Save"}) == \
        'role=button[name="Save"]'
    assert _selector_text({"strategy": "css", "selector": "#name"}) == "#name"
    assert _selector_text({"strategy": "label", "text": "Email"}) == 'label="Email"'


def test_choices_say_what_each_answer_does_where_it_is_asked() -> None:
    save = step("save")
    outside = {c["response"]: c["meaning"] for c in
               checkpoint_choices("before_step", save, StepRun(0), [save])}
    inside = {c["response"]: c["meaning"] for c in
              checkpoint_choices("before_step", save, StepRun(2), [save])}
    assert outside["approve"] == "Run this step"
    assert outside["skip"] == "Skip this step and go on"
    assert "next item" in inside["skip"] and "next item" not in outside["skip"]
    assert outside["reject"] == inside["reject"]
    assert "whole execution" in inside["reject"]
    decision = step("d", kind="decision", decision={
        "question": "Investor?", "rule": None, "yes": [step("add").model_dump(by_alias=True)],
        "no": []})
    answers = {c["response"]: c["meaning"] for c in
               checkpoint_choices("decision", decision, StepRun(0), [decision])}
    assert answers == {"approve": "Take the yes branch (Add)",
                       "reject": "Take the no branch (continue)",
                       "skip": "Run neither branch and go on after the decision"}
