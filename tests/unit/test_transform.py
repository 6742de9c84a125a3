"""SOP / workflow -> AEF document: plan shape, actions, credentials, checkpoints, validation."""

from __future__ import annotations

import copy
import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from aef import estimate
from aef.errors import ValidationFailed
from aef.models import AefDocument, PlanStep
from aef.transform import TransformResult, transform
from tests.fixtures import GMAIL_WORKFLOW, INVESTOR_CRM_SOP, load_sop

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sop() -> dict[str, Any]:
    return load_sop(INVESTOR_CRM_SOP)


@pytest.fixture
def workflow() -> dict[str, Any]:
    return load_sop(GMAIL_WORKFLOW)


def walk(steps: list[PlanStep]) -> Iterator[PlanStep]:
    for step in steps:
        yield step
        yield from walk(step.children)
        if step.decision is not None:
            yield from walk(step.decision.yes)
            yield from walk(step.decision.no)


def by_id(result: TransformResult) -> dict[str, PlanStep]:
    return {s.id: s for s in walk(result.plan)}


def ids(steps: list[PlanStep]) -> list[str]:
    return [s.id for s in steps]


def mini_sop(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"meta": {"title": "mini"}, "public": {"nodes": nodes, "edges": edges}}


def task(node_id: str, label: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "task", "label": label or node_id, "intent": "", **extra}


def rejected(doc: Any, config: dict[str, Any] | None = None) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        transform(doc, config, now=NOW)
    assert info.value.status == 422
    return info.value


# --- the v0.8 SOP fixture ----------------------------------------------------------------


def test_v08_document_is_the_original_plus_an_aef_section(sop: dict[str, Any]) -> None:
    original = copy.deepcopy(sop)
    result = transform(sop, now=NOW)
    assert sop == original, "the input must not be modified"
    document = dict(result.document)
    aef = document.pop("aef")
    assert document == original
    assert aef["transformedAt"] == "2025-06-01T12:00:00Z"
    assert aef["transformedBy"].startswith("aef.transform/")
    assert aef["version"] == "1.0"
    assert result.source_format == "sop"
    assert result.title == "Daily Investor Email Review and CRM Update"
    json.dumps(result.document, allow_nan=False)
    parsed = AefDocument.model_validate(result.document)
    assert [PlanStep.model_validate(s) for s in aef["plan"]] == result.plan
    assert parsed.aef.plan == result.plan


def test_v08_plan_contains_every_node_exactly_once(sop: dict[str, Any]) -> None:
    result = transform(sop, now=NOW)
    counts = Counter(s.id for s in walk(result.plan))
    assert set(counts) == {n["id"] for n in sop["public"]["nodes"]}
    assert set(counts.values()) == {1}
    assert result.estimated_step_count == len(sop["public"]["nodes"])


def test_v08_plan_follows_the_loop_and_keeps_both_branches(sop: dict[str, Any]) -> None:
    result = transform(sop, now=NOW)
    assert ids(result.plan) == ["T0_setup_applications", "L1_process_daily_emails", "E_end"]
    loop = result.plan[1]
    assert loop.kind == "loop"
    assert loop.loop is not None
    assert loop.loop.iterator == "email"
    assert loop.loop.over == "emails"
    assert loop.loop.max_iterations == 50
    assert loop.loop.exit_condition == "all_processed"
    assert ids(loop.children) == [
        "L1_C1_open_email",
        "L1_C2_check_type_decision",
        "L1_C5_iteration_end",
    ]
    is_investor = loop.children[1]
    assert is_investor.kind == "decision" and is_investor.decision is not None
    assert is_investor.decision.rule is None
    assert is_investor.decision.question == "Is Email Investor Related?"
    assert ids(is_investor.decision.yes) == ["L1_C3_process_investor_logic"]
    assert ids(is_investor.decision.no) == ["L1_C4_skip_non_investor"]
    process = is_investor.decision.yes[0]
    assert process.kind == "compound"
    assert ids(process.children) == [
        "L1_C3_A1_switch_to_airtable",
        "L1_C3_A2_find_investor",
        "L1_C3_A3_investor_found_decision",
        "L1_C3_A6_close_airtable_modal",
        "L1_C3_A7_switch_to_gmail",
    ]
    found = process.children[2].decision
    assert found is not None
    assert ids(found.yes) == ["L1_C3_A4_update_investor_record"]
    assert ids(found.no) == ["L1_C3_A5_add_investor_record"]


def test_v08_steps_without_actions_are_grounded_on_intent_and_context(
    sop: dict[str, Any],
) -> None:
    steps = by_id(transform(sop, now=NOW))
    open_email = steps["L1_C1_open_email"]
    assert open_email.method == "grounded"
    assert open_email.actions == []
    assert open_email.instruction == "Open the current email in the loop for review."
    loop = steps["L1_process_daily_emails"]
    assert loop.instruction is not None
    assert loop.instruction.startswith("Iterate through recent emails")
    assert "Iteration continues as long as" in loop.instruction  # the context is kept
    assert steps["E_end"].kind == "end"
    assert steps["E_end"].method == "automated"


def test_v08_order_comes_from_edges_not_document_order(sop: dict[str, Any]) -> None:
    expected = transform(sop, now=NOW).plan
    shuffled = copy.deepcopy(sop)
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(shuffled["public"]["nodes"])
        rng.shuffle(shuffled["public"]["edges"])
        assert transform(shuffled, now=NOW).plan == expected


def test_v08_risky_steps_are_the_record_writes(sop: dict[str, Any]) -> None:
    steps = by_id(transform(sop, now=NOW))
    assert {s.id for s in steps.values() if s.risky} == {
        "L1_C3_A4_update_investor_record",
        "L1_C3_A5_add_investor_record",
    }


# --- the JSON workflow fixture -----------------------------------------------------------


def test_workflow_plan_carries_its_concrete_actions(workflow: dict[str, Any]) -> None:
    result = transform(workflow, now=NOW)
    assert result.source_format == "workflow"
    assert ids(result.plan) == ["gmail_login_flow", "scan_email_list", "email_processing_loop"]
    steps = by_id(result)
    assert set(steps) == {n["id"] for n in workflow["execution"]["workflow"]["nodes"]}
    assert ids(steps["gmail_login_flow"].children) == [
        "navigate_to_gmail",
        "enter_email",
        "click_next_email",
        "enter_password",
        "click_next_password",
        "verify_login_success",
    ]
    navigate, wait = steps["navigate_to_gmail"].actions
    assert navigate.type == "navigate"
    assert navigate.url is not None and navigate.url.startswith("https://accounts.google.com/")
    assert (wait.type, wait.timeout_ms, wait.state) == ("wait", 5000, "load")
    click, nav_wait = steps["click_next_email"].actions
    assert (click.type, click.instruction) == ("act", "Click the Next button")
    assert (nav_wait.type, nav_wait.url_contains) == ("wait", "signin/v2/sl/pwd")
    typed = steps["enter_email"].actions[0]
    assert typed.type == "act"
    assert typed.value == "{{gmail_email}}"
    assert typed.credential_field == "gmail_email"
    assert steps["select_email"].actions[0].selector == (
        "[data-thread-id]:not([data-processed='true'])"
    )
    extract = steps["extract_investor_info"].actions[0]
    assert extract.type == "extract"
    assert extract.variable == "extract_investor_info"
    assert isinstance(extract.schema_, dict) and "investment_focus" in extract.schema_
    airtable = steps["open_airtable"].actions
    assert [a.type for a in airtable] == ["navigate", "wait", "act"]
    assert airtable[0].url == "https://airtable.com/{{airtable_base_id}}"
    assert airtable[2].value == "{{airtable_api_key}}"
    assert steps["scan_email_list"].actions[0].type == "act"  # visual_scan
    assert all(s.method == "automated" for s in steps.values())
    assert result.warnings == []  # every action type of the fixture is known


def test_workflow_credential_placeholders_are_required_credentials(
    workflow: dict[str, Any],
) -> None:
    result = transform(workflow, now=NOW)
    config = result.document["aef"]["config"]
    credentials = {c["id"]: c for c in config["credentials"]}
    assert set(credentials) == {
        "gmail_email",
        "gmail_password",
        "airtable_api_key",
        "airtable_base_id",
    }
    assert all(c["required"] for c in credentials.values())
    assert credentials["gmail_password"]["type"] == "password"
    assert credentials["gmail_password"]["masked"] is True
    assert credentials["airtable_api_key"]["serviceType"] == "airtable"
    assert "enter_password" in credentials["gmail_password"]["requiredForSteps"]
    assert {s["id"] for s in config["secrets"]} == {"gmail_password", "airtable_api_key"}
    steps = by_id(result)
    assert steps["open_airtable"].credentials == ["airtable_api_key", "airtable_base_id"]
    assert steps["gmail_login_flow"].credentials == ["gmail_email", "gmail_password"]
    assert steps["select_email"].credentials == []


def test_workflow_loop_and_source_config(workflow: dict[str, Any]) -> None:
    result = transform(workflow, now=NOW)
    loop = result.plan[2]
    assert loop.loop is not None
    assert loop.loop.exit_condition == "not more_emails_to_process"
    assert ids(loop.children) == [
        "select_email",
        "extract_investor_info",
        "open_airtable",
        "add_to_crm",
        "mark_processed",
    ]
    config = result.document["aef"]["config"]
    assert config["pauseOnErrors"] is True
    assert config["autoRetryEnabled"] is True  # retryAttempts: 3
    assert config["stepTimeout"] == 30 and config["checkpointTimeout"] == 300
    assert result.estimated_duration_seconds > 0


# --- checkpoints -------------------------------------------------------------------------


def checkpoints(result: TransformResult) -> dict[str, tuple[str, str]]:
    planned = result.document["aef"]["config"]["checkpoints"]
    on_steps = {s.id: s.checkpoint for s in walk(result.plan) if s.checkpoint is not None}
    assert [c["stepId"] for c in planned] == [s.id for s in walk(result.plan) if s.checkpoint]
    assert {c["stepId"] for c in planned} == set(on_steps)
    return {k: (v.type, v.default_action) for k, v in on_steps.items()}


def test_risky_steps_is_the_default_mode(sop: dict[str, Any], workflow: dict[str, Any]) -> None:
    result = transform(sop, now=NOW)
    assert result.document["aef"]["config"]["checkpointMode"] == "risky_steps"
    assert checkpoints(result) == {
        "L1_C2_check_type_decision": ("decision", "reject"),
        "L1_C3_A3_investor_found_decision": ("decision", "reject"),
        "L1_C3_A4_update_investor_record": ("before_step", "pause"),
        "L1_C3_A5_add_investor_record": ("before_step", "pause"),
    }
    assert checkpoints(transform(workflow, now=NOW)) == {"add_to_crm": ("before_step", "pause")}


def test_all_steps_mode(sop: dict[str, Any]) -> None:
    result = transform(sop, {"checkpointMode": "all_steps", "checkpointTimeout": 120}, now=NOW)
    found = checkpoints(result)
    steps = by_id(result)
    expected = {s.id for s in steps.values() if s.kind in ("task", "manual", "decision")}
    assert set(found) == expected
    assert found["L1_C1_open_email"] == ("before_step", "pause")
    assert found["L1_C3_A4_update_investor_record"] == ("before_step", "pause")
    assert all(s.checkpoint.timeout_seconds == 120 for s in steps.values() if s.checkpoint)


def test_none_mode_keeps_only_what_a_person_must_answer(
    sop: dict[str, Any], workflow: dict[str, Any]
) -> None:
    result = transform(sop, {"checkpointMode": "none"}, now=NOW)
    assert checkpoints(result) == {
        "L1_C2_check_type_decision": ("decision", "reject"),
        "L1_C3_A3_investor_found_decision": ("decision", "reject"),
    }
    assert any("checkpointMode none" in w for w in result.warnings)
    assert checkpoints(transform(workflow, {"checkpoint_mode": "none"}, now=NOW)) == {}


def test_custom_mode(sop: dict[str, Any]) -> None:
    chosen = ["T0_setup_applications", "L1_C3_A6_close_airtable_modal"]
    result = transform(sop, {"checkpointMode": "custom", "customCheckpoints": chosen}, now=NOW)
    assert checkpoints(result) == {
        "T0_setup_applications": ("before_step", "pause"),
        "L1_C3_A6_close_airtable_modal": ("before_step", "pause"),
        "L1_C2_check_type_decision": ("decision", "reject"),
        "L1_C3_A3_investor_found_decision": ("decision", "reject"),
    }
    implied = transform(sop, {"customCheckpoints": chosen}, now=NOW)
    assert implied.document["aef"]["config"]["checkpointMode"] == "custom"
    assert checkpoints(implied) == checkpoints(result)


def test_custom_mode_names_unknown_step_ids(sop: dict[str, Any]) -> None:
    error = rejected(sop, {"checkpointMode": "custom", "customCheckpoints": ["E_end", "nope"]})
    assert "nope" in error.detail
    assert error.extra["ids"] == ["nope"]


def test_bad_config_is_refused(sop: dict[str, Any]) -> None:
    assert "checkpointMode" in rejected(sop, {"checkpointMode": "sometimes"}).detail
    assert "surprise" in rejected(sop, {"surprise": 1}).detail
    assert "stepTimeout" in rejected(sop, {"stepTimeout": 0}).detail


def test_manual_steps_always_get_a_manual_checkpoint() -> None:
    doc = mini_sop(
        [
            task("a", "Open the CRM"),
            {"id": "b", "type": "ui_interaction", "label": "Solve the captcha", "intent": "x"},
            task("c", "Close"),
        ],
        [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    )
    for mode in ("risky_steps", "none", "all_steps"):
        result = transform(doc, {"checkpointMode": mode}, now=NOW)
        step = by_id(result)["b"]
        assert (step.kind, step.method) == ("manual", "manual")
        assert step.checkpoint is not None and step.checkpoint.type == "manual"
        assert step.checkpoint.default_action == "pause"  # nobody did it: the run waits
    # the document decides what an unanswered checkpoint does
    result = transform(doc, {"checkpointTimeoutAction": "reject"}, now=NOW)
    assert by_id(result)["b"].checkpoint.default_action == "reject"  # type: ignore[union-attr]
    assert result.document["aef"]["config"]["checkpointTimeoutAction"] == "reject"


# --- SOP automation instructions, rules, unfamiliar shapes -------------------------------


def test_sop_automation_instructions_become_actions() -> None:
    automation = {
        "automatable": True,
        "automation_type": "ui",
        "human_checkpoint": True,
        "estimated_duration_ms": 12000,
        "instructions": [
            {"sequence": 3, "action_type": "type", "stagehand_instruction": "Type the name"},
            {
                "sequence": 1,
                "action_type": "navigate",
                "stagehand_instruction": "Go to https://crm.example.test/base.",
            },
            {
                "sequence": 2,
                "action_type": "click",
                "stagehand_instruction": "Click the search box",
                "selector_strategies": ["the search box", "input[name='q']"],
            },
            {"sequence": 4, "action_type": "scribble", "description": "Doodle"},
        ],
    }
    doc = mini_sop([task("a", "Look up", automation=automation)], [])
    result = transform(doc, now=NOW)
    step = result.plan[0]
    assert [a.type for a in step.actions] == ["navigate", "click", "act", "act"]
    assert step.actions[0].url == "https://crm.example.test/base"
    assert step.actions[1].selector == "input[name='q']"
    assert step.method == "automated" and step.instruction is None
    assert step.checkpoint is not None and step.checkpoint.type == "before_step"
    assert any("scribble" in w for w in result.warnings)
    seconds = estimate.ACTION_SECONDS
    assert result.estimated_duration_seconds == math.ceil(
        estimate.START_SECONDS + estimate.STEP_SECONDS
        + seconds["navigate"] + seconds["click"] + 2 * seconds["act"])

    manual = mini_sop([task("a", automation={"automation_type": "manual"})], [])
    assert transform(manual, now=NOW).plan[0].method == "manual"


def test_decision_rules_only_when_evaluable() -> None:
    nodes: list[dict[str, Any]] = [
        task("a"),
        {"id": "d", "type": "decision", "label": "Big?", "rule": "is the order big?"},
        {
            "id": "e",
            "type": "decision",
            "label": "Known?",
            "rule": "not crm.found and crm.count > 2",
        },
        task("y1"),
        task("n1"),
        task("y2"),
        task("n2"),
    ]
    edges = [
        {"source": "a", "target": "d"},
        {"source": "d", "target": "y1", "condition": "yes"},
        {"source": "d", "target": "n1", "decision_path": "N"},
        {"source": "y1", "target": "e"},
        {"source": "n1", "target": "e"},
        {"source": "e", "target": "y2", "condition": "true"},
        {"source": "e", "target": "n2", "condition": "false"},
    ]
    result = transform(mini_sop(nodes, edges), now=NOW)
    assert ids(result.plan) == ["a", "d", "e"]
    d, e = result.plan[1].decision, result.plan[2].decision
    assert d is not None and e is not None
    assert d.rule is None and any("is the order big?" in w for w in result.warnings)
    assert e.rule == "not crm.found and crm.count > 2"
    assert result.plan[2].checkpoint is None  # an evaluable decision needs no person


def test_workflow_decision_rule_from_condition_schema() -> None:
    doc = {
        "meta": {"title": "wf"},
        "execution": {
            "workflow": {
                "nodes": [
                    {
                        "id": "check_chooser",
                        "type": "decision",
                        "label": "Account chooser?",
                        "conditionSchema": {
                            "type": "object",
                            "properties": {"chooserPresent": {"type": "boolean"}},
                        },
                        "outboundEdges": {"Y": "pick", "N": "login"},
                        "actions": [
                            {
                                "type": "extract",
                                "instruction": "Is the chooser shown?",
                                "schema": {"chooserPresent": "boolean"},
                            }
                        ],
                    },
                    {"id": "pick", "type": "atomic_task", "label": "Pick", "intent": "Pick"},
                    {"id": "login", "type": "atomic_task", "label": "Login", "intent": "Log in"},
                    {"id": "clean", "type": "data_transform", "label": "Clean", "intent": "x"},
                ],
                "flow": [
                    {"from": "pick", "to": "login"},
                    {"from": "login", "to": "clean"},
                ],
            }
        },
    }
    result = transform(doc, now=NOW)
    assert ids(result.plan) == ["check_chooser", "login", "clean"]
    decision = result.plan[0].decision
    assert decision is not None
    assert decision.rule == "check_chooser.chooserPresent"
    assert ids(decision.yes) == ["pick"] and decision.no == []
    assert result.plan[0].checkpoint is None
    assert any("data_transform" in w and "resolver" in w for w in result.warnings)
    assert result.plan[2].method == "manual" and result.plan[2].compute is not None


def test_workflow_decision_and_loop_fields_of_the_architecture_page() -> None:
    """docs/architecture.md: a decision has `rule` and `question`; an iterative_loop has
    `over` and `iterator`, and `{{item.field}}` inside it is a variable, not a credential."""
    doc = {
        "meta": {"title": "wf"},
        "execution": {
            "workflow": {
                "nodes": [
                    {"id": "begin", "type": "start", "label": "Start"},
                    {
                        "id": "each",
                        "type": "iterative_loop",
                        "label": "Each email",
                        "over": "emails",
                        "iterator": "email",
                        "children": ["is_investor", "log_it"],
                    },
                    {
                        "id": "is_investor",
                        "type": "decision",
                        "label": "Route",
                        "question": "Is this email from an investor?",
                        "rule": 'email.category == "investor"',
                    },
                    {
                        "id": "log_it",
                        "type": "atomic_task",
                        "label": "Log it",
                        "actions": [
                            {
                                "type": "type",
                                "instruction": "Note {{email.subject}}",
                                "target": {"selector": "#note"},
                                "data": {"text": "{{email.subject}}"},
                            }
                        ],
                    },
                ],
                "flow": [
                    {"from": "begin", "to": "each"},
                    {"from": "is_investor", "to": "log_it", "condition": "yes"},
                ],
            }
        },
    }
    result = transform(doc, now=NOW)
    begin, loop = result.plan
    assert (begin.kind, begin.method, begin.children, begin.actions) == (
        "compound",
        "automated",
        [],
        [],
    )
    assert loop.loop is not None
    assert (loop.loop.over, loop.loop.iterator) == ("emails", "email")
    decision = loop.children[0].decision
    assert decision is not None
    assert decision.question == "Is this email from an investor?"
    assert decision.rule == 'email.category == "investor"'
    assert ids(decision.yes) == ["log_it"] and decision.no == []
    assert loop.children[0].checkpoint is None
    assert result.document["aef"]["config"]["credentials"] == []
    typed = decision.yes[0].actions[0]
    assert (typed.type, typed.selector, typed.value) == ("type", "#note", "{{email.subject}}")


def test_loop_exit_conditions_must_be_rules() -> None:
    nodes = [
        {
            "id": "L",
            "type": "loop",
            "iterator": "row",
            "exit_condition": "All relevant rows were checked.",
            "children": ["a"],
        },
        task("a"),
    ]
    result = transform(mini_sop(nodes, []), now=NOW)
    assert result.plan[0].loop is not None
    assert result.plan[0].loop.exit_condition is None
    assert result.plan[0].loop.over == "rows"
    assert any("exit condition" in w and "L" in w for w in result.warnings)


def test_older_v06_shape_is_handled() -> None:
    """Loop children without parentId, `start` conditions, a node reached only from inside
    the loop but listed nowhere, and a `start` pseudo-node."""
    nodes: list[dict[str, Any]] = [
        {"id": "T0", "type": "task", "label": "Open Gmail", "intent": "Open"},
        {
            "id": "L1",
            "type": "loop",
            "label": "Emails",
            "iterator": "email_in_inbox",
            "exit_condition": "All done",
            "children": ["C1", "D2", "C3", "C5"],
        },
        {"id": "C1", "type": "task", "label": "Open email"},
        {"id": "D2", "type": "decision", "label": "Investor?"},
        {"id": "C3", "type": "task", "label": "Open record"},
        {"id": "C4", "type": "task", "label": "Update record"},
        {"id": "C4_A1", "type": "task", "label": "Set date", "parentId": "C4"},
        {"id": "C4_A2", "type": "task", "label": "Write notes", "parentId": "C4"},
        {"id": "C5", "type": "task", "label": "Back to inbox"},
        {"id": "E", "type": "end", "label": "End"},
    ]
    edges = [
        {"source": "start", "target": "T0"},
        {"source": "T0", "target": "L1", "condition": "start"},
        {"source": "C1", "target": "D2", "condition": "next"},
        {"source": "D2", "target": "C3", "condition": "yes"},
        {"source": "C3", "target": "C4", "condition": "next"},
        {"source": "D2", "target": "C5", "condition": "no"},
        {"source": "C5", "target": "L1", "condition": "next"},
        {"source": "L1", "target": "E", "condition": "all_processed"},
    ]
    result = transform(mini_sop(nodes, edges), now=NOW)
    assert ids(result.plan) == ["T0", "L1", "E"]
    loop = result.plan[1]
    assert loop.loop is not None and loop.loop.over == "email_in_inbox_list"
    assert ids(loop.children) == ["C1", "D2"]
    decision = loop.children[1].decision
    assert decision is not None
    assert ids(decision.yes) == ["C3", "C4"] and ids(decision.no) == ["C5"]
    assert ids(decision.yes[1].children) == ["C4_A1", "C4_A2"]
    assert any("C4" in w and "placed in L1" in w for w in result.warnings)
    counts = Counter(s.id for s in walk(result.plan))
    assert set(counts) == {n["id"] for n in nodes} and set(counts.values()) == {1}


def test_unknown_node_types_are_warnings(sop: dict[str, Any]) -> None:
    sop["public"]["nodes"][0]["type"] = "teleport"
    result = transform(sop, now=NOW)
    assert result.plan[0].kind == "task"
    assert any("teleport" in w and "T0_setup_applications" in w for w in result.warnings)


def test_unknown_action_types_run_as_act(workflow: dict[str, Any]) -> None:
    node = workflow["execution"]["workflow"]["nodes"][1]
    node["actions"][1] = {"type": "hover_wiggle", "instruction": "Wiggle the mouse"}
    result = transform(workflow, now=NOW)
    action = by_id(result)["navigate_to_gmail"].actions[1]
    assert (action.type, action.instruction) == ("act", "Wiggle the mouse")
    assert any("hover_wiggle" in w for w in result.warnings)


def test_an_existing_aef_section_is_replaced(sop: dict[str, Any]) -> None:
    first = transform(sop, now=NOW)
    again = transform(first.document, now=NOW)
    assert again.plan == first.plan
    assert again.document == first.document
    assert any("existing aef section" in w for w in again.warnings)


def test_extra_fields_are_kept(sop: dict[str, Any]) -> None:
    sop["public"]["nodes"][0]["position"] = {"x": 1, "y": 2}
    sop["futureField"] = {"keep": ["me"]}
    result = transform(sop, now=NOW)
    assert result.document["futureField"] == {"keep": ["me"]}
    assert result.document["public"]["nodes"][0]["position"] == {"x": 1, "y": 2}


# --- validation errors name what is wrong ------------------------------------------------


def test_duplicate_ids(sop: dict[str, Any]) -> None:
    sop["public"]["nodes"].append(dict(sop["public"]["nodes"][3]))
    error = rejected(sop)
    assert "duplicate" in error.detail and "L1_C2_check_type_decision" in error.detail
    assert error.extra["ids"] == ["L1_C2_check_type_decision"]


def test_dangling_edges(sop: dict[str, Any], workflow: dict[str, Any]) -> None:
    sop["public"]["edges"].append({"source": "L1_C1_open_email", "target": "ghost"})
    error = rejected(sop)
    assert "ghost" in error.detail and "ghost" in error.extra["ids"]
    workflow["execution"]["workflow"]["flow"].append({"from": "phantom", "to": "add_to_crm"})
    assert "phantom" in rejected(workflow).detail


def test_dangling_hierarchy_references(sop: dict[str, Any]) -> None:
    sop["public"]["nodes"][2]["parentId"] = "no_such_parent"
    sop["public"]["nodes"][4]["children"].append("no_such_child")
    error = rejected(sop)
    assert "no_such_parent" in error.detail and "no_such_child" in error.detail


def test_conflicting_parents() -> None:
    doc = mini_sop(
        [task("p", children=["c"]), task("q", children=["c"]), task("c")],
        [],
    )
    error = rejected(doc)
    assert "c" in error.extra["ids"] and "both p and q" in error.detail


def test_cycles_outside_loops_are_refused() -> None:
    doc = mini_sop(
        [task("a"), task("b"), task("c")],
        [
            {"source": "a", "target": "b"},
            {"source": "b", "target": "c"},
            {"source": "c", "target": "b"},
        ],
    )
    error = rejected(doc)
    assert "cycle" in error.detail and "b → c → b" in error.detail
    assert set(error.extra["ids"]) == {"b", "c"}

    back_to_group = mini_sop(
        [task("g", children=["x", "y"]), task("x"), task("y")],
        [{"source": "x", "target": "y"}, {"source": "y", "target": "g"}],
    )
    assert "g" in rejected(back_to_group).extra["ids"]

    self_loop = mini_sop([task("a")], [{"source": "a", "target": "a"}])
    assert "a → a" in rejected(self_loop).detail


def test_a_cycle_inside_a_loop_must_return_to_its_start() -> None:
    body = ["s", "m", "n"]
    nodes = [{"id": "L", "type": "loop", "label": "L", "children": body}]
    nodes += [task(x) for x in body]
    ok = [
        {"source": "s", "target": "m"},
        {"source": "m", "target": "n"},
        {"source": "n", "target": "s"},
    ]
    assert ids(transform(mini_sop(nodes, ok), now=NOW).plan[0].children) == body
    inner = [
        {"source": "s", "target": "m"},
        {"source": "m", "target": "n"},
        {"source": "n", "target": "m"},
    ]
    error = rejected(mini_sop(nodes, inner))
    assert "inside loop L" in error.detail and set(error.extra["ids"]) == {"m", "n"}


def test_decision_branches_must_be_distinguishable() -> None:
    doc = mini_sop(
        [{"id": "d", "type": "decision", "label": "?"}, task("a"), task("b")],
        [{"source": "d", "target": "a"}, {"source": "d", "target": "b"}],
    )
    error = rejected(doc)
    assert "d" in error.extra["ids"] and "yes" in error.detail


def test_empty_and_unrecognised_documents() -> None:
    assert "no nodes" in rejected(mini_sop([], [])).detail
    assert "unrecognised" in rejected({}).detail
    assert "unrecognised" in rejected({"nodes": [], "edges": []}).detail
    assert "JSON object" in rejected([1, 2]).detail
    assert "JSON object" in rejected("sop").detail


def test_wrong_types_name_the_location(sop: dict[str, Any]) -> None:
    sop["public"]["nodes"][3]["id"] = 42
    error = rejected(sop)
    assert "public.nodes[3].id" in error.detail


def test_unstorable_json_is_refused(sop: dict[str, Any]) -> None:
    assert "not plain JSON" in rejected({**sop, "x": float("nan")}).detail
    assert "NUL" in rejected({**sop, "x": "a\u0000b"}).detail
    assert "Unicode" in rejected({**sop, "x": "\ud800"}).detail
    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    assert "nested" in rejected({**sop, "deep": deep}).detail


def test_output_is_deterministic(sop: dict[str, Any], workflow: dict[str, Any]) -> None:
    for doc in (sop, workflow):
        a, b = transform(doc, now=NOW), transform(copy.deepcopy(doc), now=NOW)
        assert json.dumps(a.document, sort_keys=True) == json.dumps(b.document, sort_keys=True)
        assert a.warnings == b.warnings


# --- risk by unit of work on the SOP fixtures ------------------------------------------------


def test_each_record_write_of_the_fixtures_is_one_unit(sop: dict[str, Any],
                                                       workflow: dict[str, Any]) -> None:
    """The v0.8 SOP writes a record in one grounded step per branch; the gmail workflow's
    'Add Investor to CRM' is its only commit. Opening, switching and closing are not risky."""
    steps = by_id(transform(sop, now=NOW))
    for write in ("L1_C3_A4_update_investor_record", "L1_C3_A5_add_investor_record"):
        checkpoint = steps[write].checkpoint
        assert checkpoint is not None and checkpoint.covers == [write]
    for neutral in ("L1_C3_A1_switch_to_airtable", "L1_C3_A2_find_investor",
                    "L1_C3_A6_close_airtable_modal", "L1_C1_open_email"):
        assert not steps[neutral].risky and steps[neutral].checkpoint is None, neutral
    steps = by_id(transform(workflow, now=NOW))
    add = steps["add_to_crm"].checkpoint
    assert add is not None and add.covers == ["add_to_crm"] and add.default_action == "pause"
    assert {s.id for s in steps.values() if s.risky} == {"add_to_crm"}
    for login in ("enter_email", "enter_password", "click_next_password"):
        assert steps[login].checkpoint is None, login
