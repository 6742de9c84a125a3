"""GET /api/aef/documents and /api/aef/executions: own rows only, newest first, keyset pages
with opaque cursors, filters, problem+json for bad cursors and filters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import ScriptedRunner
from tests.api.scenario import DEMO_INPUTS, admin_sql, started, transformed


def pages(api: Any, user: Any, path: str, key: str, **query: str) -> list[list[dict[str, Any]]]:
    """Every page of a list, following nextCursor to the end."""
    found: list[list[dict[str, Any]]] = []
    after: str | None = None
    while True:
        reply = api.call("GET", path, user.token,
                         query={**query, **({"after": after} if after else {})})
        assert reply.status == 200, reply.body
        assert "ratelimit-remaining" in reply.headers
        found.append(reply.body[key])
        after = reply.body["nextCursor"]
        if after is None:
            return found
        assert len(found) < 50


@pytest.fixture
def two_users(api: Any, db: Any, new_user: Any) -> dict[str, Any]:
    a, b = new_user(), new_user()
    docs_a = [transformed(api, a, f"A document {i}") for i in range(5)]
    docs_b = [transformed(api, b, f"B document {i}") for i in range(3)]
    return {"a": a, "b": b, "docs_a": docs_a, "docs_b": docs_b}


def test_documents_are_own_newest_first_in_pages(api: Any, two_users: dict[str, Any]) -> None:
    a, docs_a = two_users["a"], two_users["docs_a"]
    found = pages(api, a, "/api/aef/documents", "documents", limit="2")
    assert [len(page) for page in found] == [2, 2, 1]
    items = [item for page in found for item in page]
    expected = [d["aefDocumentId"] for d in reversed(docs_a)]  # the last one is the newest
    assert [item["id"] for item in items] == expected
    assert items[0]["title"] == "A document 4" and items[0]["sopId"] is None
    created = [item["createdAt"] for item in items]
    assert created == sorted(created, reverse=True)
    single = api.call("GET", "/api/aef/documents", a.token, query={"limit": "5"})
    assert len(single.body["documents"]) == 5 and single.body["nextCursor"] is None


def test_executions_carry_what_a_history_page_needs(api: Any, db: Any,
                                                    two_users: dict[str, Any]) -> None:
    a, docs_a = two_users["a"], two_users["docs_a"]
    done, stopped, queued = docs_a[0], docs_a[1], docs_a[2]
    started(api, a, done)
    runner = ScriptedRunner(db, done["executionId"])
    runner.claim()
    runner.run_step("collect_inbox", 40)
    runner.complete()
    started(api, a, queued)
    assert api.call("DELETE", f"/api/aef/stop/{stopped['executionId']}", a.token).status == 200

    items = {e["id"]: e for page in pages(api, a, "/api/aef/executions", "executions")
             for e in page}
    assert set(items) == {d["executionId"] for d in docs_a}
    finished = items[done["executionId"]]
    assert finished["status"] == "completed" and finished["progress"] == 100
    assert finished["documentId"] == done["aefDocumentId"]
    assert finished["documentTitle"] == "A document 0"
    assert finished["currentStep"] == "collect_inbox"
    assert finished["startedAt"] and finished["finishedAt"]
    assert isinstance(finished["duration"], float) and finished["duration"] >= 0
    assert items[stopped["executionId"]]["status"] == "cancelled"
    assert items[queued["executionId"]]["status"] == "queued"
    never = items[docs_a[3]["executionId"]]
    assert never["status"] == "idle" and never["startedAt"] is None
    assert never["duration"] is None and never["finishedAt"] is None
    assert never["currentStep"] is None

    def ids(**query: str) -> list[str]:
        return [e["id"] for page in pages(api, a, "/api/aef/executions", "executions", **query)
                for e in page]

    assert ids(status="completed") == [done["executionId"]]
    assert set(ids(status="queued,cancelled")) == {queued["executionId"],
                                                   stopped["executionId"]}
    assert set(ids(status="idle")) == {docs_a[3]["executionId"], docs_a[4]["executionId"]}
    again = api.call("POST", "/api/aef/execute", a.token,
                     {"aefDocumentId": done["aefDocumentId"], **DEMO_INPUTS})
    assert again.status == 202
    assert ids(documentId=done["aefDocumentId"]) == [again.body["executionId"],
                                                      done["executionId"]]
    assert ids(documentId=done["aefDocumentId"], status="completed") == [done["executionId"]]


def test_ties_in_created_at_are_paged_without_gaps_or_repeats(api: Any, db: Any,
                                                              new_user: Any) -> None:
    user = new_user()
    created = transformed(api, user)
    extra = [api.call("POST", "/api/aef/execute", user.token,
                      {"aefDocumentId": created["aefDocumentId"], **DEMO_INPUTS}
                      ).body["executionId"]
             for _ in range(2)]
    everyone = {created["executionId"], *extra}
    admin_sql(db, "update aef_executions set created_at = '2026-01-01T00:00:00Z'"
                  " where id = any(%s::uuid[])", (list(everyone),))
    found = pages(api, user, "/api/aef/executions", "executions", limit="1")
    seen = [page[0]["id"] for page in found]
    assert [len(page) for page in found] == [1, 1, 1]
    assert sorted(seen) == sorted(everyone) and seen == sorted(seen, reverse=True)


def test_another_users_rows_never_appear(api: Any, db: Any, two_users: dict[str, Any]) -> None:
    a, b = two_users["a"], two_users["b"]
    mine = {d["executionId"] for d in two_users["docs_a"]}
    theirs = {d["executionId"] for d in two_users["docs_b"]}
    for user, own, other in ((a, mine, theirs), (b, theirs, mine)):
        listed = {e["id"] for page in pages(api, user, "/api/aef/executions", "executions",
                                            limit="2") for e in page}
        assert listed == own and not listed & other
    # B's document as a filter, and a cursor taken from B's list: still only A's rows
    foreign_doc = two_users["docs_b"][0]["aefDocumentId"]
    filtered = api.call("GET", "/api/aef/executions", a.token,
                        query={"documentId": foreign_doc})
    assert filtered.status == 200 and filtered.body["executions"] == []
    first_b = api.call("GET", "/api/aef/executions", b.token, query={"limit": "1"})
    with_b_cursor = api.call("GET", "/api/aef/executions", a.token,
                             query={"after": first_b.body["nextCursor"], "limit": "100"})
    assert with_b_cursor.status == 200
    assert {e["id"] for e in with_b_cursor.body["executions"]} <= mine
    first_b_docs = api.call("GET", "/api/aef/documents", b.token, query={"limit": "1"})
    with_b_docs_cursor = api.call("GET", "/api/aef/documents", a.token,
                                  query={"after": first_b_docs.body["nextCursor"]})
    assert {d["id"] for d in with_b_docs_cursor.body["documents"]} <= {
        d["aefDocumentId"] for d in two_users["docs_a"]}


def test_supabase_js_reads_the_same_rows_through_rls(api: Any, db: Any,
                                                     two_users: dict[str, Any]) -> None:
    """In the cloud `.from('aef_executions').select()` runs as role `authenticated` with the
    user's claims: RLS gives it exactly the rows the list route gives."""
    a = two_users["a"]
    listed = [e["id"] for page in pages(api, a, "/api/aef/executions", "executions")
              for e in page]
    with db.as_authenticated(a.claims) as conn:
        rows = conn.execute("select id from aef_executions order by created_at desc, id desc"
                            ).fetchall()
    assert [str(r["id"]) for r in rows] == listed


@pytest.mark.parametrize(("path", "query", "code"), [
    ("/api/aef/executions", {"after": "not-a-cursor"}, "invalid_cursor"),
    ("/api/aef/executions", {"after": "eyJrIjoiZXhlY3V0aW9ucyJ9"}, "invalid_cursor"),
    ("/api/aef/documents", {"after": "bm9wZQ"}, "invalid_cursor"),
    ("/api/aef/executions", {"status": "running,exploded"}, "validation_failed"),
    ("/api/aef/executions", {"documentId": "not-a-uuid"}, "validation_failed"),
    ("/api/aef/executions", {"limit": "0"}, "validation_failed"),
    ("/api/aef/documents", {"limit": "101"}, "validation_failed"),
    ("/api/aef/documents", {"after": "a b"}, "validation_failed"),
])
def test_bad_cursors_and_filters_are_problems(api: Any, new_user: Any, path: str,
                                              query: dict[str, str], code: str) -> None:
    reply = api.call("GET", path, new_user().token, query=query)
    assert reply.status == 422, reply.body
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.body["code"] == code
    if "status" in query:
        assert reply.body["errors"] == [{"field": "query.status",
                                         "message": "not an execution status: exploded"}]


def test_a_cursor_of_one_list_is_refused_by_the_other(api: Any,
                                                      two_users: dict[str, Any]) -> None:
    a = two_users["a"]
    docs = api.call("GET", "/api/aef/documents", a.token, query={"limit": "1"})
    reply = api.call("GET", "/api/aef/executions", a.token,
                     query={"after": docs.body["nextCursor"]})
    assert reply.status == 422 and reply.body["code"] == "invalid_cursor"


def test_pre_serialized_pages_are_what_their_response_models_write(
        api: Any, db: Any, two_users: dict[str, Any]) -> None:
    """The read routes send their body as built (no per-request model pass): each body is
    exactly what its documented response model makes of it (timestamps in UTC with `Z`)."""
    from aef.api_models import DocumentsResponse, ExecutionsResponse, LogsResponse

    a, doc = two_users["a"], two_users["docs_a"][0]
    started(api, a, doc)
    execution_id = doc["executionId"]
    admin_sql(db, "insert into aef_logs (execution_id, level, category, message, details)"
                  " values (%s, 'warn', 'runner', 'Größe ✓ \"quoted\"\\n',"
                  " '{\"n\": 1.5, \"nested\": {\"ü\": [1, null, true]}}')", (execution_id,))
    for path, model in ((f"/api/aef/logs/{execution_id}", LogsResponse),
                        ("/api/aef/documents", DocumentsResponse),
                        ("/api/aef/executions", ExecutionsResponse)):
        reply = api.call("GET", path, a.token)
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"] == "application/json"
        assert "ratelimit-remaining" in reply.headers
        again = model.model_validate(reply.body).model_dump(mode="json", by_alias=True)
        assert reply.body == again, path
    logs = api.call("GET", f"/api/aef/logs/{execution_id}", a.token).body["logs"]
    assert logs[-1]["message"] == 'Größe ✓ "quoted"\\n'  # a backslash and an n, as stored
    assert all(entry["timestamp"].endswith("Z") for entry in logs)
