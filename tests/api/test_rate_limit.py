"""A burst beyond the bucket → exactly the expected number of 429s; others unaffected."""

from __future__ import annotations

from typing import Any

from tests.api.helpers import run_inputs, transform


def test_burst_beyond_bucket(api: Any, db: Any, new_user: Any) -> None:
    """Starts: capacity + 10 requests → exactly 10 answers 429; another user keeps succeeding."""
    from aef.settings import get_settings

    s = get_settings()
    saved = s.rate_limit_refill_per_second
    s.rate_limit_refill_per_second = 0.0001
    try:
        user, other = new_user(), new_user()
        created = transform(api, user)
        burst = s.rate_limit_capacity + 10
        replies = [api.call("POST", "/api/aef/execute", user.token,
                            {"aefDocumentId": created["aefDocumentId"], **run_inputs(created)})
                   for _ in range(burst)]
        other_doc = transform(api, other)
        other_reply = api.call("POST", "/api/aef/execute", other.token,
                               {"aefDocumentId": other_doc["aefDocumentId"],
                                **run_inputs(other_doc)})
    finally:
        s.rate_limit_refill_per_second = saved
    # the active cap answers 409 beyond it, but every request paid its token
    assert {r.status for r in replies[: s.rate_limit_capacity]} <= {202, 409}
    assert [r.status for r in replies[s.rate_limit_capacity:]] == [429] * 10
    for reply in replies[s.rate_limit_capacity:]:
        assert reply.body["code"] == "rate_limited"
        assert int(reply.headers["retry-after"]) >= 1
        assert reply.headers["ratelimit-remaining"] == "0"
        assert reply.headers["content-type"].startswith("application/problem+json")
    assert other_reply.status == 202


def test_exact_429_count_with_frozen_refill(api: Any, db: Any, new_user: Any) -> None:
    """With refill made negligible, a burst of capacity + k gives exactly k answers 429."""
    from aef.settings import get_settings

    s = get_settings()
    saved = s.read_rate_limit_refill_per_second, s.read_rate_limit_capacity
    s.read_rate_limit_refill_per_second, s.read_rate_limit_capacity = 0.0001, 15
    try:
        user = new_user()
        execution_id = transform(api, user)["executionId"]
        replies = [api.call("GET", f"/api/aef/logs/{execution_id}", user.token)
                   for _ in range(15 + 7)]
    finally:
        s.read_rate_limit_refill_per_second, s.read_rate_limit_capacity = saved
    assert [r.status for r in replies] == [200] * 15 + [429] * 7
