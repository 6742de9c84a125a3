"""Latency of each endpoint through its Mangum handler, beside the raw database work it needs.

For every endpoint: median and p99 of the full path (API Gateway v2 event → Mangum → FastAPI →
JWT check → rate limit → use case → Postgres) and of the same store calls made directly in
`Database` transactions (the raw psycopg round trips), printed as a ratio. Then log-page
latency with 100,000 rows (--log-rows): the first page and a page deep in the history (keyset
pagination should make them equal).

    .venv/bin/python bench/bench_api.py [--n 200] [--log-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-0123456789-0123456789-abcdef"
os.environ.update({
    "AEF_JWT_SECRET": SECRET, "AEF_LAUNCHER": "ecs", "AEF_MAX_ACTIVE_EXECUTIONS": "100000",
    "AEF_RATE_LIMIT_CAPACITY": "1000000", "AEF_WRITE_RATE_LIMIT_CAPACITY": "1000000",
    "AEF_READ_RATE_LIMIT_CAPACITY": "1000000", "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(fn: Callable[[], Any], n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--log-rows", type=int, default=100_000,
                        help="log rows for the first-page / deep-page comparison")
    args = parser.parse_args()

    import jwt
    from moto import mock_aws

    from aef.db import Database, set_database
    from aef.launcher import EcsLauncher, set_launcher
    from aef.settings import get_settings
    from aef.store import api as store
    from local.schema import apply_schema, create_database, drop_database
    from tests.api.helpers import ScriptedRunner, fixture_sop
    from tests.apigw import apigw_event, invoke

    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"aef_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(admin, name)
    try:
        apply_schema(url)
        db = Database(url, min_size=1, max_size=4)
        set_database(db)
        with mock_aws():
            import boto3

            s = get_settings()
            ecs = boto3.client("ecs", region_name="us-east-1")
            ec2 = boto3.client("ec2", region_name="us-east-1")
            vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]
            s.ecs_subnets = [subnet["SubnetId"]]
            s.ecs_security_groups = [ec2.create_security_group(
                GroupName="b", Description="b", VpcId=vpc)["GroupId"]]
            ecs.create_cluster(clusterName=s.ecs_cluster)
            ecs.register_task_definition(
                family=s.ecs_task_definition, requiresCompatibilities=["FARGATE"],
                networkMode="awsvpc", cpu="1024", memory="2048",
                containerDefinitions=[{"name": s.ecs_container_name, "image": "x",
                                       "memory": 2048}])
            set_launcher(EcsLauncher(s, client=ecs))
            run(args.n, args.log_rows, db, jwt, store, apigw_event, invoke, ScriptedRunner,
                fixture_sop)
        db.close()
    finally:
        drop_database(admin, name)


def run(n: int, log_rows: int, db: Any, jwt: Any, store: Any, apigw_event: Any,
        invoke: Any, ScriptedRunner: Any, fixture_sop: Any) -> None:
    from aef.service import LIVE_MESSAGE_TYPES
    from functions.checkpoint.app import handler as checkpoint_handler
    from functions.execute.app import handler as execute_handler
    from functions.logs.app import handler as logs_handler
    from functions.stop.app import handler as stop_handler
    from functions.transform.app import handler as transform_handler

    user_id = str(uuid.uuid4())
    with db.as_service() as conn:
        conn.execute("reset role")
        conn.execute("insert into auth.users (id, email) values (%s, 'bench@aef.local')",
                     (user_id,))
    now = int(time.time())
    claims = {"sub": user_id, "role": "authenticated", "aud": "authenticated",
              "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    auth = {"authorization": f"Bearer {token}"}

    def call(handler: Any, method: str, path: str, body: Any = None,
             query: dict[str, str] | None = None) -> Any:
        status, _, payload = invoke(handler, apigw_event(method, path, headers=auth, body=body,
                                                          query=query))
        assert status < 400, (path, status, payload)
        return payload

    sop = fixture_sop()
    created = call(transform_handler, "POST", "/api/aef/transform", {"sop": sop})
    doc_id, execution_id = created["aefDocumentId"], created["executionId"]
    inputs: dict[str, dict[str, str]] = {"secrets": {}, "variables": {}}
    for item in created["inputs"]:  # every input the document lists, so /execute accepts it
        inputs["variables" if item["kind"] == "variable" else "secrets"][item["name"]] = "bench"
    call(execute_handler, "POST", "/api/aef/execute",
         {"aefDocumentId": doc_id, "executionId": execution_id, **inputs})
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    runner.run_step("navigate_to_gmail", 10)

    def renew_lease() -> None:
        with runner.tx() as conn:
            conn.execute("update aef_executions set lease_expires_at = now()"
                         " + interval '10 minutes' where id = %s", (execution_id,))

    def rate(conn: Any, bucket: str) -> None:
        store.take_token(conn, user_id, bucket, 1e6, 1.0)

    def raw_logs() -> None:
        with db.as_user(claims) as conn:
            rate(conn, "read")
        with db.as_user(claims) as conn:
            store.get_execution(conn, execution_id)
            store.page_logs(conn, execution_id, after=0, limit=100, level=None, step_id=None)

    def raw_live() -> None:
        with db.as_user(claims) as conn:
            rate(conn, "read")
        with db.as_user(claims) as conn:
            store.live_read(conn, execution_id, after=0, unchanged=[],
                            message_types=LIVE_MESSAGE_TYPES, recent_logs=20, max_events=500)

    def raw_transform() -> None:
        from aef.transform import transform

        with db.as_user(claims) as conn:
            rate(conn, "write")
        with db.as_user(claims) as conn:
            result = transform(sop, None)
            d = store.insert_document(conn, user_id, None, "t", result.document)
            e = store.insert_execution(conn, user_id, d)
            entry = store.insert_log(conn, e, "info", "system", "transformed")
            store.emit_event(conn, e, "execution_update", {"logs": [entry]})

    def checkpoint_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
        ids: list[str] = []

        def fresh() -> str:
            with runner.tx() as conn:
                row = conn.execute(
                    "insert into aef_checkpoints (execution_id, step_id, iteration, type, title,"
                    " timeout_seconds) values (%s, 'enter_email', %s, 'before_step', 'b', 300)"
                    " returning id", (execution_id, len(ids) + 1)).fetchone()
            ids.append(str(row["id"]))
            return ids[-1]

        def via_handler() -> None:
            cp = fresh()
            call(checkpoint_handler, "POST", f"/api/aef/checkpoint/{cp}", {"response": "approve"})

        def raw() -> None:
            cp = fresh()
            with db.as_user(claims) as conn:
                rate(conn, "write")
            with db.as_user(claims) as conn:
                store.get_checkpoint(conn, cp, for_update=True)
                store.answer_checkpoint(conn, cp, "approved", user_id, {"response": "approve"})
                entry = store.insert_log(conn, execution_id, "info", "checkpoint", "approved")
                store.emit_event(conn, execution_id, "execution_update", {"logs": [entry]})

        return via_handler, raw

    def action_via_handler() -> None:
        call(execute_handler, "POST", f"/api/aef/action/{execution_id}", {"action": "pause"})

    def raw_action() -> None:
        with db.as_user(claims) as conn:
            rate(conn, "write")
        with db.as_user(claims) as conn:
            store.get_execution(conn, execution_id, for_update=True)
            store.insert_command(conn, execution_id, "pause", None, {})
            entry = store.insert_log(conn, execution_id, "info", "user", "pause")
            store.emit_event(conn, execution_id, "execution_update", {"logs": [entry]})

    def execute_via_handler() -> None:
        reply = call(execute_handler, "POST", "/api/aef/execute",
                     {"aefDocumentId": doc_id, **inputs})
        stop_ids.append(reply["executionId"])

    def raw_execute() -> None:
        with db.as_user(claims) as conn:
            rate(conn, "execute")
        with db.as_user(claims) as conn:
            store.lock_user(conn, user_id)
            store.get_document(conn, doc_id)
            e = store.insert_execution(conn, user_id, doc_id)
            store.count_active_executions(conn, user_id)
            store.queue_execution(conn, e, step_ids=None, runner_token_hash=b"x" * 32,
                                  resume_from=None)
            entry = store.insert_log(conn, e, "info", "system", "queued")
            store.emit_event(conn, e, "execution_update", {"logs": [entry]})
        with db.as_user(claims) as conn:
            store.set_task_arn(conn, e, "arn:raw")
        stop_ids.append(e)

    stop_ids: list[str] = []

    def stop_via_handler() -> None:
        call(stop_handler, "DELETE", f"/api/aef/stop/{stop_ids.pop()}")

    def raw_stop() -> None:
        e = stop_ids.pop()
        with db.as_user(claims) as conn:
            rate(conn, "write")
        with db.as_user(claims) as conn:
            store.get_execution(conn, e, for_update=True)
            store.set_status(conn, e, "cancelled")
            store.set_stop_cleanup(conn, e, "completed")
            entry = store.insert_log(conn, e, "info", "user", "stopped")
            store.emit_event(conn, e, "execution_complete", {"logs": [entry]})

    def raw_list(kind: str) -> Callable[[], None]:
        def raw() -> None:
            with db.as_user(claims) as conn:
                rate(conn, "read")
            with db.as_user(claims) as conn:
                if kind == "documents":
                    store.page_documents(conn, user_id, before=None, limit=21)
                else:
                    store.page_executions(conn, user_id, before=None, limit=21, statuses=None,
                                          document_id=None)
        return raw

    cp_handler, cp_raw = checkpoint_pair()
    rows = [
        ("POST /transform", lambda: call(transform_handler, "POST", "/api/aef/transform",
                                         {"sop": sop}), raw_transform),
        ("POST /execute", execute_via_handler, raw_execute),
        ("POST /action", action_via_handler, raw_action),
        ("POST /checkpoint", cp_handler, cp_raw),
        ("GET /logs", lambda: call(logs_handler, "GET", f"/api/aef/logs/{execution_id}"),
         raw_logs),
        ("GET /live", lambda: call(logs_handler, "GET", f"/api/aef/live/{execution_id}"),
         raw_live),
        ("GET /documents", lambda: call(logs_handler, "GET", "/api/aef/documents"),
         raw_list("documents")),
        ("GET /executions", lambda: call(logs_handler, "GET", "/api/aef/executions"),
         raw_list("executions")),
    ]
    print(f"endpoint latency, n={n} each (ms): handler vs raw psycopg work; ratio of medians")
    print(f"{'endpoint':18} {'p50':>7} {'p99':>7} | {'raw p50':>7} {'raw p99':>7} | ratio")
    endpoints: dict[str, dict[str, float]] = {}
    for label, via, raw in rows:
        renew_lease()  # the scripted runner stays live however slow the machine is
        handler_ms = measure(via, n)
        raw_ms = measure(raw, n)
        endpoints[label] = report(label, handler_ms, raw_ms)
    # stops: an idle-or-queued execution each; the cooperative wait is skipped for idle ones
    for _ in range(2 * (n + 1)):
        raw_execute()
    endpoints["DELETE /stop"] = report("DELETE /stop", measure(stop_via_handler, n),
                                       measure(raw_stop, n))
    print(json.dumps({"bench": "api", "n": n, "endpoints": endpoints,
                      "worst_p50_ratio": max(e["p50_ratio"] for e in endpoints.values()),
                      "worst_p99_ratio": max(e["p99_ratio"] for e in endpoints.values())}))

    # The body guard's strict JSON check (UTF-8, depth, numbers, storable strings) against
    # the whole POST /transform it guards, on the same SOP body
    from aef.http import json_body_problem

    body = json.dumps({"sop": sop}).encode()
    guard = statistics.median(measure(lambda: json_body_problem(body), n))
    whole = statistics.median(measure(lambda: call(transform_handler, "POST",
                                                   "/api/aef/transform", {"sop": sop}), n))
    print(f"\nbody guard JSON check of a {len(body) // 1024} KiB transform body: p50 "
          f"{guard:.3f} ms = {guard / whole:.3f} of POST /transform's p50 {whole:.2f} ms")

    # Execution history with 20,000 executions: the first page vs a page deep in it
    from aef import service

    with db.as_service() as conn:
        conn.execute(
            "insert into aef_executions (user_id, document_id, created_at)"
            " select %s, %s, now() - make_interval(secs => g) from generate_series(1, 20000) g",
            (user_id, doc_id))
        conn.execute("reset role")
        conn.execute("analyze aef_executions")
        row = conn.execute("select id, created_at from aef_executions where user_id = %s"
                           " order by created_at desc, id desc offset 19000 limit 1",
                           (user_id,)).fetchone()
    cursor = service.encode_keyset("executions", row)
    first_ms: list[float] = []
    deep_ms: list[float] = []
    for _ in range(n):  # interleaved, so neither page gets the colder cache
        first_ms += measure(lambda: call(logs_handler, "GET", "/api/aef/executions",
                                         query={"limit": "50"}), 1)
        deep_ms += measure(lambda: call(logs_handler, "GET", "/api/aef/executions",
                                        query={"limit": "50", "after": cursor}), 1)
    first_list, deep_list = statistics.median(first_ms), statistics.median(deep_ms)
    print(f"executions list with 20,000 rows (limit 50): first p50 {first_list:.2f} ms, deep "
          f"(row 19,000) p50 {deep_list:.2f} ms; deep/first = {deep_list / first_list:.2f}")

    # Log pages with --log-rows rows (100,000): first page vs a page 99% deep
    rows, depth = log_rows, log_rows * 99 // 100
    with db.as_service() as conn:
        conn.execute(
            "insert into aef_logs (execution_id, level, category, message)"
            " select %s, 'info', 'bench', 'line ' || g from generate_series(1, %s) g",
            (execution_id, rows))
        deep = conn.execute("select id from aef_logs where execution_id = %s order by id"
                            " offset %s limit 1", (execution_id, depth)).fetchone()["id"]
    def pages() -> tuple[float, float]:
        first = measure(lambda: call(logs_handler, "GET", f"/api/aef/logs/{execution_id}",
                                     query={"limit": "100"}), n)
        deep_page = measure(lambda: call(logs_handler, "GET", f"/api/aef/logs/{execution_id}",
                                         query={"limit": "100", "after": str(deep)}), n)
        return statistics.median(first), statistics.median(deep_page)

    # right after the bulk insert the planner's statistics are stale (as before autovacuum's
    # analyze catches up), then in steady state
    for label in ("stale statistics", "after analyze"):
        first_ms, deep_ms = pages()
        print(f"\nlog pages with {rows:,} rows (limit 100, {label}): first p50 {first_ms:.2f} ms,"
              f" deep (row {depth:,}) p50 {deep_ms:.2f} ms; deep/first = {deep_ms / first_ms:.2f}")
        with db.as_service() as conn:
            conn.execute("reset role")
            conn.execute("analyze aef_logs")


def report(label: str, handler_ms: list[float], raw_ms: list[float]) -> dict[str, float]:
    h50, h99 = statistics.median(handler_ms), percentile(handler_ms, 0.99)
    r50, r99 = statistics.median(raw_ms), percentile(raw_ms, 0.99)
    print(f"{label:18} {h50:7.2f} {h99:7.2f} | {r50:7.2f} {r99:7.2f} | {h50 / r50:5.2f}x")
    return {"p50_ms": round(h50, 3), "p99_ms": round(h99, 3), "raw_p50_ms": round(r50, 3),
            "raw_p99_ms": round(r99, 3), "p50_ratio": round(h50 / r50, 3),
            "p99_ratio": round(h99 / r99, 3)}


if __name__ == "__main__":
    main()
