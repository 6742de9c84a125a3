"""Fault b: ECS refuses run_task. POST /execute answers `failed` with a retry option at once
(never a `queued` execution nobody will claim), and a retry once ECS is fixed re-queues it and
starts a task.
"""

from __future__ import annotations

from typing import Any

import pytest

from aef import service
from aef.db import Database
from aef.launcher import EcsLauncher
from aef.settings import get_settings
from tests.faults.checks import assert_outbox_intact, events, execution_row, log_lines
from tests.faults.conftest import Person, use_launcher
from tests.integration.factories import create_document
from tests.runner.helpers import aef_document, task


@pytest.mark.parametrize(("broken", "error_name"), [
    ({"ecs_cluster": "aef-deleted-cluster"}, "ClusterNotFoundException"),
    ({"ecs_task_definition": "aef-runner-never-registered"}, "ClientException"),
])
def test_run_task_failure_fails_the_execution_with_retry_and_retry_requeues(
        api: Any, db: Database, person: Person, moto_ecs: Any, broken: dict[str, str],
        error_name: str) -> None:
    settings = get_settings()
    document = create_document(db, person.user, document=aef_document(
        [task("s0", [{"type": "wait", "timeoutMs": 1}])]))
    tasks_before = len(moto_ecs.list_tasks(cluster=settings.ecs_cluster)["taskArns"])

    with use_launcher(EcsLauncher(settings.model_copy(update=broken), client=moto_ecs)):
        reply = api.call("POST", "/api/aef/execute", person.token,
                         {"aefDocumentId": str(document["id"])})
    assert reply.status == 202, reply.body
    execution_id = reply.body["executionId"]
    assert reply.body["status"] == "failed"

    row = execution_row(db, execution_id)
    assert row["status"] == "failed" and row["task_arn"] is None
    assert row["error"]["message"].startswith("ECS refused to start the runner: " + error_name)
    assert [o["action"] for o in row["error"]["recovery_options"]] == ["retry"]
    live = api.call("GET", f"/api/aef/live/{execution_id}", person.token)
    assert live.status == 200
    assert live.body["message"]["execution"]["status"] == "failed"
    assert live.body["message"]["type"] == "error"
    assert [o["action"] for o in live.body["message"]["error"]["recovery_options"]] == ["retry"]
    assert [e["type"] for e in events(db, execution_id)] == ["execution_update", "error"]
    assert any(line["level"] == "error" and error_name in line["message"]
               for line in log_lines(db, execution_id))
    # it is not a queued execution waiting for a runner: the sweeper has nothing to do with it
    service.sweep(db=db, queued_timeout_seconds=0)
    assert execution_row(db, execution_id)["status"] == "failed"
    assert len(events(db, execution_id)) == 2

    # ECS fixed (the session launcher points at the real cluster and task definition)
    with use_launcher(EcsLauncher(settings, client=moto_ecs)):
        retry = api.call("POST", f"/api/aef/action/{execution_id}", person.token,
                         {"action": "retry"})
    assert retry.status == 200, retry.body
    assert retry.body["status"] == "queued" and retry.body["delivered"] == "launched"
    row = execution_row(db, execution_id)
    assert row["status"] == "queued" and row["error"] is None
    assert row["task_arn"] and row["task_arn"].startswith("arn:aws:ecs:")
    arns = moto_ecs.list_tasks(cluster=settings.ecs_cluster)["taskArns"]
    assert len(arns) == tasks_before + 1 and row["task_arn"] in arns
    env = moto_ecs.describe_tasks(cluster=settings.ecs_cluster, tasks=[row["task_arn"]])[
        "tasks"][0]["overrides"]["containerOverrides"][0]["environment"]
    assert {e["name"]: e["value"] for e in env}["AEF_EXECUTION_ID"] == execution_id
    assert_outbox_intact(db, execution_id)

    # moto's task never runs a runner: stop the queued execution (cancelled, task stopped)
    with use_launcher(EcsLauncher(settings, client=moto_ecs)):
        stop = api.call("DELETE", f"/api/aef/stop/{execution_id}", person.token)
    assert stop.status == 200, stop.body
    assert stop.body == {"status": "stopped", "cleanup": "completed"}
    assert execution_row(db, execution_id)["status"] == "cancelled"
    described = moto_ecs.describe_tasks(cluster=settings.ecs_cluster, tasks=[row["task_arn"]])
    assert described["tasks"][0]["lastStatus"] == "STOPPED"
    assert_outbox_intact(db, execution_id)
