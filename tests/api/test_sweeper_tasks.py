"""The sweeper stops the ECS tasks of runners it gives up on (moto ECS): a hung task would
otherwise run, and bill, until its own time limit. The sweeper needs no web framework."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from aef import service
from tests.api.helpers import run_inputs, transform
from tests.api.test_sweeper_and_actions import expire_lease, started
from tests.integration.factories import admin_connection


def task_status(moto_ecs: Any, task_arn: str) -> str:
    (task,) = moto_ecs.describe_tasks(cluster="aef", tasks=[task_arn])["tasks"]
    return str(task["lastStatus"])


def stored_task_arn(db: Any, execution_id: str) -> str:
    with admin_connection(db) as conn:
        row = conn.execute("select task_arn from aef_executions where id = %s",
                           (execution_id,)).fetchone()
    assert row["task_arn"] and row["task_arn"].startswith("arn:aws:ecs:")
    return str(row["task_arn"])


def test_a_lost_runners_task_is_stopped(api: Any, db: Any, new_user: Any,
                                        moto_ecs: Any) -> None:
    user = new_user()
    execution_id, _runner = started(api, db, user)
    task_arn = stored_task_arn(db, execution_id)
    assert task_status(moto_ecs, task_arn) != "STOPPED"
    expire_lease(db, execution_id)

    result = service.sweep(db=db)
    assert result["runnersLost"] >= 1 and result["tasksStopped"] >= 1
    assert task_status(moto_ecs, task_arn) == "STOPPED"
    (task,) = moto_ecs.describe_tasks(cluster="aef", tasks=[task_arn])["tasks"]
    assert task["stoppedReason"] == "AEF sweeper: the runner stopped responding"


def test_a_task_that_never_claimed_its_execution_is_stopped(api: Any, db: Any, new_user: Any,
                                                           moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user)
    reply = api.call("POST", "/api/aef/execute", user.token,
                     {"aefDocumentId": created["aefDocumentId"],
                      "executionId": created["executionId"], **run_inputs(created)})
    assert reply.status == 202 and reply.body["status"] == "queued"
    task_arn = stored_task_arn(db, created["executionId"])

    service.sweep(db=db, queued_timeout_seconds=3600)
    assert task_status(moto_ecs, task_arn) != "STOPPED"  # still within its start time
    result = service.sweep(db=db, queued_timeout_seconds=0)
    assert result["staleQueued"] >= 1
    assert task_status(moto_ecs, task_arn) == "STOPPED"


def test_the_sweeper_imports_no_web_framework() -> None:
    code = ("import sys, functions.sweeper.app; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fastapi', 'starlette', 'mangum', 'uvicorn')); assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
