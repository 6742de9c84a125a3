"""A runner on ECS: no token in its environment, it claims one with its task ARN read from the
task metadata endpoint (served here by a local HTTP server with the v4 JSON), and it keeps its
database connections within AEF_DB_POOL_MIN/MAX (+ one LISTEN connection when configured).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aef.db import Database
from aef.settings import Settings
from runner.identity import (
    IdentityError,
    claim_with_task_arn,
    runner_token,
    task_arn_from_metadata,
)
from tests.httpserver import PageHTTPServer, send_json
from tests.integration.factories import admin_connection
from tests.runner.helpers import Execution, execution_row, make_execution, task
from tests.runner.test_process import runner_env

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


def a_task_arn() -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/aef-RunnerCluster/{uuid.uuid4().hex}"


class Metadata:
    """ECS task metadata endpoint v4: `${ECS_CONTAINER_METADATA_URI_V4}/task`."""

    def __init__(self) -> None:
        self.task_arn = a_task_arn()
        self.requests: list[str] = []
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                metadata.requests.append(self.path)
                if self.path != "/v4/0123abcd-container/task":
                    self.send_error(404)
                    return
                send_json(self, {
                    "Cluster": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/aef-RunnerCluster",
                    "TaskARN": metadata.task_arn, "Family": "aef-runner", "Revision": "3",
                    "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
                    "Limits": {"CPU": 1, "Memory": 2048}, "LaunchType": "FARGATE",
                    "AvailabilityZone": "us-east-1a", "Containers": []})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = PageHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v4/0123abcd-container"

    def __enter__(self) -> Metadata:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    with Metadata() as served:
        yield served


def store_task_arn(db: Database, execution: Execution, task_arn: str) -> None:
    """What the API does right after RunTask answered."""
    with db.as_service() as conn:
        conn.execute("update aef_executions set task_arn = %s where id = %s",
                     (task_arn, execution.id))


def sees_its_execution(db: Database, execution: Execution, token: str) -> bool:
    with db.as_runner(execution.id, token) as conn:
        rows = conn.execute("select id from aef_executions").fetchall()
    return [str(r["id"]) for r in rows] == [execution.id]


def test_the_task_arn_comes_from_the_metadata_endpoint(metadata: Metadata) -> None:
    assert task_arn_from_metadata(metadata.uri) == metadata.task_arn
    assert metadata.requests == ["/v4/0123abcd-container/task"]
    with pytest.raises(IdentityError, match="not http"):
        task_arn_from_metadata("file:///etc/passwd")
    with pytest.raises(IdentityError, match="did not answer"):
        task_arn_from_metadata(metadata.uri + "/nowhere", attempts=1)


def test_the_stored_task_arn_is_exchanged_once_for_a_fresh_token(
        db: Database, metadata: Metadata) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    store_task_arn(db, execution, metadata.task_arn)
    token = runner_token(db, execution.id, given=None, metadata_uri=metadata.uri,
                         wait_seconds=0)
    assert token != execution.token and len(token) >= 60
    assert sees_its_execution(db, execution, token)
    assert not sees_its_execution(db, execution, execution.token)  # the API's is replaced
    # the same ARN again (a second task, or a replay) gets nothing
    with pytest.raises(IdentityError):
        claim_with_task_arn(db, execution.id, metadata.task_arn, wait_seconds=0)
    assert sees_its_execution(db, execution, token)


def test_a_wrong_or_another_executions_task_arn_claims_nothing(
        db: Database, metadata: Metadata) -> None:
    mine = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    other = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    store_task_arn(db, mine, a_task_arn())
    store_task_arn(db, other, metadata.task_arn)
    before = execution_row(db, mine)["runner_token_hash"]
    for arn in (metadata.task_arn, a_task_arn(), "", "arn:aws:ecs:us-east-1:1:task/x"):
        with pytest.raises(IdentityError):
            claim_with_task_arn(db, mine.id, arn, wait_seconds=0)
    assert execution_row(db, mine)["runner_token_hash"] == before
    # the other execution's own task still claims it (nothing was burnt by the attempts)
    token = claim_with_task_arn(db, other.id, metadata.task_arn, wait_seconds=0)
    assert sees_its_execution(db, other, token)


def test_only_a_queued_unclaimed_execution_can_be_claimed(db: Database) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    arn = a_task_arn()
    store_task_arn(db, execution, arn)
    with db.as_runner(execution.id, execution.token) as conn:  # another runner got it first
        conn.execute("update aef_executions set status = 'starting', runner_id = 'r1', "
                     "lease_expires_at = now() + interval '30 seconds' where id = %s",
                     (execution.id,))
    with pytest.raises(IdentityError):
        claim_with_task_arn(db, execution.id, arn, wait_seconds=0)


def test_a_fast_task_waits_for_its_arn_to_be_stored(db: Database) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    arn = a_task_arn()
    timer = threading.Timer(1.0, store_task_arn, (db, execution, arn))
    timer.start()
    try:
        token = claim_with_task_arn(db, execution.id, arn, wait_seconds=10)
    finally:
        timer.join()
    assert sees_its_execution(db, execution, token)


@contextmanager
def login(db: Database, *grants: str) -> Iterator[Database]:
    """A fresh login role, made by `postgres` as an operator would, granted `grants`."""
    name = f"aef_t_{uuid.uuid4().hex[:10]}"
    with admin_connection(db) as conn:
        conn.execute(f"create role {name} login")
        for role in grants:
            conn.execute(f"grant {role} to {name}")
    url = make_conninfo("", **{**conninfo_to_dict(db.url), "user": name})
    database = Database(url, min_size=0, max_size=1)
    try:
        yield database
    finally:
        database.close()
        with admin_connection(db) as conn:
            conn.execute(f"drop role {name}")


def test_a_runner_login_claims_its_own_task_only_and_other_logins_not_at_all(
        db: Database) -> None:
    mine = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    other = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    my_arn, other_arn = a_task_arn(), a_task_arn()
    store_task_arn(db, mine, my_arn)
    store_task_arn(db, other, other_arn)
    with login(db, "aef_runner_login") as runner:
        for arn in (other_arn, a_task_arn()):
            with pytest.raises(IdentityError):
                claim_with_task_arn(runner, mine.id, arn, wait_seconds=0)
        token = claim_with_task_arn(runner, mine.id, my_arn, wait_seconds=0)
        assert sees_its_execution(runner, mine, token)
        with runner.as_runner(mine.id, token) as conn:  # still scoped to its own rows
            assert conn.execute("select count(*) as n from aef_executions where id = %s",
                                (other.id,)).fetchone()["n"] == 0
    # a login that is no runner (e.g. the API's) may not call the claim at all
    with login(db, "aef_functions") as api, pytest.raises(psycopg.errors.InsufficientPrivilege):
        with api.as_service() as conn:
            conn.execute("select aef_private.claim_by_task(%s, %s)", (other.id, other_arn))
    assert execution_row(db, other)["runner_id"] is None


# The process, as an ECS task runs it ---------------------------------------------------------
def ecs_env(settings: Settings, execution: Execution, metadata: Metadata,
            **extra: str) -> dict[str, str]:
    """A task's environment: the execution id and settings, no token, and the metadata
    endpoint (DATABASE_URL stands for the secret an ECS runner reads)."""
    env = runner_env(settings, execution)
    del env["AEF_RUNNER_TOKEN"]
    env.update({"ECS_CONTAINER_METADATA_URI_V4": metadata.uri,
                "AEF_HEARTBEAT_SECONDS": "0.5", **extra})
    return env


def connections(db: Database, execution: Execution) -> dict[str, int]:
    with admin_connection(db) as conn:
        rows = conn.execute(
            "select application_name as name, count(*) as n from pg_stat_activity "
            "where application_name in (%s, %s) group by 1",
            (f"aef-runner:{execution.id}", f"aef-runner-listen:{execution.id}")).fetchall()
    return {r["name"].split(":")[0]: int(r["n"]) for r in rows}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize(("pool", "listen"), [((1, 2), True), ((0, 1), False)],
                         ids=["pool-1-2-listen", "pool-0-1-poll"])
def test_an_ecs_runner_claims_with_its_task_arn_and_keeps_to_its_pool(
        db: Database, settings: Settings, metadata: Metadata, tmp_path: Path,
        pool: tuple[int, int], listen: bool) -> None:
    plan = [task(f"s{i}", [{"type": "wait", "timeoutMs": 400}]) for i in range(6)]
    execution = make_execution(db, plan)
    store_task_arn(db, execution, metadata.task_arn)
    env = ecs_env(settings, execution, metadata, AEF_DB_POOL_MIN=str(pool[0]),
                  AEF_DB_POOL_MAX=str(pool[1]), AEF_DB_LISTEN=str(listen).lower())
    log_path = tmp_path / "runner.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    seen: dict[str, int] = {}
    try:
        while proc.poll() is None:
            for name, count in connections(db, execution).items():
                seen[name] = max(seen.get(name, 0), count)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output
    row = execution_row(db, execution)
    assert row["status"] == "completed"
    assert metadata.requests == ["/v4/0123abcd-container/task"]
    assert seen.get("aef-runner", 0) >= 1  # it was observed while it worked
    assert seen["aef-runner"] <= pool[1], seen
    assert seen.get("aef-runner-listen", 0) == (1 if listen else 0), seen


def test_a_runner_with_neither_token_nor_metadata_exits_2(db: Database,
                                                          settings: Settings) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEF_", "ECS_"))}
    env.update({"AEF_EXECUTION_ID": execution.id, "DATABASE_URL": settings.database_url})
    done = subprocess.run([sys.executable, "-m", "runner"], cwd=ROOT, env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert b"ECS_CONTAINER_METADATA_URI_V4" in done.stderr
    assert execution_row(db, execution)["status"] == "queued"
