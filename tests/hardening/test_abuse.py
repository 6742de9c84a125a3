"""Abuse: a burst of 1,000 mixed requests from one user in parallel threads.

Invariants that must hold under the burst, checked exactly:
- the active-execution cap: a monitor samples the database during the burst and never sees
  more active executions than the cap; exactly `cap` starts are accepted;
- rate limits: with refill frozen, exactly `capacity` requests per bucket get past the limiter
  and every other one is a 429 problem+json with Retry-After (so 429s start once the bucket is
  empty and never before);
- request size: every oversized body is a 413 problem+json, with or without Content-Length,
  and costs no rate-limit token;
- no 5xx at all;
- a second user's requests made during the burst all succeed (2xx).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.api.helpers import fixture_sop, transform
from tests.apigw import apigw_event, invoke
from tests.hardening.conftest import settings_override, thread_event_loop

WORKERS = 8
BURST = 1000
FROZEN = 1e-6  # tokens per second: no refill within the test
ACTIVE = ("queued", "starting", "running", "paused", "waiting_checkpoint", "waiting_recovery",
          "cancelling")


@dataclass(frozen=True)
class Request:
    kind: str  # execute | action | read | oversized
    method: str
    path: str
    body: Any = None
    content_length: bool = True


@dataclass
class Result:
    request: Request
    status: int
    headers: dict[str, str]
    body: Any


def send(api: Any, request: Request, token: str) -> Result:
    """Through the function's Mangum handler; a body may be raw bytes without Content-Length."""
    handler = api.handler_for(request.method, request.path)
    headers = {"authorization": f"Bearer {token}"}
    if request.body is not None:
        headers["content-type"] = "application/json"
    status, reply_headers, body = invoke(handler, apigw_event(
        request.method, request.path, headers=headers, body=request.body,
        content_length=request.content_length))
    return Result(request, status, reply_headers, body)


def count_active(conn: psycopg.Connection[Any], user_id: str) -> int:
    row = conn.execute("select count(*) from aef_executions where user_id = %s"
                       " and status = any(%s)", (user_id, list(ACTIVE))).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def active_monitor(db: Any, user_id: str) -> Iterator[list[int]]:
    """Samples the user's active executions every few ms until the block ends."""
    samples: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(db.admin_url, autocommit=True) as conn:
            while not done.is_set():
                samples.append(count_active(conn, user_id))
                time.sleep(0.005)
            samples.append(count_active(conn, user_id))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join(timeout=10)


def no_input_sop() -> dict[str, Any]:
    """A document whose runs need no variables or secrets: these tests are about limits."""
    return fixture_sop("investor-crm-sop-v0.8.json")


def reset_rate_limits(db: Any, *user_ids: str) -> None:
    """Full buckets: the setup's own requests (transforms) must not count against the burst."""
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        conn.execute("delete from aef_rate_limits where user_id = any(%s::uuid[])",
                     (list(user_ids),))


def burst_requests(document_id: str, idle: list[str], readable: list[str],
                   max_body: int) -> list[Request]:
    """1,000 requests: starts, actions, reads and oversized bodies, shuffled (seeded)."""
    pad = "x" * (max_body + 1)
    oversized_execute = {"aefDocumentId": document_id, "secrets": {"pad": pad}}
    oversized_raw = ('{"action": "pause", "stepId": "' + pad + '"}').encode()
    requests: list[Request] = []
    requests += [Request("execute", "POST", "/api/aef/execute", {"aefDocumentId": document_id})
                 for _ in range(200)]
    actions = ("execute", "pause", "takeover", "resume", "release")
    requests += [Request("action", "POST", f"/api/aef/action/{idle[i % len(idle)]}",
                         {"action": actions[i % len(actions)]}) for i in range(250)]
    requests += [Request("read", "GET", f"/api/aef/{('logs', 'live')[i % 2]}/"
                                        f"{readable[i % len(readable)]}") for i in range(400)]
    requests += [Request("oversized", "POST", "/api/aef/execute", oversized_execute)
                 for _ in range(60)]
    requests += [Request("oversized", "POST", f"/api/aef/action/{idle[0]}", oversized_raw,
                         content_length=False) for _ in range(60)]
    requests += [Request("oversized", "POST", "/api/aef/transform", {"sop": {"pad": pad}})
                 for _ in range(30)]
    assert len(requests) == BURST
    random.Random(1000).shuffle(requests)
    return requests


def test_burst_of_one_user_holds_every_limit(api: Any, db: Any, new_user: Any) -> None:
    from aef.settings import get_settings
    from tests.integration.factories import User, create_checkpoint, create_execution

    s = get_settings()
    cap, max_body = s.max_active_executions, s.max_body_bytes
    capacity = {"execute": s.rate_limit_capacity, "action": s.write_rate_limit_capacity,
                "read": s.read_rate_limit_capacity}
    abuser, bystander = new_user(), new_user()
    created = transform(api, abuser, no_input_sop())
    owner = User(id=abuser.id, email="abuser@example.test")
    idle = [str(create_execution(db, owner, document_id=created["aefDocumentId"])["id"])
            for _ in range(12)]
    requests = burst_requests(created["aefDocumentId"], idle, [created["executionId"], *idle],
                              max_body)
    # the bystander: its own document, runs waiting on checkpoints (below the cap: one start
    # of its own must still fit), a log to read
    theirs = transform(api, bystander, no_input_sop())
    other = User(id=bystander.id, email="bystander@example.test")
    checkpoints = []
    for step in ("enter_email", "open_crm")[: cap - 1]:
        waiting = create_execution(db, other, document_id=theirs["aefDocumentId"],
                                   status="waiting_checkpoint")
        checkpoints.append(str(create_checkpoint(db, waiting["id"], step)["id"]))
    reset_rate_limits(db, abuser.id, bystander.id)

    bystander_results: list[Result] = []
    burst_over = threading.Event()

    def bystander_traffic() -> None:
        thread_event_loop()
        plan = [Request("read", "GET", f"/api/aef/logs/{theirs['executionId']}"),
                Request("read", "GET", f"/api/aef/live/{theirs['executionId']}")]
        i = 0
        while not burst_over.is_set() and i < 150:
            if i % 10 == 5 and checkpoints:
                request = Request("action", "POST", f"/api/aef/checkpoint/{checkpoints.pop()}",
                                  {"response": "approve"})
            elif i == 7:
                request = Request("execute", "POST", "/api/aef/execute",
                                  {"aefDocumentId": theirs["aefDocumentId"]})
            else:
                request = plan[i % 2]
            bystander_results.append(send(api, request, bystander.token))
            i += 1
            time.sleep(0.02)

    with settings_override(rate_limit_refill_per_second=FROZEN,
                           write_rate_limit_refill_per_second=FROZEN,
                           read_rate_limit_refill_per_second=FROZEN):
        helper = threading.Thread(target=bystander_traffic)
        with active_monitor(db, abuser.id) as samples:
            helper.start()
            with ThreadPoolExecutor(WORKERS, initializer=thread_event_loop) as pool:
                results = list(pool.map(lambda r: send(api, r, abuser.token), requests))
            burst_over.set()
            helper.join()

    statuses = Counter((r.request.kind, r.status) for r in results)
    # no 5xx, anywhere
    assert not [r for r in results + bystander_results if r.status >= 500], statuses
    # size limit: every oversized body refused before parsing
    oversized = [r for r in results if r.request.kind == "oversized"]
    assert {r.status for r in oversized} == {413}, statuses
    assert {r.body["code"] for r in oversized} == {"payload_too_large"}
    assert all(r.headers["content-type"].startswith("application/problem+json")
               for r in oversized)
    # rate limits: exactly `capacity` requests per bucket pass, every other one is a 429
    for kind, bucket_capacity in capacity.items():
        mine = [r for r in results if r.request.kind == kind]
        limited = [r for r in mine if r.status == 429]
        assert len(mine) - len(limited) == bucket_capacity, (kind, statuses)
        for reply in limited:
            assert reply.body["code"] == "rate_limited"
            assert reply.headers["content-type"].startswith("application/problem+json")
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.headers["ratelimit-remaining"] == "0"
    # the active cap: never exceeded, and reached exactly
    started = [r for r in results if (r.request.kind == "execute" and r.status == 202)
               or (r.request.kind == "action" and r.status == 200
                   and r.body["delivered"] == "launched")]
    refused = [r for r in results if r.status == 409 and r.body["code"] == "too_many_active"]
    assert max(samples) <= cap, f"{max(samples)} active executions, cap {cap}"
    assert samples[-1] == cap and len(started) == cap, (len(started), samples[-1], statuses)
    assert refused, statuses
    # the bystander was served throughout
    assert len(bystander_results) >= 10
    assert all(200 <= r.status < 300 for r in bystander_results), [
        (r.request.path, r.status, r.body) for r in bystander_results if r.status >= 300]


def test_cap_holds_for_parallel_starts_through_actions(api: Any, db: Any,
                                                       new_user: Any) -> None:
    """`execute`/`resume` actions on idle and failed runs re-queue them: the same cap applies.

    Twelve runs are started at once, through the action route and POST /execute together,
    after a barrier; the database must never hold more active runs than the cap.
    """
    from aef.settings import get_settings
    from tests.integration.factories import User, create_execution

    cap = get_settings().max_active_executions
    for _round in range(3):
        user = new_user()
        created = transform(api, user, no_input_sop())
        owner = User(id=user.id, email="racer@example.test")
        idle = [str(create_execution(db, owner, document_id=created["aefDocumentId"])["id"])
                for _ in range(6)]
        failed = [str(create_execution(db, owner, document_id=created["aefDocumentId"],
                                       status="failed")["id"]) for _ in range(3)]
        requests = ([Request("action", "POST", f"/api/aef/action/{e}", {"action": "execute"})
                     for e in idle]
                    + [Request("action", "POST", f"/api/aef/action/{e}", {"action": "resume"})
                       for e in failed]
                    + [Request("execute", "POST", "/api/aef/execute",
                               {"aefDocumentId": created["aefDocumentId"]})] * 3)
        barrier = threading.Barrier(len(requests))

        def go(request: Request, token: str = user.token,
               barrier: threading.Barrier = barrier) -> Result:
            barrier.wait()
            return send(api, request, token)

        with active_monitor(db, user.id) as samples, ThreadPoolExecutor(
                len(requests), initializer=thread_event_loop) as pool:
            results = list(pool.map(go, requests))
        accepted = [r for r in results if r.status in (200, 202)]
        assert not [r for r in results if r.status >= 500]
        assert {r.status for r in results} <= {200, 202, 409}, [(r.status, r.body)
                                                                for r in results]
        assert max(samples) <= cap and len(accepted) == cap, (
            f"round {_round}: {len(accepted)} starts accepted, up to {max(samples)} active"
            f" (cap {cap})")
