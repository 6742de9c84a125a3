"""aef.plan (one walker for every plan tree) and aef.placeholders (one `{{name}}` grammar)."""

from __future__ import annotations

import json
from pathlib import Path

from aef.models import PlanStep
from aef.placeholders import placeholder_names, replace_placeholders, root_name
from aef.plan import all_ids, contains, find, nested, parse_plan, selected_within, walk
from aef.transform import transform

DEMO = Path(__file__).resolve().parents[2] / "local" / "demo" / "workflows"


def demo_plan() -> list[PlanStep]:
    return transform(json.loads((DEMO / "investor-crm-demo.json").read_text())).plan


def test_walk_visits_children_then_yes_then_no_in_plan_order() -> None:
    plan = demo_plan()
    ids = all_ids(plan)
    assert ids[:3] == ["demo_login_flow", "open_login_page", "enter_email"]
    decision = find(plan, "in_crm_decision")
    assert decision is not None and decision.decision is not None
    assert [s.id for s in nested(decision)] == ["update_investor_record", "add_investor_record"]
    assert ids.index("update_investor_record") < ids.index("add_investor_record")
    assert len(ids) == len(set(ids)) == sum(1 for _ in walk(plan))


def test_contains_and_selection_look_below_a_step_only() -> None:
    plan = demo_plan()
    loop = find(plan, "email_processing_loop")
    assert loop is not None
    assert contains(loop, "add_investor_record") and not contains(loop, "email_processing_loop")
    assert not contains(loop, "review_crm")
    assert selected_within(loop, {"mark_processed"})
    assert selected_within(loop, {"email_processing_loop"})
    assert not selected_within(loop, {"review_crm"})
    assert find(plan, "nope") is None


def test_parse_plan_reads_a_stored_document() -> None:
    result = transform(json.loads((DEMO / "investor-crm-demo.json").read_text()))
    assert all_ids(parse_plan(result.document)) == all_ids(result.plan)
    assert parse_plan({}) == [] and parse_plan({"aef": {"plan": "x"}}) == []


def test_placeholder_names_are_ascii_and_may_be_dotted() -> None:
    text = "Type {{ demo_email }} then {{email.subject}}, {{a-b.c_d}}, {{demo_email}} {{café}}"
    assert placeholder_names(text) == ["demo_email", "email.subject", "a-b.c_d"]
    assert placeholder_names("{{1abc}} {{}} {{ x y }}") == []
    assert root_name("email.subject") == "email"


def test_replace_keeps_what_has_no_value() -> None:
    values = {"a": "1", "b.c": "2"}
    assert replace_placeholders("{{a}}/{{ b.c }}/{{zz}}", values.get) == "1/2/{{zz}}"


def test_a_non_ascii_placeholder_is_neither_listed_nor_substituted() -> None:
    """One grammar end to end: the transform never lists `{{prénom}}` as a credential, so the
    runner (actions and grounding) never substitutes it either; an ASCII name is both."""
    from runner.actions import substitute
    from runner.grounding import _fill_in

    doc = {
        "meta": {"title": "wf"},
        "execution": {"workflow": {"nodes": [{
            "id": "greet", "type": "atomic_task", "label": "Greet", "intent": "Greet",
            "actions": [{"type": "fill", "selector": "#n", "value": "{{prénom}} {{nom}}"}],
        }]}},
    }
    step = transform(doc).plan[0]
    assert step.credentials == ["nom"]
    values = {"prénom": "Ada", "nom": "Lovelace"}
    assert substitute("{{prénom}} {{nom}}", {}, values) == ("{{prénom}} Lovelace", True)
    assert substitute("{{prénom}} {{nom}}", values, None) == ("{{prénom}} Lovelace", False)
    assert _fill_in("{{prénom}} {{nom}}", values) == "{{prénom}} Lovelace"
