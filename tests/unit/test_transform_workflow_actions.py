"""JSON workflow actions in the documented flat shape (docs/architecture.md, "Plan"), loops with
`over`/`iterator`/`maxIterations`, full decision rules and declared run inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aef.models import Action, PlanStep
from aef.sop_formats.graph import MAX_TIMEOUT_MS
from aef.transform import TransformResult, transform

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DEMO_WORKFLOW = (
    Path(__file__).resolve().parents[2] / "local" / "demo" / "workflows" / "investor-crm-demo.json"
)


def workflow(
    nodes: list[dict[str, Any]],
    flow: list[dict[str, Any]] | None = None,
    **execution: Any,
) -> dict[str, Any]:
    return {
        "meta": {"id": "wf", "title": "flat"},
        "execution": {"workflow": {"nodes": nodes, "flow": flow or []}, **execution},
    }


def one_task(*actions: dict[str, Any]) -> dict[str, Any]:
    return workflow([{"id": "t", "type": "atomic_task", "label": "T", "actions": list(actions)}])


def planned(doc: dict[str, Any]) -> list[dict[str, Any]]:
    result = transform(doc, now=NOW)
    return [a.model_dump(by_alias=True) for a in result.plan[0].actions]


def steps(result: TransformResult) -> dict[str, PlanStep]:
    out: dict[str, PlanStep] = {}
    stack = list(result.plan)
    while stack:
        step = stack.pop()
        out[step.id] = step
        stack += step.children
        if step.decision is not None:
            stack += step.decision.yes + step.decision.no
    return out


# --- flat actions ------------------------------------------------------------------------

FLAT_ACTIONS: list[dict[str, Any]] = [
    {"type": "navigate", "url": "{{base_url}}/mail/login", "instruction": "Open it"},
    {
        "type": "wait",
        "selector": "input[name='email']",
        "state": "visible",
        "timeoutMs": 5000,
        "instruction": "Wait for the field",
    },
    {"type": "wait", "urlContains": "/mail/inbox", "timeoutMs": 8000, "instruction": "Inbox"},
    {
        "type": "extract",
        "selector": "[data-thread-id]",
        "attribute": "data-thread-id",
        "many": True,
        "variable": "emails",
        "instruction": "Ids",
    },
    {
        "type": "extract",
        "selector": "#total",
        "pattern": "(\\d+) results",
        "variable": "total",
        "instruction": "Count",
    },
    {"type": "fill", "selector": "#q", "value": "{{who}}", "instruction": "Search"},
    {"type": "press", "selector": "#q", "key": "Enter", "instruction": "Run it"},
    {
        "type": "verify",
        "selector": "article[data-processed='true']",
        "state": "visible",
        "timeoutMs": 5000,
        "instruction": "Processed",
    },
    {"type": "verify", "pattern": "Added record", "instruction": "Flash"},
    {"type": "verify", "value": "Welcome", "urlContains": "/home", "instruction": "Home"},
    {"type": "select", "selector": "#stage", "value": "Seed", "instruction": "Stage"},
    {"type": "check", "selector": "#agree", "instruction": "Agree"},
    {"type": "download", "selector": "#export", "variable": "export_file", "instruction": "CSV"},
    {"type": "act", "instruction": "Click the Save button", "timeoutMs": 8000},
    {
        "type": "act",
        "instruction": "Type {{demo_email}} into the Email field",
        "credentialField": "demo_email",
    },
]


@pytest.mark.parametrize("action", FLAT_ACTIONS, ids=lambda a: f"{a['type']}")
def test_a_flat_action_passes_through_as_written(action: dict[str, Any]) -> None:
    assert planned(one_task(action)) == [action]


def test_flat_navigate_is_a_navigate_not_a_grounded_act() -> None:
    (navigate,) = transform(one_task(FLAT_ACTIONS[0]), now=NOW).plan[0].actions
    assert (navigate.type, navigate.url) == ("navigate", "{{base_url}}/mail/login")


def test_flat_fields_win_over_the_nested_shape() -> None:
    action = {
        "type": "navigate",
        "url": "https://flat.example/a",
        "target": {"url": "https://nested.example/b", "selector": "#nested"},
        "timeoutMs": 1500,
        "timeout": 9000,
        "instruction": "Go",
    }
    fill = {
        "type": "fill",
        "selector": "#flat",
        "value": "flat value",
        "target": {"selector": "#nested"},
        "data": {"text": "nested value"},
        "instruction": "Fill",
    }
    press = {"type": "press", "key": "Tab", "data": {"key": "Enter"}, "instruction": "Key"}
    nav, filled, pressed = transform(one_task(action, fill, press), now=NOW).plan[0].actions
    assert (nav.type, nav.url, nav.timeout_ms) == ("navigate", "https://flat.example/a", 1500)
    assert (filled.selector, filled.value) == ("#flat", "flat value")
    assert pressed.key == "Tab"


def test_nested_fields_fill_in_what_the_flat_shape_leaves_out() -> None:
    action = {
        "type": "wait",
        "target": {"url_contains": "inbox"},
        "timeoutMs": 2000,
        "instruction": "Wait",
    }
    (wait,) = transform(one_task(action), now=NOW).plan[0].actions
    assert (wait.type, wait.url_contains, wait.timeout_ms, wait.state) == (
        "wait",
        "inbox",
        2000,
        None,
    )


def test_a_bare_wait_waits_for_the_load_state_unless_a_state_is_given() -> None:
    bare, explicit = (
        transform(
            one_task(
                {"type": "wait", "instruction": "Settle"},
                {"type": "wait", "state": "networkidle", "instruction": "Quiet"},
            ),
            now=NOW,
        )
        .plan[0]
        .actions
    )
    assert (bare.state, explicit.state) == ("load", "networkidle")


def test_non_string_values_become_their_json_text_and_timeouts_are_capped() -> None:
    fill, check = (
        transform(
            one_task(
                {"type": "fill", "selector": "#n", "value": 3, "timeoutMs": 10**12},
                {"type": "check", "selector": "#b", "value": True},
            ),
            now=NOW,
        )
        .plan[0]
        .actions
    )
    assert (fill.value, fill.timeout_ms) == ("3", MAX_TIMEOUT_MS)
    assert check.value == "true"


def test_extract_without_a_variable_stores_under_the_step_id() -> None:
    (extract,) = (
        transform(one_task({"type": "extract", "selector": "h1", "instruction": "Title"}), now=NOW)
        .plan[0]
        .actions
    )
    assert extract.variable == "t"


def test_planned_actions_are_what_the_runner_reads() -> None:
    """The plan's JSON re-validates to the same actions (what the runner loads)."""
    result = transform(one_task(*FLAT_ACTIONS), now=NOW)
    stored = result.document["aef"]["plan"][0]["actions"]
    assert stored == FLAT_ACTIONS
    assert [Action.model_validate(a) for a in stored] == result.plan[0].actions


# --- loops, rules, variables ---------------------------------------------------------------


def loop_doc(**loop: Any) -> dict[str, Any]:
    return workflow(
        [
            {"id": "L", "type": "iterative_loop", "label": "Each", "children": ["a"], **loop},
            {
                "id": "a",
                "type": "atomic_task",
                "label": "Open",
                "parentId": "L",
                "actions": [{"type": "navigate", "url": "https://x.example/{{email_id}}"}],
            },
        ]
    )


def test_loop_reads_over_iterator_and_max_iterations_on_the_node() -> None:
    result = transform(loop_doc(over="emails", iterator="email_id", maxIterations=20), now=NOW)
    loop = result.plan[0].loop
    assert loop is not None
    assert (loop.over, loop.iterator, loop.max_iterations) == ("emails", "email_id", 20)
    assert result.document["aef"]["config"]["credentials"] == []  # email_id is the loop item


def test_loop_node_fields_win_over_iterator_config() -> None:
    config = {"listVariable": "rows", "itemVariable": "row", "maxIterations": 7}
    result = transform(
        loop_doc(over="emails", iterator="email_id", maxIterations=3, iteratorConfig=config),
        now=NOW,
    )
    loop = result.plan[0].loop
    assert loop is not None
    assert (loop.over, loop.iterator, loop.max_iterations) == ("emails", "email_id", 3)
    from_config = transform(loop_doc(iteratorConfig=config), now=NOW).plan[0].loop
    assert from_config is not None
    assert (from_config.over, from_config.iterator, from_config.max_iterations) == (
        "rows",
        "row",
        7,
    )


@pytest.mark.parametrize(
    "rule",
    [
        "crm_match_count > 0",
        'crm_match_count >= 1 and email_category != "Spam"',
        'subject contains "invest" or sender matches "@vc\\\\."',
        "crm_record_id exists",
        "not (flag)",
    ],
)
def test_decision_rules_are_checked_with_aef_rules(rule: str) -> None:
    doc = workflow(
        [
            {"id": "d", "type": "decision", "label": "Known?", "rule": rule},
            {"id": "y", "type": "atomic_task", "label": "Yes"},
            {"id": "n", "type": "atomic_task", "label": "No"},
        ],
        [{"from": "d", "to": "y", "condition": "yes"}, {"from": "d", "to": "n", "condition": "no"}],
    )
    result = transform(doc, now=NOW)
    decision = result.plan[0].decision
    assert decision is not None and decision.rule == rule
    assert result.plan[0].checkpoint is None  # a rule decides: no person is asked
    assert result.warnings == []


def test_a_rule_aef_rules_refuses_becomes_a_person_s_decision() -> None:
    doc = workflow([{"id": "d", "type": "decision", "label": "Known?", "rule": "count >> 0"}])
    result = transform(doc, now=NOW)
    decision = result.plan[0].decision
    assert decision is not None and decision.rule is None
    assert result.plan[0].checkpoint is not None
    assert result.plan[0].checkpoint.type == "decision"
    assert any("count >> 0" in w for w in result.warnings)


@pytest.mark.parametrize(
    "declared", [{"base_url": "The site's address"}, ["base_url"]], ids=["dict", "list"]
)
def test_declared_run_inputs_are_not_credentials(declared: Any) -> None:
    action = {"type": "navigate", "url": "{{base_url}}/x/{{api_token}}"}
    undeclared = transform(one_task(action), now=NOW)
    assert steps(undeclared)["t"].credentials == ["base_url", "api_token"]
    doc = one_task(action)
    doc["execution"]["variables"] = declared
    result = transform(doc, now=NOW)
    assert steps(result)["t"].credentials == ["api_token"]
    assert [c["id"] for c in result.document["aef"]["config"]["credentials"]] == ["api_token"]
    assert result.document["execution"]["variables"] == declared  # the original is kept


def test_extract_variables_are_not_credentials() -> None:
    doc = one_task(
        {"type": "extract", "selector": "#id", "attribute": "data-id", "variable": "record_id"},
        {"type": "navigate", "url": "https://crm.example/record/{{record_id}}/edit"},
    )
    assert steps(transform(doc, now=NOW))["t"].credentials == []


def test_the_demo_workflow_plans_every_action_as_written() -> None:
    doc = json.loads(DEMO_WORKFLOW.read_text())
    result = transform(doc, now=NOW)
    assert result.warnings == []
    planned_steps = steps(result)
    for node in doc["execution"]["workflow"]["nodes"]:
        actions = [a.model_dump(by_alias=True) for a in planned_steps[node["id"]].actions]
        assert actions == node.get("actions", []), node["id"]
    credentials = {c["id"] for c in result.document["aef"]["config"]["credentials"]}
    assert credentials == {"demo_email", "demo_password"}
