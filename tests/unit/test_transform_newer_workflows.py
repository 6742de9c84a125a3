"""The newer workflow format: node types, shared children, error handlers, data steps, and the
feedback the transform gives (unsafe URLs, loops over lists nothing produces, inputs)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aef.errors import ValidationFailed
from aef.models import PlanStep
from aef.plan import find, walk
from aef.transform import TransformResult, transform

WORKFLOWS = Path(__file__).resolve().parents[1] / "fixtures" / "workflows"
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def run(name: str, **kwargs: Any) -> TransformResult:
    return transform(load(name), now=NOW, **kwargs)


def step(result: TransformResult, step_id: str) -> PlanStep:
    found = find(result.plan, step_id)
    assert found is not None, step_id
    return found


def ids(steps: list[PlanStep]) -> list[str]:
    return [s.id for s in steps]


# --- shared children --------------------------------------------------------------------------


def test_a_child_shared_by_converging_branches_runs_once_after_them() -> None:
    result = run("converging-branches")
    assert ids(result.plan) == [
        "open_contacts", "find_contact", "contact_exists", "save_contact", "log_done"
    ]
    decision = step(result, "contact_exists").decision
    assert decision is not None
    assert ids(decision.yes) == ["edit_contact"] and ids(decision.no) == ["new_contact"]
    assert ids(decision.yes[0].children) == ["open_contact_form", "set_last_contact"]
    assert ids(decision.no[0].children) == ["open_new_contact_form", "fill_contact_fields"]
    assert Counter(s.id for s in walk(result.plan))["save_contact"] == 1
    assert not [w for w in result.warnings if "save_contact" in w]


def test_a_child_shared_in_the_middle_of_two_branches_runs_in_each() -> None:
    result = run("shared-mid-branch")
    decision = step(result, "check_type").decision
    assert decision is not None
    renewal, inquiry = decision.yes[0], decision.no[0]
    assert ids(renewal.children) == ["open_renewal", "summarize", "attach_summary_to_renewal"]
    assert ids(inquiry.children) == ["open_inquiry", "summarize@inquiry", "reply_with_summary"]
    copy = step(result, "summarize@inquiry")
    assert copy.label == step(result, "summarize").label
    assert any("summarize@inquiry" in w for w in result.warnings)


def test_containers_that_are_not_alternatives_cannot_share_a_child() -> None:
    with pytest.raises(ValidationFailed) as info:
        run("sequential-sharing")
    assert info.value.status == 422
    assert "shared" in info.value.extra["ids"]
    assert "not alternative branches" in info.value.detail


def test_custom_checkpoints_on_a_shared_node_apply_to_its_copies() -> None:
    result = transform(load("shared-mid-branch"), {"customCheckpoints": ["summarize"]},
                       resolver=True)
    for step_id in ("summarize", "summarize@inquiry"):
        checkpoint = step(result, step_id).checkpoint
        assert checkpoint is not None and checkpoint.type == "before_step", step_id
    assert step(result, "open_renewal").checkpoint is None


# --- node types -------------------------------------------------------------------------------


def test_assert_nodes_and_assert_element_become_verify_actions() -> None:
    result = run("assertions")
    loaded = step(result, "inbox_loaded")
    assert [(a.type, a.url_contains, a.selector, a.value, a.state) for a in loaded.actions] == [
        ("verify", "/inbox", None, None, None),
        ("verify", None, "table.inbox", None, "visible"),
        ("verify", None, None, "Inbox", None),
    ]
    banner = step(result, "check_banner")
    assert [(a.selector, a.state, a.value, a.timeout_ms) for a in banner.actions] == [
        ("#banner", "visible", "Welcome", 4000),
        (".toast-error", "hidden", None, None),
        ("button.compose", "attached", None, None),
        ("button.send", "visible", None, None),
    ]
    assert banner.recovery is not None and banner.recovery.on_failure == "skip"
    assert any("'enabled' is checked only as" in w for w in result.warnings)
    assert any("'colorIs' is not understood" in w for w in result.warnings)


def test_list_iterator_is_a_loop_whose_failures_go_on_with_the_next_item() -> None:
    result = run("list-iterator")
    loop = step(result, "row_loop")
    assert loop.kind == "loop" and loop.loop is not None
    assert (loop.loop.over, loop.loop.iterator, loop.loop.max_iterations) == ("rows", "row", 25)
    assert loop.recovery is not None and loop.recovery.on_failure == "next_item"


def test_error_handlers_become_the_recovery_of_the_step_they_handle() -> None:
    result = run("error-handlers")
    plan_ids = {s.id for s in walk(result.plan)}
    assert not {"upload_failed", "sync_failed", "refresh_failed"} & plan_ids
    upload = step(result, "upload_report").recovery
    assert upload is not None
    assert (upload.on_failure, upload.handler, upload.retries, upload.backoff_ms) == (
        "escalate", "upload_failed", 2, [0, 3000])
    assert upload.instruction and "manual_upload" in upload.instruction
    sync = step(result, "sync_crm").recovery  # listed in the container: handles its body
    assert sync is not None and (sync.on_failure, sync.handler) == ("skip", "sync_failed")
    refresh = step(result, "refresh_dashboard").recovery
    assert refresh is not None and refresh.on_failure == "fallback"
    assert [(a.type, a.url) for a in refresh.actions] == [
        ("navigate", "https://crm.example.com/dashboard")]
    # reached by the normal flow: a step (a person completes the second factor)
    second = step(result, "second_factor")
    assert second.method == "manual" and second.checkpoint is not None
    assert second.checkpoint.type == "manual"


def test_an_error_handler_that_is_also_a_step_of_the_flow_is_refused() -> None:
    doc = load("error-handlers")
    doc["execution"]["workflow"]["flow"].append({"from": "sync_crm", "to": "upload_failed"})
    with pytest.raises(ValidationFailed) as info:
        transform(doc)
    assert "upload_failed" in info.value.extra["ids"]


def test_data_steps_are_manual_with_a_warning_when_no_resolver_is_configured() -> None:
    result = run("compute-nodes")
    data_steps = {
        "keep_large_orders": ("filter", "orders", "large_orders"),
        "normalize_amounts": ("transform", "large_orders", "normalized_orders"),
        "classify_orders": ("llm_call", "normalized_orders", "order_risk"),
        "summary": ("generate", None, "summary"),
    }
    for step_id, (operation, source, output) in data_steps.items():
        planned = step(result, step_id)
        assert planned.method == "manual" and planned.kind == "manual", step_id
        assert planned.checkpoint is not None and planned.checkpoint.type == "manual"
        assert planned.compute is not None
        assert (planned.compute.operation, planned.compute.input, planned.compute.output) == (
            operation, source, output)
        assert planned.actions == []
        assert any(w.startswith(f"step {step_id}:") and "resolver" in w
                   for w in result.warnings), step_id
    normalize = step(result, "normalize_amounts").compute
    assert normalize is not None and normalize.function and "Number" in normalize.function
    classify = step(result, "classify_orders").compute
    assert classify is not None and classify.prompt and classify.schema_ == {"type": "array"}
    # the outputs are variables the run produces, not credentials the caller must give
    assert result.inputs == []


def test_data_steps_go_to_the_resolver_when_one_is_configured() -> None:
    result = run("compute-nodes", resolver=True)
    for step_id in ("keep_large_orders", "normalize_amounts", "classify_orders", "summary"):
        planned = step(result, step_id)
        assert (planned.kind, planned.method, planned.checkpoint) == ("task", "resolver", None)
        assert planned.compute is not None
    assert not [w for w in result.warnings if "resolver" in w]


def test_the_bulletproof_shape_transforms_whole() -> None:
    """The application's v2 CRM workflow shape: every newer node type at once."""
    result = run("bulletproof-crm")
    loop = step(result, "message_loop")
    assert [s.id for s in loop.children] == [
        "assert_unprocessed", "open_message", "extract_investor", "normalize_investor",
        "open_crm", "search_record", "decide_record_exists", "close_record_modal",
        "label_processed", "assert_labelled"]
    assert step(result, "summarize_thread@create_record").compute is not None
    assert step(result, "second_factor").method == "manual"
    assert step(result, "auth_flow").recovery is not None
    assert {i.name: i.kind for i in result.inputs} == {
        "mail_email": "credential", "mail_password": "credential", "crm_base_id": "credential"}
    assert not [w for w in result.warnings if "loop iterates" in w]


# --- risk by unit of work ---------------------------------------------------------------------


def test_a_record_write_is_one_unit_with_one_checkpoint() -> None:
    result = run("bulletproof-crm")
    update = step(result, "update_interaction_date").checkpoint
    assert update is not None and update.type == "before_step" and update.default_action == "pause"
    assert update.covers == [
        "update_interaction_date", "summarize_thread", "update_notes", "close_record_modal"]
    create = step(result, "populate_fields").checkpoint
    assert create is not None
    assert create.covers == [
        "populate_fields", "summarize_thread@create_record", "set_follow_up", "close_record_modal"]
    for sibling in ("update_notes", "set_follow_up", "close_record_modal"):
        assert step(result, sibling).checkpoint is None, sibling
        assert step(result, sibling).risky, sibling
    # opening a dialog, navigating, searching: not risky
    for neutral in ("open_record_modal", "open_new_record_modal", "open_crm", "search_record",
                    "open_sign_in", "label_processed"):
        assert not step(result, neutral).risky, neutral
        assert step(result, neutral).checkpoint is None, neutral
    listed = {c["stepId"]: c["covers"] for c in result.document["aef"]["config"]["checkpoints"]}
    assert listed["populate_fields"] == create.covers


def test_field_writes_that_are_never_saved_are_not_risky() -> None:
    result = run("bulletproof-crm")
    for login_step in ("enter_email", "enter_password", "click_sign_in", "search_inbox"):
        assert not step(result, login_step).risky, login_step


def test_a_unit_across_converging_branches_covers_the_shared_save() -> None:
    result = run("converging-branches")
    edit = step(result, "set_last_contact").checkpoint
    new = step(result, "fill_contact_fields").checkpoint
    assert edit is not None and edit.covers == ["set_last_contact", "save_contact"]
    assert new is not None and new.covers == ["fill_contact_fields", "save_contact"]
    assert step(result, "save_contact").checkpoint is None
    assert step(result, "open_contact_form").checkpoint is None


def test_a_single_irreversible_action_is_its_own_unit() -> None:
    result = run("shared-mid-branch")
    reply = step(result, "reply_with_summary").checkpoint
    assert reply is not None and reply.covers == ["reply_with_summary"]
    assert "sends something" in reply.description
    # typing into a notes field with no save after it commits nothing
    assert step(result, "attach_summary_to_renewal").checkpoint is None


# --- feedback: URLs and loops -----------------------------------------------------------------


def test_navigations_the_network_guard_refuses_are_warned_about() -> None:
    result = run("unsafe-urls")
    warned = {w.split(":", 1)[0].removeprefix("step ") for w in result.warnings
              if "network guard will refuse" in w}
    refused = {f"go_{i}" for i in (*range(13), 15, 17)}
    assert warned == refused
    for i in (3, 4, 5, 6, 7):  # decimal, hex, octal, short and IPv6-mapped 169.254.169.254
        assert any(w.startswith(f"step go_{i}:") and "cloud metadata" in w
                   for w in result.warnings), i
    # placeholders in the scheme or host are judged only when the run fills them in
    assert not [w for w in result.warnings if w.startswith(("step go_13:", "step go_14:"))]


def test_the_runner_settings_decide_loopback_and_private_networks() -> None:
    class Allowing:
        allow_loopback = True
        allow_private_networks = True

    result = run("unsafe-urls", url_policy=Allowing())
    warned = {w.split(":", 1)[0].removeprefix("step ") for w in result.warnings
              if "network guard" in w}
    assert "go_10" not in warned and "go_11" not in warned
    assert {"go_2", "go_8", "go_9"} <= warned  # metadata stays blocked whatever the settings


def test_a_loop_over_a_list_nothing_produces_is_warned_about() -> None:
    result = run("list-iterator")
    loops = [w for w in result.warnings if "loop iterates" in w]
    assert len(loops) == 1 and loops[0].startswith("step stray_loop:")
    assert "'attachments'" in loops[0]


def test_a_declared_list_is_not_warned_about() -> None:
    doc = load("list-iterator")
    doc["execution"]["variables"] = {"attachments": "the attachments to open"}
    result = transform(doc)
    assert not [w for w in result.warnings if "loop iterates" in w]


# --- inputs -----------------------------------------------------------------------------------


def test_inputs_list_declared_variables_and_credentials_with_their_steps() -> None:
    result = run("converging-branches")
    assert [i.model_dump(by_alias=True) for i in result.inputs] == [
        {"name": "sender_email", "kind": "variable",
         "requiredBy": ["find_contact", "fill_contact_fields"],
         "description": "The sender's address"},
        {"name": "sender_name", "kind": "variable", "requiredBy": ["fill_contact_fields"],
         "example": "Ada Lovelace", "description": "The sender's name"},
    ]
    assert result.document["aef"]["inputs"][1]["example"] == "Ada Lovelace"


def test_the_demo_workflow_needs_its_site_address_and_two_credentials() -> None:
    demo = Path(__file__).resolve().parents[2] / "local" / "demo" / "workflows"
    result = transform(json.loads((demo / "investor-crm-demo.json").read_text()))
    kinds = {i.name: i.kind for i in result.inputs}
    assert kinds == {"base_url": "variable", "demo_email": "credential",
                     "demo_password": "credential"}
    by_name = {i.name: i for i in result.inputs}
    assert "enter_password" in by_name["demo_password"].required_by
    assert "enter_email" not in by_name["demo_password"].required_by


def test_an_sop_navigation_to_a_refused_scheme_is_planned_and_warned_about() -> None:
    def node(node_id: str, text: str) -> dict[str, Any]:
        return {"id": node_id, "type": "task", "label": node_id, "automation": {
            "instructions": [{"sequence": 1, "action_type": "navigate",
                              "stagehand_instruction": text}]}}

    doc = {"meta": {"title": "sop"}, "public": {
        "nodes": [node("a", "Open file:///etc/passwd in the browser"),
                  node("b", "Go to http://0xA9FEA9FE/latest/meta-data"),
                  node("c", "Navigate to javascript:alert(document.cookie)")],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}]}}
    result = transform(doc, now=NOW)
    assert [(s.actions[0].type, s.actions[0].url) for s in result.plan] == [
        ("navigate", "file:///etc/passwd"), ("navigate", "http://0xA9FEA9FE/latest/meta-data"),
        ("navigate", "javascript:alert(document.cookie)")]
    warned = [w for w in result.warnings if "network guard will refuse" in w]
    assert [w.split(":", 1)[0] for w in warned] == ["step a", "step b", "step c"]
