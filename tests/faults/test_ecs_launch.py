"""Fault b: ECS refuses run_task. POST /execute answers `failed` with a retry option at once
(never a `queued` execution nobody will claim), and a retry once ECS is fixed re-queues it and
starts a task. What AWS said (ARNs, the account id) stays in the operator's log: the user sees
a generic message and the error code. A throttled ECS is retried only while the Lambda has
time left, so the answer is `failed` (not a 503 after commit with a run queued forever).
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from aef import service
from aef.db import Database
from aef.launcher import ATTEMPT_SECONDS, EcsLauncher
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
    assert row["error"]["message"].startswith(
        f"The runner could not be started (ECS: {error_name})")
    assert row["error"]["code"] == error_name
    assert [o["action"] for o in row["error"]["recovery_options"]] == ["retry"]
    assert_no_aws_detail(db, execution_id, api.call("GET", f"/api/aef/live/{execution_id}",
                                                    person.token).body)
    live = api.call("GET", f"/api/aef/live/{execution_id}", person.token)
    assert live.status == 200
    assert live.body["message"]["execution"]["status"] == "failed"
    assert live.body["message"]["type"] == "error"
    assert [o["action"] for o in live.body["message"]["error"]["recovery_options"]] == ["retry"]
    assert [e["type"] for e in events(db, execution_id)] == ["execution_update", "error"]
    assert any(line["level"] == "error" and error_name in line["message"]
               and line["details"] == {"code": error_name}
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
    # the execution id only: the runner claims its token with its task ARN
    assert env == [{"name": "AEF_EXECUTION_ID", "value": execution_id}]
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


def assert_no_aws_detail(db: Database, execution_id: str, *bodies: Any) -> None:
    """No ARN and no account id in anything the user can read about the execution."""
    readable = json.dumps([execution_row(db, execution_id)["error"],
                           log_lines(db, execution_id), events(db, execution_id), *bodies],
                          default=str)
    assert "arn:" not in readable
    assert moto_account() not in readable


def moto_account() -> str:
    from moto.core import DEFAULT_ACCOUNT_ID

    return str(DEFAULT_ACCOUNT_ID)


def test_a_throttled_ecs_is_retried_only_while_the_lambda_has_time(
        db: Database, person: Person, moto_ecs: Any) -> None:
    from botocore.stub import Stubber

    from functions.execute.app import handler
    from tests.apigw import LambdaContext, apigw_event, invoke

    class ShortLambda(LambdaContext):
        started = time.monotonic()

        def get_remaining_time_in_millis(self) -> int:  # 14 s left when the request came in
            return int((14.0 - (time.monotonic() - self.started)) * 1000)

    settings = get_settings()
    document = create_document(db, person.user, document=aef_document(
        [task("s0", [{"type": "wait", "timeoutMs": 1}])]))
    client = boto3.client("ecs", region_name="us-east-1")
    attempts: list[float] = []
    client.meta.events.register("provide-client-params.ecs.RunTask",
                                lambda **_: attempts.append(time.monotonic()))
    launcher = EcsLauncher(settings, client=client)
    with Stubber(client) as stub, use_launcher(launcher):
        for _ in range(40):
            stub.add_client_error("run_task", service_error_code="ThrottlingException",
                                  service_message="Rate exceeded", http_status_code=400)
        context = ShortLambda()
        event = apigw_event("POST", "/api/aef/execute",
                            headers={"authorization": f"Bearer {person.token}"},
                            body={"aefDocumentId": str(document["id"])})
        status, _headers, body = invoke(handler, event, context)
    assert status == 202, body
    assert body["status"] == "failed"
    row = execution_row(db, body["executionId"])
    assert row["status"] == "failed" and row["error"]["code"] == "ThrottlingException"
    assert len(attempts) >= 2  # it did retry
    # the last attempt could still finish (worst case) before the time kept for the writes
    assert attempts[-1] + ATTEMPT_SECONDS <= context.started + 14.0 - \
        settings.launch_reserve_seconds
    assert_no_aws_detail(db, body["executionId"], body)

