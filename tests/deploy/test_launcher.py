"""EcsLauncher against a real botocore ECS client (Stubber for the answers, event hooks for
network faults): retries fit in the Lambda's remaining time, a retry never starts a second
task, nothing secret rides in the overrides, and no AWS detail reaches the user."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from aef.deadline import deadline
from aef.launcher import ATTEMPT_SECONDS, EcsLauncher, LaunchFailed
from aef.settings import Settings

ACCOUNT = "123456789012"
TASK_ARN = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/aef/0123456789abcdef0123456789abcdef"


class FakeTime:
    """A monotonic clock that only moves when the launcher sleeps (or a call takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def ecs() -> Iterator[Any]:
    client = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    yield client


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"ecs_cluster": "aef", "ecs_task_definition": "aef-runner",
                              "ecs_subnets": ["subnet-1"], "ecs_security_groups": ["sg-1"]}
    return Settings(**{**values, **overrides})


def record_attempts(client: Any, fake: FakeTime, seconds_per_call: float = 0.0
                    ) -> list[dict[str, Any]]:
    """Each RunTask's parameters and its start time; each call takes `seconds_per_call`."""
    calls: list[dict[str, Any]] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        calls.append({"at": fake.now, **params})
        fake.now += seconds_per_call

    client.meta.events.register("provide-client-params.ecs.RunTask", before)
    return calls


def throttled(stub: Stubber, times: int) -> None:
    for _ in range(times):
        stub.add_client_error("run_task", service_error_code="ThrottlingException",
                              service_message=f"Rate exceeded for account {ACCOUNT}",
                              http_status_code=400)


def started(stub: Stubber) -> None:
    stub.add_response("run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []})


@pytest.mark.parametrize("remaining", [8.0, 12.0, 20.0, 25.0, 40.0])
def test_throttled_retries_end_before_the_lambda_does(ecs: Any, remaining: float) -> None:
    fake = FakeTime()
    s = settings()
    calls = record_attempts(ecs, fake, seconds_per_call=0.3)
    with Stubber(ecs) as stub:
        throttled(stub, 50)
        launcher = EcsLauncher(s, client=ecs, sleep=fake.sleep, clock=fake.clock)
        end = fake.now + remaining
        with deadline(_real_deadline(remaining)), pytest.raises(LaunchFailed) as failed:
            launcher.launch(str(uuid.uuid4()), "token")
    assert failed.value.code == ("ThrottlingException" if calls else "launch_timeout")
    # every attempt started early enough to finish (worst case) with the reserve still left
    for call in calls:
        assert call["at"] + ATTEMPT_SECONDS <= end - s.launch_reserve_seconds
    assert fake.now <= end - s.launch_reserve_seconds
    if remaining - s.launch_reserve_seconds < ATTEMPT_SECONDS:
        assert calls == []  # no time for even one attempt: fail at once, never mid-call
    else:
        assert len(calls) >= 2 if remaining >= 20 else len(calls) >= 1
        assert len({c["clientToken"] for c in calls}) == 1  # one launch, one idempotency token


def _real_deadline(remaining: float) -> float:
    import time

    return time.monotonic() + remaining


def test_a_throttled_launch_that_then_succeeds_starts_one_task(ecs: Any) -> None:
    fake = FakeTime()
    calls = record_attempts(ecs, fake)
    execution_id = str(uuid.uuid4())
    with Stubber(ecs) as stub:
        throttled(stub, 2)
        started(stub)
        launch = EcsLauncher(settings(), client=ecs, sleep=fake.sleep,
                             clock=fake.clock).launch(execution_id, "runner-token-value")
        stub.assert_no_pending_responses()
    assert launch.task_arn == TASK_ARN
    assert len(calls) == 3 and len({c["clientToken"] for c in calls}) == 1
    assert len(fake.sleeps) == 2
    overrides = calls[-1]["overrides"]["containerOverrides"][0]["environment"]
    assert overrides == [{"name": "AEF_EXECUTION_ID", "value": execution_id}]
    assert "runner-token-value" not in repr(calls)  # the token never leaves the API
    assert calls[-1]["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] \
        == "DISABLED"


def test_a_lost_answer_is_retried_with_the_same_client_token(ecs: Any) -> None:
    fake = FakeTime()
    calls = record_attempts(ecs, fake)
    timeouts = iter([True])

    def drop_first_answer(**_: Any) -> None:
        if next(timeouts, False):
            raise ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com")

    # raised from inside the call, as a read timeout is (the Stubber answers any later hook)
    ecs.meta.events.register("before-parameter-build.ecs.RunTask", drop_first_answer)
    with Stubber(ecs) as stub:
        started(stub)
        launch = EcsLauncher(settings(ecs_assign_public_ip=True), client=ecs, sleep=fake.sleep,
                             clock=fake.clock).launch(str(uuid.uuid4()), "t")
    assert launch.task_arn == TASK_ARN
    assert len(calls) == 2 and calls[0]["clientToken"] == calls[1]["clientToken"]
    assert calls[0]["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] \
        == "ENABLED"


@pytest.mark.parametrize(("code", "status"), [("ClusterNotFoundException", 400),
                                              ("AccessDeniedException", 400),
                                              ("InvalidParameterException", 400)])
def test_configuration_errors_fail_at_once_with_only_the_code_for_the_user(
        ecs: Any, code: str, status: int, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    calls = record_attempts(ecs, fake)
    detail = (f"User: arn:aws:sts::{ACCOUNT}:assumed-role/aef-ExecuteFunctionRole/x is not "
              f"authorized on arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/aef")
    with Stubber(ecs) as stub:
        stub.add_client_error("run_task", service_error_code=code, service_message=detail,
                              http_status_code=status)
        with caplog.at_level("WARNING", logger="aef.launcher"), \
                pytest.raises(LaunchFailed) as failed:
            EcsLauncher(settings(), client=ecs, sleep=fake.sleep,
                        clock=fake.clock).launch(str(uuid.uuid4()), "t")
    assert len(calls) == 1 and fake.sleeps == []
    assert failed.value.code == code
    assert str(failed.value) == f"The runner could not be started (ECS: {code})"
    assert "arn:" not in str(failed.value) and ACCOUNT not in str(failed.value)
    # the operator's log keeps the whole story
    (record,) = [r for r in caplog.records if r.getMessage() == "runner launch failed"]
    assert ACCOUNT in record.awsError and record.awsErrorCode == code  # type: ignore[attr-defined]


def test_failures_in_the_answer_are_reported_without_arns(ecs: Any) -> None:
    fake = FakeTime()
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [], "failures": [
            {"arn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:container-instance/x",
             "reason": "Capacity is unavailable at this time. Please try again later",
             "detail": f"account {ACCOUNT}"}]})
        with pytest.raises(LaunchFailed) as failed:
            EcsLauncher(settings(), client=ecs, sleep=fake.sleep,
                        clock=fake.clock).launch(str(uuid.uuid4()), "t")
    assert failed.value.code == "RunTaskFailure"
    assert "arn:" not in str(failed.value) and ACCOUNT not in str(failed.value)
