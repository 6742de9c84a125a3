"""A step's error handler (RecoveryPolicy, from a workflow's error_handler node) and data steps
(ComputeSpec, from data_transform / generator / llm_call nodes) as the engine runs them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aef.db import Database
from aef.settings import Settings
from tests.runner.helpers import (
    execution_row,
    logs,
    run_engine,
    send_command,
    status_becomes,
    step_rows,
    task,
)
from tests.runner.pages import Site

pytestmark = pytest.mark.browser

FAST = {"stepTimeout": 5, "autoRetryEnabled": False}


def never(title: str = "Never", timeout_ms: int = 500) -> dict[str, Any]:
    return {"type": "verify", "selector": "#title", "value": title, "timeoutMs": timeout_ms}


def messages(db: Database, execution: Any) -> list[str]:
    return [line["message"] for line in logs(db, execution)]


async def test_retries_with_backoff_then_skip(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        task("check", [never()], recovery={"retries": 2, "backoffMs": [10, 20],
                                           "onFailure": "skip"}),
        task("last", [{"type": "verify", "selector": "#title", "value": "Page 1"}]),
    ]
    execution = new_execution(plan, config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)
    assert outcome.status == "completed", outcome.message
    steps = step_rows(db, execution)
    assert steps[("check", 0)]["status"] == "skipped"
    assert steps[("last", 0)]["status"] == "completed"
    said = messages(db, execution)
    assert any("retry 1 of 2" in m for m in said) and any("retry 2 of 2" in m for m in said)
    assert any(m.startswith("Step skipped by its error handler") for m in said)


async def test_next_item_abandons_only_that_iteration(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [{"id": "each", "label": "Each page", "kind": "loop", "method": "automated",
             "loop": {"iterator": "n", "over": "pages", "maxIterations": 10},
             "recovery": {"onFailure": "next_item"},
             "children": [
                 task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n={{{{n}}}}"},
                               {"type": "verify", "selector": "#title", "pattern": "Page [13]",
                                "timeoutMs": 2000}]),
                 task("note", [{"type": "fill", "selector": "#note", "value": "seen {{n}}"}]),
             ]}]
    execution = new_execution(plan, config=FAST, variables={"pages": [1, 2, 3]})
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)
    assert outcome.status == "completed", outcome.message
    steps = step_rows(db, execution)
    assert [steps[("open", i)]["status"] for i in (1, 2, 3)] == [
        "completed", "skipped", "completed"]
    assert ("note", 2) not in steps, "the rest of item 2 was abandoned"
    assert steps[("note", 1)]["status"] == steps[("note", 3)]["status"] == "completed"
    assert any(m.startswith("Item 2 of 3 abandoned by its error handler")
               for m in messages(db, execution))


async def test_stop_policy_fails_the_execution(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            task("check", [never()], recovery={"onFailure": "stop"}),
            task("never-run", [{"type": "navigate", "url": f"{site.base_url}/page?n=2"}])]
    execution = new_execution(plan, config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)
    assert outcome.status == "failed" and "error handler stops" in outcome.message
    row = execution_row(db, execution)
    assert row["status"] == "failed"
    assert ("never-run", 0) not in step_rows(db, execution)


async def test_fallback_runs_once_then_the_step_again(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            task("check", [never("Page 9", 3000)], recovery={
                "onFailure": "fallback",
                "actions": [{"type": "navigate", "url": f"{site.base_url}/page?n=9"}]})]
    execution = new_execution(plan, config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)
    assert outcome.status == "completed", outcome.message
    assert step_rows(db, execution)[("check", 0)]["status"] == "completed"
    assert any(m.startswith("Fallback: ") for m in messages(db, execution))


async def test_escalate_policy_asks_a_person_with_the_handlers_instruction(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            task("check", [never()], recovery={"onFailure": "escalate",
                                               "instruction": "Enter the 2FA code by hand"})]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    row = await status_becomes(db, execution, "waiting_recovery")
    message = row["error"]["message"]
    assert message.endswith(". Enter the 2FA code by hand") and ".." not in message, message
    send_command(db, execution, "skip", step_id="check")
    outcome = await asyncio.wait_for(runner, 30)
    assert outcome.status == "completed"


def compute_step(**compute: Any) -> dict[str, Any]:
    return {"id": "shout", "label": "Upper-case the name", "kind": "task", "method": "resolver",
            "compute": {"operation": "transform", "instruction": "Upper-case the name",
                        "output": "loud", **compute}}


async def test_a_data_step_is_computed_by_the_configured_resolver(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    configured = settings.model_copy(update={
        "llm_resolver": "tests.runner.compute_stub:ComputeStub"})
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            compute_step(input="name"),
            task("use", [{"type": "fill", "selector": "#note", "value": "{{loud}}"},
                         {"type": "verify", "selector": "#note", "value": "ADA LOVELACE"}])]
    execution = new_execution(plan, config=FAST, variables={"name": "Ada Lovelace"},
                              secret_values={"pw": "secret-value"})
    outcome = await asyncio.wait_for(run_engine(configured, db, execution), 60)
    assert outcome.status == "completed", outcome.message
    assert execution_row(db, execution)["variables"]["loud"] == "ADA LOVELACE"
    assert "Computed loud (transform)" in messages(db, execution)


async def test_a_data_step_without_a_resolver_goes_to_a_person(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            compute_step(input="name")]
    execution = new_execution(plan, config=FAST, variables={"name": "Ada"})
    runner = asyncio.create_task(run_engine(settings, db, execution))
    row = await status_becomes(db, execution, "waiting_recovery")
    assert "No configured resolver can compute 'loud'" in row["error"]["message"]
    send_command(db, execution, "skip", step_id="shout")
    outcome = await asyncio.wait_for(runner, 30)
    assert outcome.status == "completed"
    assert step_rows(db, execution)[("shout", 0)]["status"] == "skipped"
